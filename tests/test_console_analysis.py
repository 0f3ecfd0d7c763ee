"""The analysts' console pages through WebTest (docs/console-analysis.md): who sees them, the
codebook, the interviews, coding a passage (offsets in code points, with non-ASCII text before it) or
a quote, every refused input shown next to its field with nothing stored, CSRF, the coder's own
codings (memo, confirm, delete) and other coders' kept apart, and the agreement of two coders."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import webtest
from analysis_console_support import (
    DETAILS,
    PASSAGE,
    add_code,
    add_interview,
    count,
    publish_instrument,
)
from console_support import HTML, csrf_in, error_next_to, sign_in
from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.analysis import coding as coding_services
from surveykit.analysis.models import Coding
from surveykit.audit.models import AuditEvent
from surveykit.sync.models import Interview, Quote

KE = "/console/studies/ocsea/countries/KE"


class Analysis:
    """Study ocsea (KE, TZ) with an instrument, one KE interview and a small codebook."""

    def __init__(self, testapp: webtest.TestApp, accounts: Any, dbsession: Session) -> None:
        self.testapp = testapp
        self.accounts = accounts
        self.session = dbsession
        self.study = accounts.study("ocsea", ("KE", "TZ"))
        self.ana = accounts.user("ana", "analyst", "ocsea", ["KE"])
        self.ben = accounts.user("ben", "analyst", "ocsea", ["KE"])
        publish_instrument(dbsession, "ocsea")
        self.interview = add_interview(dbsession, self.study, "KE", self.ana.id)
        self.capacity = add_code(dbsession, self.study, "Capacity", "#2e7d32", definition="Training, staff")
        self.training = add_code(dbsession, self.study, "Training", "#c62828", parent=self.capacity)
        self.old = add_code(dbsession, self.study, "Old theme", status="retired")
        self.merged = add_code(
            dbsession, self.study, "Budget lines", status="merged", merged_into=self.capacity
        )
        self.page = f"{KE}/interviews/{self.interview.uuid}"

    def as_(self, user: Any) -> webtest.TestApp:
        self.testapp.reset()
        sign_in(self.testapp, self.accounts, user)
        return self.testapp

    def get(self, user: Any, url: str, status: int | str = 200) -> webtest.TestResponse:
        return self.as_(user).get(url, headers=HTML, status=status)

    def post(
        self, user: Any, url: str, form: dict[str, Any], status: int | str = "*", page: str | None = None
    ):
        app = self.as_(user)
        token = csrf_in(app.get(page or self.page, headers=HTML))
        return app.post(url, {**form, "csrf_token": token}, headers=HTML, status=status)

    def coding(self, user: Any, start: int, end: int, code_id: int | None = None) -> Coding:
        coder = coding_services.Coder(user.id, user.username)
        passage = coding_services.Passage(self.interview.uuid, "details", start, end)
        return coding_services.create_coding(
            self.session, self.study, "KE", coder, passage, code_id or self.capacity
        )


@pytest.fixture
def an(testapp: webtest.TestApp, accounts: Any, dbsession: Session) -> Analysis:
    return Analysis(testapp, accounts, dbsession)


def test_the_menu_and_the_start_page_show_the_countries_one_analyses(an: Analysis) -> None:
    page = an.get(an.ana, "/console/analysis")
    assert 'href="/console/analysis"' in page.text
    assert f'href="{KE}/interviews"' in page.text
    assert "/countries/TZ/" not in page.text
    fieldworker = an.accounts.user("fwk", "fieldworker", "ocsea", ["KE"])
    home = an.get(fieldworker, "/console/")
    assert 'href="/console/analysis"' not in home.text
    assert "Your grants open no country for analysis" in an.get(fieldworker, "/console/analysis").text


@pytest.mark.parametrize(
    ("role", "countries", "status"),
    [
        ("fieldworker", ["KE"], 403),
        ("coordinator", ["TZ"], 403),
        ("analyst", ["TZ"], 403),
        ("coordinator", ["KE"], 200),
    ],
)
def test_the_pages_follow_the_apis_scope(an: Analysis, role: str, countries: list[str], status: int) -> None:
    person = an.accounts.user(f"{role}-{countries[0]}".lower(), role, "ocsea", countries)
    for url in (f"{KE}/codebook", f"{KE}/interviews", an.page, f"{KE}/agreement"):
        response = an.get(person, url, status=status)
        assert response.content_type == "text/html"
    if status == 403:
        before = count(an.session, Coding)
        an.post(
            person,
            an.page,
            {"question_id": "details", "start": "0", "end": "2", "code_id": an.capacity},
            status=403,
            page="/console/account",
        )
        assert count(an.session, Coding) == before


def test_the_codebook_shows_the_tree_colours_statuses_and_counts(an: Analysis) -> None:
    an.coding(an.ana, 0, 1, an.training)
    page = an.get(an.ana, f"{KE}/codebook")
    rows = re.findall(r'<tr class="code-row depth-(\d)">(.*?)</tr>', page.text, re.S)
    names = [(depth, re.search(r'class="code-path"[^>]*>([^<]*)<', row).group(1)) for depth, row in rows]
    assert names == [("0", "Budget lines"), ("0", "Capacity"), ("1", "Training"), ("0", "Old theme")]
    by_name = {name: row for (_, name), (_, row) in zip(names, rows, strict=True)}
    assert 'fill="#c62828"' in by_name["Training"] and "Capacity / Training" in by_name["Training"]
    assert "Training, staff" in by_name["Capacity"]
    assert "merged into Capacity" in by_name["Budget lines"]
    assert "retired" in by_name["Old theme"]
    assert re.search(r'<td class="number">1</td>', by_name["Training"])


def test_the_interviews_list_their_participant_ids_and_codings(an: Analysis) -> None:
    an.coding(an.ana, 0, 1)
    an.coding(an.ben, 2, 5)
    page = an.get(an.ana, f"{KE}/interviews")
    row = re.search(
        r"<tr>\s*<th scope=\"row\"><a href=\"([^\"]+)\">RA1-KE-01</a></th>(.*?)</tr>", page.text, re.S
    )
    assert row and row.group(1) == an.page
    assert "RA1-KE-01-A" in row.group(2)
    assert re.findall(r'<td class="number">(\d+)</td>', row.group(2)) == ["1", "2"]


def test_a_selected_passage_after_non_ascii_text_is_coded_at_its_code_points(an: Analysis) -> None:
    start = DETAILS.index(PASSAGE)
    assert len(DETAILS[:start].encode("utf-16-le")) // 2 == start + 1  # the emoji is two UTF-16 units
    page = an.get(an.ana, an.page)
    assert "What training is given?" in page.text
    assert f'<p class="answer-text" data-question="details">{DETAILS}</p>' in page.text
    response = an.post(
        an.ana,
        an.page,
        {
            "question_id": "details",
            "start": str(start),
            "end": str(start + len(PASSAGE)),
            "code_id": str(an.training),
            "memo": "who is trained",
        },
        status=303,
    )
    coding = an.session.scalars(select(Coding)).one()
    assert (coding.start_offset, coding.end_offset, coding.text) == (start, start + len(PASSAGE), PASSAGE)
    assert (coding.coder, coding.memo, coding.code_id) == ("ana", "who is trained", an.training)
    assert response.location.endswith(f"#coding-{coding.id}")
    event = an.session.scalars(select(AuditEvent).where(AuditEvent.action == "coding.created")).one()
    assert event.details["via"] == "console" and event.target == f"ocsea/KE/codings/{coding.id}"
    shown = an.testapp.get(an.page, headers=HTML)
    assert (
        f'{DETAILS[:start]}<mark class="coded" data-colour="#c62828" data-codings="{coding.id}"' in shown.text
    )
    assert f">{PASSAGE}</mark>{DETAILS[start + len(PASSAGE) :]}</p>" in shown.text
    assert "Code applied to" in shown.text
    # The record and its quote are untouched.
    an.session.expire_all()
    assert an.session.get(Interview, an.interview.uuid).record["answers"]["details"] == DETAILS


def test_a_quote_is_coded_with_its_own_form(an: Analysis) -> None:
    quote = an.session.scalars(select(Quote)).one()
    page = an.get(an.ana, an.page)
    assert f'name="quote_id" value="{quote.id}"' in page.text
    an.post(an.ana, an.page, {"quote_id": quote.id, "code_id": str(an.capacity)}, status=303)
    coding = an.session.scalars(select(Coding)).one()
    assert (coding.quote_id, coding.text, coding.start_offset) == (quote.id, PASSAGE, quote.start_offset)


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"start": "", "end": "5"}, "start", "Select a passage"),
        ({"start": "-1", "end": "5"}, "start", "Select a passage"),
        ({"start": "5", "end": "5"}, "end", "must be greater than start"),
        ({"start": "0", "end": "999"}, "end", "at most the answer's length, 66 characters"),
        ({"question_id": ""}, "question_id", "Choose the answer"),
        ({"question_id": "mode"}, "question_id", "no answer to 'mode'"),
        ({"question_id": "consent"}, "question_id", "only text answers can be coded"),
        ({"code_id": ""}, "code_id", "Choose a code"),
        ({"code_id": "old"}, "code_id", "is retired"),
        ({"code_id": "999999"}, "code_id", "no code 999999"),
        ({"memo": "m" * 10_001}, "memo", "at most 10000 characters"),
        ({"memo": "who\x00"}, "memo", "contains a NUL character"),
        ({"code_id": str(2**31)}, "code_id", "Choose a code"),
    ],
)
def test_a_refused_passage_is_shown_next_to_its_field_and_nothing_is_stored(
    an: Analysis, form: dict[str, str], field: str, message: str
) -> None:
    assert len(DETAILS) == 66
    good = {"question_id": "details", "start": "2", "end": "11", "code_id": str(an.capacity), "memo": ""}
    sent = {**good, **form}
    if sent["code_id"] == "old":
        sent["code_id"] = str(an.old)
    if form.get("question_id") == "mode":
        answers = dict(an.interview.record["answers"])
        del answers["mode"]
        an.interview.record = {**an.interview.record, "answers": answers}
        an.session.flush()
    response = an.post(an.ana, an.page, sent, status=422)
    assert message in error_next_to(response, field)
    assert 'aria-invalid="true"' in response.text
    if field in ("start", "end"):
        assert f'id="field-{field}" name="{field}" value="{sent[field]}"' in response.text
    assert count(an.session, Coding) == 0
    assert an.session.scalars(select(AuditEvent).where(AuditEvent.action == "coding.created")).all() == []


def test_a_form_without_its_csrf_token_is_refused(an: Analysis) -> None:
    app = an.as_(an.ana)
    form = {"question_id": "details", "start": "0", "end": "2", "code_id": str(an.capacity)}
    response = app.post(an.page, form, headers=HTML, status=400)
    assert "The form has expired" in response.text
    response = app.post(an.page, {**form, "csrf_token": "0" * 64}, headers=HTML, status=400)
    assert count(an.session, Coding) == 0


def test_own_codings_are_changed_and_other_coders_kept_apart(an: Analysis) -> None:
    mine = an.coding(an.ana, 0, 1)
    theirs = an.coding(an.ben, 2, 11, an.training)
    theirs.anchor = mine.anchor = "moved"
    an.session.flush()
    page = an.get(an.ana, an.page)
    assert f'id="coding-{mine.id}"' in page.text and f'id="coding-{theirs.id}"' not in page.text
    assert f'data-codings="{theirs.id}"' not in page.text
    assert "1 coding by another coder is hidden." in page.text
    both = an.testapp.get(f"{an.page}?others=show", headers=HTML)
    assert f'id="coding-{theirs.id}"' in both.text and f'data-codings="{theirs.id}"' in both.text
    theirs_row = both.text.split(f'id="coding-{theirs.id}"')[1].split("</tr>")[0]
    assert "Delete" not in theirs_row and "<textarea" not in theirs_row

    url = f"{KE}/codings/{mine.id}"
    an.post(an.ana, url, {"action": "memo", "memo": "checked again"}, status=303)
    an.post(an.ana, url, {"action": "confirm"}, status=303)
    an.session.expire_all()
    assert (mine.memo, mine.anchor) == ("checked again", "current")
    too_long = an.post(an.ana, url, {"action": "memo", "memo": "x" * 10_001}, status=422)
    assert re.search(rf'id="memo-error-{mine.id}">A memo has at most', too_long.text)
    nul = an.post(an.ana, url, {"action": "memo", "memo": "a\x00b"}, status=422)
    assert re.search(rf'id="memo-error-{mine.id}">The memo contains a NUL character', nul.text)
    an.session.expire_all()
    assert mine.memo == "checked again"
    changed = an.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "coding.updated").order_by(AuditEvent.id)
    ).all()
    assert [e.details["changed"] for e in changed] == [["memo"], ["anchor"]]

    refused = an.post(an.ana, f"{KE}/codings/{theirs.id}", {"action": "delete"}, status=403)
    assert "only its coder or an admin" in refused.text
    assert an.session.get(Coding, theirs.id) is not None
    assert an.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "coding.deleted", AuditEvent.outcome == "refused")
    ).one()
    an.post(an.ana, url, {"action": "delete"}, status=303)
    assert count(an.session, Coding) == 1
    an.post(an.ana, url, {"action": "delete"}, status=404)


def test_agreement_of_two_coders_per_code(an: Analysis) -> None:
    second = add_interview(an.session, an.study, "KE", an.ana.id)
    an.coding(an.ana, 0, 1)
    an.coding(an.ben, 2, 5)
    an.coding(an.ana, 0, 1, an.training)
    coder = coding_services.Coder(an.ben.id, "ben")
    coding_services.create_coding(
        an.session, an.study, "KE", coder, coding_services.Passage(second.uuid, "details", 0, 1), an.training
    )
    page = an.get(an.ana, f"{KE}/agreement")
    assert '<option value="ana" selected>' in page.text
    page = an.testapp.get(f"{KE}/agreement?first=ana&second=ben", headers=HTML)
    assert "2 answers compared between ana and ben." in page.text
    rows = dict(
        re.findall(r'<tr class="agreement-row">\s*<th scope="row">([^<]*)</th>(.*?)</tr>', page.text, re.S)
    )
    # Capacity: both coded the one answer of interview 1, neither interview 2: kappa 1.
    assert re.findall(r">([^<>]+)</td>", rows["Capacity"])[:5] == ["1", "0", "0", "1", "100.0 %"]
    assert ">1.00<" in rows["Capacity"]
    # Training: the first coded interview 1, the second interview 2.
    assert re.findall(r">([^<>]+)</td>", rows["Capacity / Training"])[:5] == ["0", "1", "1", "0", "0.0 %"]
    same = an.testapp.get(f"{KE}/agreement?first=ana&second=ana", headers=HTML, status=422)
    assert "Choose a coder other than the first one" in error_next_to(same, "second")
    unknown = an.testapp.get(f"{KE}/agreement?first=zed&second=ben", headers=HTML, status=422)
    assert "Choose someone who has coded" in error_next_to(unknown, "first")


def test_kappa_without_a_value_shows_why(an: Analysis) -> None:
    an.coding(an.ana, 0, 1)
    an.coding(an.ben, 0, 1)
    page = an.get(an.ana, f"{KE}/agreement?first=ana&second=ben")
    assert "kappa is undefined" in page.text


def test_the_guide_shows_the_screenshots_the_browser_journey_takes() -> None:
    root = Path(__file__).parent.parent
    guide = (root / "docs" / "console-analysis.md").read_text(encoding="utf-8")
    shown = re.findall(r"\]\(img/(console-analysis-[a-z-]+)\.png\)", guide)
    journey = (root / "tests" / "browser" / "test_console_analysis_journey.py").read_text(encoding="utf-8")
    taken = re.findall(r'screenshot\(page, "([a-z-]+)"', journey)
    assert len(shown) == 4 and sorted(shown) == sorted(taken)
    for name in shown:
        assert (root / "docs" / "img" / f"{name}.png").stat().st_size > 1000, name
    assert "[console-analysis.md](console-analysis.md)" in (root / "docs" / "console.md").read_text("utf-8")


def test_a_carriage_return_reaches_the_page_so_offsets_after_it_stay_right(an: Analysis) -> None:
    text = "Primeira linha.\r\nO Ministério treina polícias."
    interview = add_interview(an.session, an.study, "KE", an.ana.id, text)
    page = an.get(an.ana, f"{KE}/interviews/{interview.uuid}")
    assert 'data-question="details">Primeira linha.&#13;\nO Ministério treina polícias.</p>' in page.text


def test_a_refused_quote_is_shown_next_to_its_form(an: Analysis) -> None:
    quote = an.session.scalars(select(Quote)).one()
    response = an.post(an.ana, an.page, {"quote_id": quote.id, "code_id": str(an.old)}, status=422)
    found = re.search(rf'id="quote-error-{quote.id}">([^<]*)<', response.text)
    assert found and "is retired" in found.group(1)
    assert f'id="quote-code-{quote.id}" name="code_id" aria-invalid="true"' in response.text
    assert count(an.session, Coding) == 0


@pytest.mark.parametrize("quote_id", ["not-a-quote", "a\x00b", "0" * 400])
def test_an_unknown_quote_is_refused_on_the_page(an: Analysis, quote_id: str) -> None:
    response = an.post(an.ana, an.page, {"quote_id": quote_id, "code_id": str(an.capacity)}, status=422)
    assert re.search(r'<p class="error form-error" role="alert">There is no such quote', response.text)
    assert count(an.session, Coding) == 0


def test_an_unknown_interview_or_coding_is_the_consoles_404(an: Analysis) -> None:
    missing = an.get(an.ana, f"{KE}/interviews/00000000-0000-4000-8000-000000000000", status=404)
    assert missing.content_type == "text/html" and "Page not found" in missing.text
    tz = an.accounts.user("tz-coord", "coordinator", "ocsea", ["TZ"])
    # The KE interview seen from TZ's pages: not there.
    an.get(tz, f"/console/studies/ocsea/countries/TZ/interviews/{an.interview.uuid}", status=404)
    an.post(an.ana, f"{KE}/codings/999999", {"action": "delete"}, status=404)
