"""The console's codebook editing pages through WebTest (docs/console-analysis.md#the-codebook): who
sees the forms, CSRF, adding and editing a code with every refusal shown next to its field and
nothing stored, an edit conflict, retiring and reactivating, merging after a confirmation, the
history, importing a file after checking it, and the downloads."""

from __future__ import annotations

import html
import io
import re
from typing import Any

import openpyxl
import pytest
import webtest
from analysis_console_support import add_code, add_interview, count, publish_instrument
from console_support import HTML, csrf_in, error_next_to, sign_in
from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.analysis import codebook
from surveykit.analysis import coding as coding_services
from surveykit.analysis.models import Code, Coding
from surveykit.audit.models import AuditEvent

KE = "/console/studies/ocsea/countries/KE"
CODEBOOK = f"{KE}/codebook"


class Site:
    """Study ocsea (KE, TZ): carla analyses the whole study (she edits the codebook), ana only KE."""

    def __init__(self, testapp: webtest.TestApp, accounts: Any, session: Session) -> None:
        self.testapp = testapp
        self.accounts = accounts
        self.session = session
        self.study = accounts.study("ocsea", ("KE", "TZ"))
        self.carla = accounts.user("carla", "analyst", "ocsea", None)
        self.ana = accounts.user("ana", "analyst", "ocsea", ["KE"])
        self.capacity = add_code(session, self.study, "Capacity", "#2e7d32", definition="Staff")
        self.training = add_code(session, self.study, "Training", "#c62828", parent=self.capacity)
        self.budget = add_code(session, self.study, "Budget", "#1565c0")

    def code_url(self, code_id: int, suffix: str = "") -> str:
        return f"{CODEBOOK}/codes/{code_id}{suffix}"

    def get(self, user: Any, url: str, status: int | str = 200) -> webtest.TestResponse:
        self.testapp.reset()
        sign_in(self.testapp, self.accounts, user)
        return self.testapp.get(url, headers=HTML, status=status)

    def post(
        self,
        user: Any,
        url: str,
        form: dict[str, Any],
        status: int | str = "*",
        page: str = CODEBOOK,
        **kw: Any,
    ) -> webtest.TestResponse:
        token = csrf_in(self.get(user, page))
        return self.testapp.post(url, {**form, "csrf_token": token}, headers=HTML, status=status, **kw)

    def check_import(
        self, user: Any, name: str, content: bytes, content_type: str, status: int
    ) -> webtest.TestResponse:
        """The import page's first step ("Check the file") with this file."""
        files = [("file", name, content, content_type)]
        return self.post(user, f"{CODEBOOK}/import", {"step": "check"}, status=status, upload_files=files)

    def code(self, code_id: int) -> Code:
        self.session.expire_all()
        return self.session.get_one(Code, code_id)

    def events(self, action: str) -> list[AuditEvent]:
        return list(
            self.session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )


@pytest.fixture
def site(testapp: webtest.TestApp, accounts: Any, dbsession: Session) -> Site:
    return Site(testapp, accounts, dbsession)


def _form_error(response: webtest.TestResponse) -> str:
    found = re.search(r'<p class="error form-error" role="alert">([^<]*)</p>', response.text)
    assert found, "no error above the form"
    return html.unescape(found.group(1))


# ------------------------------------------------------------------------------------ who may edit


@pytest.mark.parametrize(
    ("role", "countries", "editor"),
    [
        ("analyst", None, True),
        ("admin", None, True),
        ("analyst", ["KE"], False),
        ("coordinator", ["KE"], False),
    ],
)
def test_only_who_may_edit_the_codebook_sees_the_forms(
    site: Site, role: str, countries: list[str] | None, editor: bool
) -> None:
    person = site.accounts.user(f"{role}-{'ke' if countries else 'all'}", role, "ocsea", countries)
    page = site.get(person, CODEBOOK)
    assert ('id="add-code-form"' in page.text) is editor
    assert ('href="/console/studies/ocsea/countries/KE/codebook/import"' in page.text) is editor
    assert 'href="/console/studies/ocsea/countries/KE/codebook/codebook.csv"' in page.text
    code_page = site.get(person, site.code_url(site.capacity))
    assert ('id="edit-code-form"' in code_page.text) is editor
    assert ('id="merge-code-form"' in code_page.text) is editor
    assert ("Retire the code" in code_page.text) is editor
    site.get(person, f"{CODEBOOK}/import", status=200 if editor else 403)


def test_a_country_analyst_changes_nothing_even_by_posting(site: Site) -> None:
    before = count(site.session, Code)
    site.post(site.ana, CODEBOOK, {"name": "Sneaky", "colour": "#000000", "parent_id": ""}, status=403)
    site.post(site.ana, site.code_url(site.budget), {"name": "Renamed", "version": "1"}, status=403)
    site.post(
        site.ana, site.code_url(site.budget, "/status"), {"action": "retire", "version": "1"}, status=403
    )
    site.post(
        site.ana, site.code_url(site.budget, "/merge"), {"into": site.capacity, "version": "1"}, status=403
    )
    site.post(site.ana, f"{CODEBOOK}/import", {"step": "import", "data": "cGF0aApY"}, status=403)
    assert count(site.session, Code) == before
    assert (site.code(site.budget).name, site.code(site.budget).status) == ("Budget", "active")


def test_a_form_without_its_csrf_token_is_refused(site: Site) -> None:
    site.get(site.carla, CODEBOOK)
    form = {"name": "Forged", "colour": "#000000", "parent_id": "", "csrf_token": "0" * 64}
    site.testapp.post(CODEBOOK, form, headers=HTML, status=400)
    site.testapp.post(site.code_url(site.budget, "/status"), {"action": "retire", "version": "1"}, status=400)
    assert site.session.scalar(select(Code).where(Code.name == "Forged")) is None
    assert site.code(site.budget).status == "active"


# ---------------------------------------------------------------------------------- adding a code


def test_adding_a_code_with_its_colour_and_parent(site: Site) -> None:
    response = site.post(
        site.carla,
        CODEBOOK,
        {
            "name": "  Hotlines ",
            "definition": "Phone lines",
            "colour": "#ff8800",
            "parent_id": str(site.capacity),
        },
        status=303,
    )
    made = site.session.scalars(select(Code).where(Code.name == "Hotlines")).one()
    assert (made.parent_id, made.colour, made.definition, made.created_by) == (
        site.capacity,
        "#FF8800",
        "Phone lines",
        "carla",
    )
    assert response.location.endswith(f"/codebook#code-{made.id}")
    page = site.testapp.get(response.location, headers=HTML)
    assert "Code Hotlines added." in page.text
    assert re.search(rf'<tr class="code-row depth-1">\s*<th scope="row" id="code-{made.id}">', page.text)
    (event,) = site.events("codebook.code_created")
    assert event.details["via"] == "console" and event.actor == "carla"
    assert event.target == f"ocsea/codes/{made.id}"


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": "   "}, "name", "name must not be empty"),
        ({"name": "Capacity"}, "name", "already named 'Capacity'"),
        ({"name": "A/B"}, "name", "must not contain '/'"),
        ({"name": "x" * 201}, "name", "longer than 200"),
        ({"colour": "red"}, "colour", "#RRGGBB"),
        ({"parent_id": "top"}, "parent_id", "Choose the code to place it under"),
        ({"parent_id": "999999"}, "parent_id", "no code 999999"),
        ({"definition": "bell \x07"}, "definition", "definition"),
    ],
)
def test_a_refused_code_is_shown_next_to_its_field_and_nothing_is_stored(
    site: Site, form: dict[str, str], field: str, message: str
) -> None:
    before = count(site.session, Code)
    sent = {"name": "New code", "definition": "", "colour": "#123456", "parent_id": "", **form}
    response = site.post(site.carla, CODEBOOK, sent, status=422)
    assert message in error_next_to(response, field)
    assert f'id="field-{field}" name="{field}"' in response.text
    assert re.search(rf'id="field-{field}"[^>]*aria-invalid="true"', response.text)
    if field != "name":  # what was typed is kept
        assert 'value="New code"' in response.text
    assert count(site.session, Code) == before
    assert site.events("codebook.code_created") == []


# --------------------------------------------------------------------------------- editing a code


def test_editing_a_code_and_its_history(site: Site) -> None:
    url = site.code_url(site.budget)
    form = {
        "name": "Budget lines",
        "definition": "Money",
        "colour": "#000000",
        "parent_id": str(site.capacity),
    }
    response = site.post(site.carla, url, {**form, "version": "1"}, status=303, page=url)
    code = site.code(site.budget)
    assert (code.name, code.definition, code.colour, code.parent_id, code.version) == (
        "Budget lines",
        "Money",
        "#000000",
        site.capacity,
        2,
    )
    page = site.testapp.get(response.location, headers=HTML)
    assert "Code Budget lines saved." in page.text
    history = re.findall(r'<tr class="history-row">(.*?)</tr>', page.text, re.S)
    assert len(history) == 1 and "carla" in history[0] and "updated (console)" in history[0]
    assert "name: Budget → Budget lines" in html.unescape(history[0])
    assert "parent: — → Capacity" in html.unescape(history[0])
    # The same values again: nothing to save, no new version.
    site.post(site.carla, url, {**form, "version": "2"}, status=303, page=url)
    assert site.code(site.budget).version == 2
    assert len(site.events("codebook.code_updated")) == 1


def test_an_edit_on_a_stale_version_shows_the_current_values_and_changes_nothing(site: Site) -> None:
    url = site.code_url(site.budget)
    token = csrf_in(site.get(site.carla, url))
    # Someone else renames it meanwhile (through the service, as the API would).
    codebook.update_code(site.session, site.study, site.code(site.budget), 1, {"name": "Funding"})
    site.session.flush()
    form = {"name": "Money", "definition": "mine", "colour": "#111111", "parent_id": "", "version": "1"}
    response = site.testapp.post(url, {**form, "csrf_token": token}, headers=HTML, status=409)
    assert "changed by someone else meanwhile" in _form_error(response)
    assert 'id="field-name" name="name" value="Funding"' in response.text  # the current values
    assert 'name="version" value="2"' in response.text
    assert "<dd>Money</dd>" in response.text and "<dd>mine</dd>" in response.text  # what was sent
    code = site.code(site.budget)
    assert (code.name, code.definition, code.version) == ("Funding", "", 2)


def test_an_edit_of_a_code_merged_meanwhile_says_so_without_the_form(site: Site) -> None:
    url = site.code_url(site.budget)
    token = csrf_in(site.get(site.carla, url))
    codebook.merge_code(site.session, site.study, site.code(site.budget), site.capacity, 1)
    site.session.flush()
    form = {"name": "Money", "definition": "", "colour": "#111111", "parent_id": "", "version": "1"}
    response = site.testapp.post(url, {**form, "csrf_token": token}, headers=HTML, status=409)
    assert "changed by someone else meanwhile" in _form_error(response)
    assert "merged into Capacity" in response.text and 'id="edit-code-form"' not in response.text
    assert (site.code(site.budget).name, site.code(site.budget).status) == ("Budget", "merged")


def test_a_refused_edit_is_shown_next_to_its_field(site: Site) -> None:
    url = site.code_url(site.capacity)
    form = {"name": "Capacity", "definition": "", "colour": "#2e7d32", "version": "1"}
    under_itself = site.post(site.carla, url, {**form, "parent_id": str(site.training)}, status=422, page=url)
    assert "under itself or one of its own sub-codes" in error_next_to(under_itself, "parent_id")
    taken = site.post(site.carla, url, {**form, "name": "budget", "parent_id": ""}, status=422, page=url)
    assert "already named 'Budget'" in error_next_to(taken, "name")
    no_version = site.post(site.carla, url, {**form, "parent_id": "", "version": ""}, status=422, page=url)
    assert "version" in _form_error(no_version)
    assert site.code(site.capacity).version == 1


def test_retiring_and_reactivating_a_code(site: Site) -> None:
    url = site.code_url(site.budget)
    retired = site.post(
        site.carla, url + "/status", {"action": "retire", "version": "1"}, status=303, page=url
    )
    assert site.code(site.budget).status == "retired"
    page = site.testapp.get(retired.location, headers=HTML)
    assert "Reactivate the code" in page.text and "Code Budget retired." in page.text
    stale = site.post(
        site.carla, url + "/status", {"action": "reactivate", "version": "1"}, status=409, page=url
    )
    assert "changed by someone else meanwhile" in _form_error(stale)
    assert site.code(site.budget).status == "retired"
    wrong = site.post(site.carla, url + "/status", {"action": "retire", "version": "2"}, status=409, page=url)
    assert "is retired, not active" in error_next_to(wrong, "status")
    site.post(site.carla, url + "/status", {"action": "reactivate", "version": "2"}, status=303, page=url)
    assert site.code(site.budget).status == "active"
    assert [
        e.details["via"]
        for e in site.events("codebook.code_retired") + site.events("codebook.code_reactivated")
    ] == [
        "console",
        "console",
    ]


def test_merging_asks_for_a_confirmation_that_explains_the_codings_move(site: Site) -> None:
    publish_instrument(site.session, "ocsea")
    interview = add_interview(site.session, site.study, "KE", site.ana.id)
    coder = coding_services.Coder(site.ana.id, "ana")
    passage = coding_services.Passage(interview.uuid, "details", 0, 2)
    coding_services.create_coding(site.session, site.study, "KE", coder, passage, site.budget)
    url = site.code_url(site.budget)
    asked = site.post(
        site.carla, url + "/merge", {"into": str(site.capacity), "version": "1"}, status=200, page=url
    )
    assert "Merge Budget into Capacity?" in asked.text
    assert "1 coding moves to Capacity" in asked.text
    assert site.code(site.budget).status == "active"  # not yet
    token = csrf_in(asked)
    done = site.testapp.post(
        url + "/merge",
        {"into": str(site.capacity), "version": "1", "confirmed": "yes", "csrf_token": token},
        headers=HTML,
        status=303,
    )
    assert done.location.endswith(site.code_url(site.capacity))
    assert (site.code(site.budget).status, site.code(site.budget).merged_into_id) == ("merged", site.capacity)
    (coding,) = site.session.scalars(select(Coding)).all()
    assert (coding.code_id, coding.original_code_id) == (site.capacity, site.budget)
    assert "1 codings moved" in site.testapp.get(done.location, headers=HTML).text
    merged_page = site.get(site.carla, url)
    assert "merged into Capacity" in merged_page.text and 'id="edit-code-form"' not in merged_page.text
    assert {e.details["via"] for e in site.events("codebook.code_merged")} == {"console"}


def test_a_refused_merge_is_shown_next_to_the_choice(site: Site) -> None:
    url = site.code_url(site.capacity)
    into_child = site.post(
        site.carla,
        url + "/merge",
        {"into": str(site.training), "version": "1", "confirmed": "yes"},
        status=422,
        page=url,
    )
    assert "lies under code" in error_next_to(into_child, "into")
    nothing = site.post(site.carla, url + "/merge", {"into": "", "version": "1"}, status=422, page=url)
    assert "Choose the code to merge" in error_next_to(nothing, "into")
    missing = site.post(site.carla, url + "/merge", {"into": "999999", "version": "1"}, status=422, page=url)
    assert "no code 999999" in error_next_to(missing, "into")
    assert site.code(site.capacity).status == "active"


def test_an_unknown_code_is_the_consoles_404(site: Site) -> None:
    page = site.get(site.carla, site.code_url(999999), status=404)
    assert page.content_type == "text/html"


# ---------------------------------------------------------------------------- import and export


def test_importing_checks_the_file_first_then_imports_it(site: Site) -> None:
    text = "path,definition,colour\nCapacity,Staff and tools,\nCapacity/Hotlines,Phone lines,#FF8800\n"
    checked = site.check_import(site.carla, "codebook.csv", text.encode(), "text/csv", 200)
    rows = re.findall(r'<tr class="import-row">(.*?)</tr>', checked.text, re.S)
    assert len(rows) == 2
    assert "Capacity" in rows[0] and "changed" in rows[0] and "definition" in rows[0]
    assert "Capacity / Hotlines" in rows[1] and "created" in rows[1]
    assert site.session.scalar(select(Code).where(Code.name == "Hotlines")) is None  # a dry run
    assert site.code(site.capacity).definition == "Staff"
    data = re.search(r'name="data" value="([^"]+)"', checked.text).group(1)
    done = site.testapp.post(
        f"{CODEBOOK}/import",
        {"step": "import", "data": data, "filename": "codebook.csv", "csrf_token": csrf_in(checked)},
        headers=HTML,
        status=303,
    )
    assert "1 codes created, 1 changed" in site.testapp.get(done.location, headers=HTML).text
    assert site.code(site.capacity).definition == "Staff and tools"
    hotlines = site.session.scalars(select(Code).where(Code.name == "Hotlines")).one()
    assert (hotlines.parent_id, hotlines.colour) == (site.capacity, "#FF8800")
    (imported,) = site.events("codebook.imported")
    assert imported.details["via"] == "console" and imported.details["created"] == 1


def test_a_refused_file_lists_each_problem_with_its_row_and_column(site: Site) -> None:
    before = count(site.session, Code)
    text = "path,colour\nNew one,#FF8800\nOther,blue\n,#000000\n"
    response = site.check_import(site.carla, "codebook.csv", text.encode(), "text/csv", 422)
    problems = [
        [html.unescape(cell) for cell in re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", row)]
        for row in re.findall(r'<tr class="problem-row">(.*?)</tr>', response.text, re.S)
    ]
    assert [row[:2] for row in problems] == [["3", "colour"], ["4", "path"]]
    assert "#RRGGBB" in problems[0][2] and "path is required" in problems[1][2]
    assert count(site.session, Code) == before
    no_file = site.post(site.carla, f"{CODEBOOK}/import", {"step": "check"}, status=422)
    assert "Choose the CSV or XLSX codebook file" in error_next_to(no_file, "file")
    pdf = site.check_import(site.carla, "notes.pdf", b"%PDF-1.4", "application/pdf", 422)
    assert "expected a CSV or XLSX codebook" in pdf.text
    assert count(site.session, Code) == before


def test_the_codebook_downloads_as_csv_and_xlsx(site: Site) -> None:
    csv_file = site.get(site.ana, f"{CODEBOOK}/codebook.csv")
    assert csv_file.content_type == "text/csv"
    assert 'filename="codebook-ocsea.csv"' in csv_file.headers["Content-Disposition"]
    lines = csv_file.body.decode("utf-8-sig").splitlines()
    assert lines[0] == "path,definition,colour,guid"
    assert [line.split(",")[0] for line in lines[1:]] == ["Budget", "Capacity", "Capacity/Training"]
    xlsx = site.get(site.ana, f"{CODEBOOK}/codebook.xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.body)).active
    assert [row[0] for row in sheet.iter_rows(values_only=True)] == [
        "path",
        "Budget",
        "Capacity",
        "Capacity/Training",
    ]
    tz = site.accounts.user("tz-analyst", "analyst", "ocsea", ["TZ"])
    site.get(tz, f"{CODEBOOK}/codebook.csv", status=403)
