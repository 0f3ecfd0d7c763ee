"""The instrument studio's console pages (WebTest): upload a file as a draft, see its problems with
where they are, replace it, preview, compare, publish; preview, compare and download published
versions. Who may do what, CSRF on every form, and the uploads that cannot become a draft."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import webtest
from console_support import HTML, csrf_for, sign_in
from instrument_samples import minimal_definition
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from surveykit.audit.models import AuditEvent
from surveykit.console.studio_services import MAX_UPLOAD_BYTES
from surveykit.instruments import services as instruments
from surveykit.instruments.drafts import InstrumentDraft

SLUG = "studio-debrief"
# The mistake: the relevance of `details` reads `later`, a question asked after it.
STUDIO_YAML = """\
slug: studio-debrief
study: ocsea
activity: RA1
title:
  en: Studio debrief
  pt: Balanço do estúdio
default_language: en
languages: [en, pt]
sections:
  - id: first
    title:
      en: First
      pt: Primeira
    questions:
      - id: consent
        type: yes_no
        prompt:
          en: Was consent given?
          pt: Foi dado consentimento?
      - id: details
        type: long_text
        relevance: $later == true
        prompt: Describe what happened.
      - id: later
        type: yes_no
        prompt:
          en: Anything else?
          pt: Mais alguma coisa?
      - id: answer
        type: single_choice
        prompt:
          en: Answer
          pt: Resposta
        choices:
          - value: "yes"
            label: {en: "Yes", pt: "Sim"}
          - value: "no"
            label: {en: "No", pt: "Não"}
"""
MISTAKE_LINE = STUDIO_YAML.splitlines().index("        relevance: $later == true") + 1
CORRECTED_YAML = STUDIO_YAML.replace("relevance: $later == true", "relevance: $consent == true")
NEW = "/console/instruments/new"


def drafts_count(dbsession: Session) -> int:
    dbsession.expire_all()
    return dbsession.scalar(select(func.count()).select_from(InstrumentDraft))


def events(dbsession: Session, action: str) -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def error_of(page: Any, field: str) -> str | None:
    found = page.html.find(id=f"error-{field}")
    return found.get_text(strip=True) if found else None


class Studio:
    """Study ocsea (KE, TZ) and another study, their people, and a signed-in browser."""

    def __init__(self, testapp: webtest.TestApp, accounts: Any, dbsession: Session) -> None:
        self.testapp, self.accounts, self.session = testapp, accounts, dbsession
        accounts.study("ocsea", ("KE", "TZ"))
        accounts.study("other", ("KE",))
        self.coordinator = accounts.user("studio-coord", "coordinator", "ocsea", ["KE"])
        self.other_coordinator = accounts.user("studio-coord-tz", "coordinator", "ocsea", ["TZ"])
        self.elsewhere = accounts.user("studio-other", "coordinator", "other", ["KE"])
        self.analyst = accounts.user("studio-analyst", "analyst", "ocsea", ["KE"])
        self.session_id = ""

    def as_(self, user: Any) -> webtest.TestApp:
        self.testapp.reset()
        self.session_id = sign_in(self.testapp, self.accounts, user)
        return self.testapp

    def upload(
        self, url: str, content: bytes | None, filename: str = "debrief.yaml", status: int | str = "*"
    ) -> webtest.TestResponse:
        files = [("file", filename, content)] if content is not None else []
        return self.testapp.post(
            url,
            {"csrf_token": csrf_for(self.accounts, self.session_id)},
            upload_files=files,
            headers=HTML,
            status=status,
        )

    def post(self, url: str, status: int | str = "*", **form: str) -> webtest.TestResponse:
        form = {"csrf_token": csrf_for(self.accounts, self.session_id), **form}
        return self.testapp.post(url, form, headers=HTML, status=status)

    def new_draft(self, content: str | bytes, filename: str = "debrief.yaml") -> str:
        """Upload as the signed-in person; the draft page's URL."""
        data = content.encode("utf-8") if isinstance(content, str) else content
        response = self.upload(NEW, data, filename, status=303)
        return re.sub(r"^https?://[^/]+", "", response.location)

    def publish_sample(self, slug: str = SLUG, study: str | None = "ocsea", **changes: Any) -> dict[str, Any]:
        definition = minimal_definition(slug)
        if study:
            definition["study"] = study
        definition.update(changes)
        instruments.publish(self.session, instruments.validate_definition(definition), "tests")
        self.session.flush()
        return definition


@pytest.fixture
def studio(testapp: webtest.TestApp, accounts: Any, dbsession: Session) -> Studio:
    return Studio(testapp, accounts, dbsession)


def problem_rows(page: webtest.TestResponse) -> list[list[str]]:
    return [
        [cell.get_text(" ", strip=True) for cell in row.find_all(["th", "td"])]
        for row in page.html.find_all("tr", class_="problem-row")
    ]


# ------------------------------------------------------------------------------- the whole journey


def test_a_mistake_is_shown_with_its_line_then_the_corrected_file_is_previewed_and_published(
    studio: Studio, dbsession: Session
) -> None:
    app = studio.as_(studio.coordinator)
    form = app.get(NEW, headers=HTML)
    assert form.html.find("input", attrs={"type": "file", "name": "file"}) is not None
    draft_url = studio.new_draft(STUDIO_YAML)
    page = app.get(draft_url, headers=HTML)
    assert "has 1 problem(s)" in page.text  # the flash
    rows = problem_rows(page)
    assert len(rows) == 1
    where, excerpt, path, message = rows[0]
    assert where.startswith(f"line {MISTAKE_LINE}")
    assert excerpt == "relevance: $later == true"
    assert path == "sections[0].questions[1].relevance"
    assert "$later" in message and "not an earlier question" in message
    assert page.html.find("button", string="Publish").has_attr("disabled")
    assert "Fix the problems above first." in page.text

    page = studio.upload(f"{draft_url}/file", CORRECTED_YAML.encode(), status=303).follow(headers=HTML)
    assert events(dbsession, "instrument.draft_replace")[-1].details["problems"] == 0
    assert "no problems found" in page.text and problem_rows(page) == []
    # pt lacks the prompt of `details`: listed as missing, with its source text.
    translations = page.html.find(id="translations-title").find_parent("section")
    assert "1 missing, 0 stale" in translations.get_text(" ", strip=True)
    assert (
        "sections[0].questions[1].prompt" in translations.text
        and "Describe what happened." in translations.text
    )
    assert not page.html.find("button", string="Publish").has_attr("disabled")

    preview = app.get(f"{draft_url}/preview", headers=HTML)
    assert preview.html.find("a", attrs={"aria-current": "page"}).get_text(strip=True) == "en"
    assert preview.html.find(class_="fallback") is None
    preview = app.get(f"{draft_url}/preview?lang=pt", headers=HTML)
    assert "Foi dado consentimento?" in preview.text
    fallback = preview.html.find(class_="fallback")
    assert fallback is not None and "Describe what happened." in fallback.text
    assert "[not translated: shown in en]" in fallback.text
    assert preview.html.find(id="q-details").find(class_="relevance").find("a")["href"] == "#q-consent"
    app.get(f"{draft_url}/preview?lang=fr", headers=HTML, status=400)

    compare = app.get(f"{draft_url}/compare", headers=HTML)
    assert "not published yet" in compare.text

    published = studio.post(f"{draft_url}/publish", status=303)
    assert published.location.endswith(f"/console/instruments/{SLUG}")
    detail = published.follow(headers=HTML)
    assert f"{SLUG} version 1 is published." in detail.text
    version = instruments.find_version(dbsession, SLUG)
    assert version.version == 1
    event = events(dbsession, "instrument.publish")[-1]
    assert event.target == f"{SLUG}@1" and event.actor == "studio-coord"
    assert event.details["via"] == "console" and event.details["content_hash"] == version.content_hash
    assert drafts_count(dbsession) == 0  # the version holds it now
    app.get(draft_url, headers=HTML, status=404)


def test_yaml_is_read_as_yaml_1_2_so_no_stays_text(studio: Studio) -> None:
    app = studio.as_(studio.coordinator)
    unquoted = CORRECTED_YAML.replace('value: "no"', "value: no").replace('value: "yes"', "value: yes")
    page = app.get(studio.new_draft(unquoted), headers=HTML)
    assert problem_rows(page) == []


def test_a_syntax_error_keeps_the_file_as_a_draft_of_its_uploader_only(
    studio: Studio, dbsession: Session
) -> None:
    broken = "slug: broken\ntitle: [unclosed\nactivity: RA1\n"
    app = studio.as_(studio.coordinator)
    draft_url = studio.new_draft(broken)
    page = app.get(draft_url, headers=HTML)
    (where, excerpt, _path, message), *_ = problem_rows(page)
    assert where.startswith("line ") and "YAML" in message
    assert page.html.find("a", string="Preview") is None
    app.get(f"{draft_url}/preview", headers=HTML, status=409)
    # The file names no study it can be trusted for: only its uploader (and global admins) see it.
    studio.as_(studio.other_coordinator).get(draft_url, headers=HTML, status=403)
    listing = studio.testapp.get("/console/instruments", headers=HTML)
    assert draft_url not in listing.text
    admin = studio.accounts.user("studio-root", "admin", None)
    studio.as_(admin).get(draft_url, headers=HTML, status=200)


# ---------------------------------------------------------------------------------------- compare


def test_compare_lists_the_changes_and_the_type_guard_disables_publishing(
    studio: Studio, dbsession: Session
) -> None:
    studio.publish_sample()
    changed = minimal_definition(SLUG)
    changed["study"] = "ocsea"
    questions = changed["sections"][0]["questions"]
    questions[0]["type"] = "short_text"  # consent: yes_no -> short_text, refused by the guard
    questions.append({"id": "extra", "type": "short_text", "prompt": "One more thing?"})
    app = studio.as_(studio.coordinator)
    draft_url = studio.new_draft(json.dumps(changed), "debrief.json")
    page = app.get(draft_url, headers=HTML)
    assert problem_rows(page) == []
    button = page.html.find("button", string="Publish")
    assert button.has_attr("disabled") and "type of a question" in page.html.find(id="publish-reason").text
    compare = app.get(f"{draft_url}/compare", headers=HTML)
    assert "Publishing would be refused" in compare.text
    rows = {
        (row.find("th").get_text(strip=True), row.find_all("td")[0].get_text(" ", strip=True))
        for row in compare.html.find("table").find("tbody").find_all("tr")
    }
    assert ("extra", "added") in rows
    assert ("consent", "type changed refused") in rows
    assert compare.html.find("button", string="Publish").has_attr("disabled")
    refused = studio.post(f"{draft_url}/publish", status=409)
    assert "consent" in refused.text
    assert instruments.find_version(dbsession, SLUG).version == 1
    assert drafts_count(dbsession) == 1


def test_published_versions_are_previewed_compared_and_downloaded_as_xlsform(
    studio: Studio, dbsession: Session
) -> None:
    studio.publish_sample()
    studio.publish_sample(title={"en": "Sample debrief, second edition", "pt": "Balanço, segunda edição"})
    app = studio.as_(studio.analyst)  # reading is enough
    detail = app.get(f"/console/instruments/{SLUG}", headers=HTML)
    assert f"/console/instruments/{SLUG}/versions/2/preview" in detail.text
    assert f"/console/instruments/{SLUG}/versions/1.xlsx" in detail.text
    preview = app.get(f"/console/instruments/{SLUG}/versions/1/preview?lang=pt", headers=HTML)
    assert "Balanço de exemplo" in preview.text and preview.html.find(class_="fallback") is not None
    app.get(f"/console/instruments/{SLUG}/versions/3/preview", headers=HTML, status=404)
    app.get(f"/console/instruments/{SLUG}/versions/x/preview", headers=HTML, status=404)
    compare = app.get(f"/console/instruments/{SLUG}/compare?from=1&to=2", headers=HTML)
    assert "From version 1 to version 2." in compare.text
    bad = app.get(f"/console/instruments/{SLUG}/compare?from=9&to=2", headers=HTML, status=422)
    assert error_of(bad, "from") == "Choose one of the published versions."
    workbook = app.get(f"/console/instruments/{SLUG}/versions/1.xlsx", headers=HTML)
    assert workbook.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert f'filename="{SLUG}-v1.xlsx"' in workbook.headers["Content-Disposition"]
    book = openpyxl.load_workbook(io.BytesIO(workbook.body))
    assert "survey" in book.sheetnames
    # The current version's workbook comes back in as the same instrument: nothing to publish.
    current = app.get(f"/console/instruments/{SLUG}/versions/2.xlsx", headers=HTML)
    app = studio.as_(studio.coordinator)
    page = app.get(studio.new_draft(current.body, f"{SLUG}-v2.xlsx"), headers=HTML)
    assert problem_rows(page) == []
    assert page.html.find(id="publish-reason").get_text(strip=True) == (
        "This draft is identical to the current version."
    )
    compare = app.get(f"{page.request.path}/compare", headers=HTML)
    assert "They are identical." in compare.text
    app.get(f"/console/instruments/{SLUG}/versions/9.xlsx", headers=HTML, status=404)


def workbook_bytes(survey: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    sheets = {
        "survey": survey,
        "settings": [
            ["form_id", "form_title", "default_language", "surveykit::activity", "surveykit::study"],
            ["sheet-visit", "Sheet visit", "English (en)", "RA1", "ocsea"],
        ],
    }
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_a_workbooks_problems_are_shown_by_sheet_row_and_column(studio: Studio) -> None:
    survey = [
        ["type", "name", "label"],
        ["begin group", "visit", "The visit"],
        ["text", "office", "Which office?"],
        ["geopoint", "where", "Where is it?"],
        ["end group", None, None],
    ]
    app = studio.as_(studio.coordinator)
    page = app.get(studio.new_draft(workbook_bytes(survey), "visit.xlsx"), headers=HTML)
    (where, excerpt, _path, message), *_ = problem_rows(page)
    assert where == "sheet survey, row 4, column A (type)"
    assert excerpt == "" and "geopoint" in message
    assert page.html.find("dd", string="XLSForm workbook") is not None


def test_stale_translations_are_listed_against_the_published_versions(studio: Studio) -> None:
    studio.publish_sample()  # `mode` is "Mode" / "Modalidade"
    changed = minimal_definition(SLUG)
    changed["study"] = "ocsea"
    changed["sections"][0]["questions"][2]["prompt"]["en"] = "How was the interview held?"
    app = studio.as_(studio.coordinator)
    page = app.get(studio.new_draft(json.dumps(changed), "debrief.json"), headers=HTML)
    translations = page.html.find(id="translations-title").find_parent("section")
    stale = [row for row in translations.find_all("tr") if row.find("td", string="stale")]
    assert len(stale) == 1
    cells = stale[0].get_text(" ", strip=True)
    assert "sections[0].questions[2].prompt" in cells and "translated from: Mode" in cells


# ------------------------------------------------------------------------------------ bad uploads


@pytest.mark.parametrize(
    ("content", "filename", "expected"),
    [
        (b"", "debrief.yaml", "The file is empty: choose the file again."),
        (b"x" * (MAX_UPLOAD_BYTES + 1), "debrief.yaml", "The file is too large"),
        (b"%PDF-1.4", "debrief.pdf", "This is not an instrument file: choose a YAML, JSON or XLSForm file"),
        (None, "", "Choose the instrument file"),
    ],
    ids=["empty", "too-large", "unknown-type", "no-file"],
)
def test_an_upload_that_cannot_be_a_draft_is_refused_beside_the_file_field(
    studio: Studio, dbsession: Session, content: bytes | None, filename: str, expected: str
) -> None:
    studio.as_(studio.coordinator)
    page = studio.upload(NEW, content, filename, status=422)
    assert (error_of(page, "file") or "").startswith(expected)
    assert page.html.find("input", attrs={"name": "file"})["aria-invalid"] == "true"
    assert drafts_count(dbsession) == 0
    # The same on a draft's "upload a corrected file": the draft keeps its file.
    draft_url = studio.new_draft(CORRECTED_YAML)
    page = studio.upload(f"{draft_url}/file", content, filename, status=422)
    assert (error_of(page, "file") or "").startswith(expected)
    studio.session.expire_all()
    assert studio.session.scalars(select(InstrumentDraft.content)).one() == CORRECTED_YAML.encode()


def test_a_file_of_a_study_the_uploader_does_not_publish_for_is_refused(
    studio: Studio, dbsession: Session
) -> None:
    studio.as_(studio.elsewhere)
    page = studio.upload(NEW, CORRECTED_YAML.encode(), status=422)
    assert "instrument of ocsea" in error_of(page, "file")
    shared = CORRECTED_YAML.replace("study: ocsea\n", "")
    studio.as_(studio.coordinator)
    page = studio.upload(NEW, shared.encode(), status=422)
    assert "every study" in error_of(page, "file")
    assert drafts_count(dbsession) == 0


def test_a_file_cannot_move_an_instrument_to_another_study(studio: Studio, dbsession: Session) -> None:
    studio.publish_sample(study="other")
    app = studio.as_(studio.coordinator)
    page = app.get(studio.new_draft(CORRECTED_YAML), headers=HTML)
    assert "belongs to other" in problem_rows(page)[0][3]


# ------------------------------------------------------------------------------------ permissions


def test_who_may_see_and_change_a_draft(studio: Studio, dbsession: Session) -> None:
    studio.as_(studio.coordinator)
    draft_url = studio.new_draft(CORRECTED_YAML)
    # Anonymous browsers are sent to the sign-in form, like on every console page.
    studio.testapp.reset()
    for url in (NEW, draft_url, f"{draft_url}/preview", f"{draft_url}/compare"):
        response = studio.testapp.get(url, headers=HTML, status=303)
        assert "/console/sign-in?next=" in response.location
    # An analyst of the study reads instruments but publishes none: no studio.
    app = studio.as_(studio.analyst)
    for url in (NEW, draft_url, f"{draft_url}/preview", f"{draft_url}/compare"):
        assert app.get(url, headers=HTML, status=403).content_type == "text/html"
    assert "Upload an instrument file" not in app.get("/console/instruments", headers=HTML).text
    # Another study's coordinator neither.
    app = studio.as_(studio.elsewhere)
    app.get(draft_url, headers=HTML, status=403)
    studio.post(f"{draft_url}/delete", status=403)
    studio.post(f"{draft_url}/publish", status=403)
    assert draft_url not in app.get("/console/instruments", headers=HTML).text
    # Any coordinator of the study (another country too) may: publishing is per study.
    app = studio.as_(studio.other_coordinator)
    assert draft_url in app.get("/console/instruments", headers=HTML).text
    app.get(draft_url, headers=HTML, status=200)
    deleted = studio.post(f"{draft_url}/delete", status=303)
    assert "is deleted" in deleted.follow(headers=HTML).text
    assert drafts_count(dbsession) == 0
    uploaded, removed = (
        events(dbsession, "instrument.draft_upload"),
        events(dbsession, "instrument.draft_delete"),
    )
    assert [event.actor for event in uploaded] == ["studio-coord"]
    assert [event.actor for event in removed] == ["studio-coord-tz"]
    assert removed[0].target == uploaded[0].target and removed[0].details["slug"] == SLUG
    app.get(draft_url, headers=HTML, status=404)


def test_every_form_needs_its_csrf_token(studio: Studio, dbsession: Session) -> None:
    app = studio.as_(studio.coordinator)
    draft_url = studio.new_draft(CORRECTED_YAML)
    refused_before = len(events(dbsession, "console.csrf_refused"))
    for url in (NEW, f"{draft_url}/file", f"{draft_url}/delete", f"{draft_url}/publish"):
        page = app.post(
            url,
            {},
            upload_files=[("file", "debrief.yaml", CORRECTED_YAML.encode())],
            headers=HTML,
            status=400,
        )
        assert "The form has expired" in page.text
    assert len(events(dbsession, "console.csrf_refused")) == refused_before + 4
    assert drafts_count(dbsession) == 1 and events(dbsession, "instrument.publish") == []


def test_the_guide_shows_screenshots_the_browser_tests_take() -> None:
    root = Path(__file__).parent.parent
    guide = (root / "docs" / "console-studio.md").read_text(encoding="utf-8")
    shown = re.findall(r"\]\(img/(console-[a-z-]+)\.png\)", guide)
    browser_test = (Path(__file__).parent / "browser" / "test_console_studio_journey.py").read_text(
        encoding="utf-8"
    )
    taken = set(re.findall(r'screenshot\(page, "([a-z-]+)"', browser_test))
    assert len(shown) == 6 and set(shown) == taken
    for name in shown:
        assert (root / "docs" / "img" / f"{name}.png").stat().st_size > 1000, name
