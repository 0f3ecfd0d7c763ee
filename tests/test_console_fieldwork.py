"""The coordinators' console pages, through WebTest: the progress dashboard, the participant registry
(search, edit, import with its dry run), tablets (enrol, re-enrol, revoke) and conflicts (queue,
side-by-side review, resolution), each within the caller's countries only."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import webtest
from console_support import HTML, csrf_in, sign_in
from qr_support import read_qr_codes
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_sync_support import SyncWorld, change, make_record, new_uuid

from surveykit.accounts.identity import GrantScope
from surveykit.accounts.models import Device
from surveykit.audit.models import AuditEvent
from surveykit.participants import services as participants
from surveykit.participants.models import Participant
from surveykit.sync import services as sync
from surveykit.sync.models import FieldConflict, Interview, InterviewRevision


class Fieldwork:
    """Study ocsea (KE, TZ, KH) with RA1, planned interviews in KE and TZ, and signed-in people."""

    def __init__(self, testapp: webtest.TestApp, accounts: Any, dbsession: Session) -> None:
        self.testapp = testapp
        self.accounts = accounts
        self.session = dbsession
        self.world = SyncWorld(accounts, dbsession)
        self.study = self.world.study
        for country, agencies in (
            ("KE", ["Ministry of ICT", "Police"]),
            ("TZ", ["Ministry of Home Affairs"]),
        ):
            for agency in agencies:
                participants.register_interview(
                    dbsession, self.study, country, "RA1", [participants.NewParticipant(agency)], "tests"
                )
        dbsession.flush()

    def person(self, username: str, role: str, countries: list[str] | None) -> Any:
        return self.accounts.user(username, role, "ocsea", countries)

    def as_(self, user: Any) -> webtest.TestApp:
        self.testapp.reset()
        sign_in(self.testapp, self.accounts, user)
        return self.testapp

    def get(self, user: Any, url: str, status: int | str = 200) -> webtest.TestResponse:
        return self.as_(user).get(url, headers=HTML, status=status)

    def post(
        self, user: Any, url: str, form: dict[str, Any], status: int | str = "*", page: str | None = None
    ):
        """POST a form as ``user`` with the CSRF token of ``page`` (default: the URL itself)."""
        app = self.as_(user)
        token = csrf_in(app.get(page or url, headers=HTML))
        return app.post(url, {**form, "csrf_token": token}, headers=HTML, status=status)


@pytest.fixture
def fw(testapp: webtest.TestApp, accounts: Any, dbsession: Session) -> Fieldwork:
    return Fieldwork(testapp, accounts, dbsession)


KE = "/console/studies/ocsea/countries/KE"
TZ = "/console/studies/ocsea/countries/TZ"


def _no_json_or_traceback(response: webtest.TestResponse) -> None:
    assert response.content_type == "text/html"
    assert "Traceback" not in response.text and not response.text.lstrip().startswith("{")


# ----------------------------------------------------------------------------------------- start


def test_the_start_page_lists_only_the_callers_countries(fw: Fieldwork) -> None:
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    page = fw.get(boss, "/console/fieldwork")
    assert (
        f"{KE}/participants" in page.text and f"{KE}/tablets" in page.text and f"{KE}/conflicts" in page.text
    )
    assert TZ not in page.text
    assert "/console/studies/ocsea/progress" in page.text
    analyst = fw.person("reader-ke", "analyst", ["KE"])
    page = fw.get(analyst, "/console/fieldwork")
    assert f"{KE}/participants" in page.text and f"{KE}/tablets" not in page.text


# ------------------------------------------------------------------------------------- dashboard


def _record(fw: Fieldwork, country: str, number: int, status: str = "complete") -> str:
    admin = fw.accounts.user(None, "admin", None)
    caller = sync.Caller(admin.id, admin.username, None, (GrantScope("admin", "*", None),))
    uuid = new_uuid()
    record = make_record(number, country=country, status=status)
    outcome = sync.push_batch(fw.session, caller, [change(uuid, 0, record)])
    assert outcome.results[0].result == "created", outcome.as_json()
    return uuid


def test_the_dashboard_shows_the_callers_countries_as_a_table_and_bars(fw: Fieldwork) -> None:
    _record(fw, "KE", 1)
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    page = fw.get(boss, "/console/studies/ocsea/progress")
    _no_json_or_traceback(page)
    table = page.html.find("table")
    cells = [td.get_text(strip=True) for td in table.find("tbody").find("tr").find_all("td")]
    # RA1 in KE: 2 planned, 0 drafts, 1 complete, 0 withdrawn, 0 open conflicts.
    assert cells == ["RA1", "2", "0", "1", "0", "0"]
    assert "Country TZ" not in page.text
    bar = page.html.find("svg", class_="bar")
    assert bar.find("rect", class_="seg-complete")["width"] == "50.0"
    assert bar.find("title").get_text() == "Country KE: 1 complete and 0 draft of 2 interviews"
    # Analysts read it too (their countries), fieldworkers do not, anonymous browsers sign in first.
    analyst = fw.person("reader-tz", "analyst", ["TZ"])
    page = fw.get(analyst, "/console/studies/ocsea/progress")
    assert "Country TZ" in page.text and "Country KE" not in page.text
    fieldworker = fw.person("walker", "fieldworker", ["KE"])
    refused = fw.get(fieldworker, "/console/studies/ocsea/progress", status=403)
    _no_json_or_traceback(refused)
    fw.testapp.reset()
    anonymous = fw.testapp.get("/console/studies/ocsea/progress", headers=HTML, status=303)
    assert "/console/sign-in" in anonymous.location
    admin = fw.accounts.user("root-admin", "admin", None)
    unknown = fw.get(admin, "/console/studies/no-such-study/progress", status=404)
    assert "Page not found" in unknown.text and "Traceback" not in unknown.text


# -------------------------------------------------------------------------------------- registry


def test_the_registry_is_searched_and_paged_within_the_country(fw: Fieldwork) -> None:
    for n in range(55):
        participants.register_interview(
            fw.session, fw.study, "KE", "RA1", [participants.NewParticipant(f"Agency {n:02d}")], "tests"
        )
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    page = fw.get(boss, f"{KE}/participants")
    ids = re.findall(r">(RA1-KE-\d+-A)</a>", page.text)
    assert ids[:2] == ["RA1-KE-01-A", "RA1-KE-02-A"] and len(ids) == 50
    nxt = page.html.find("a", rel="next")["href"]
    second = fw.testapp.get(nxt, headers=HTML)
    assert re.findall(r">(RA1-KE-\d+-A)</a>", second.text) == [f"RA1-KE-{n:02d}-A" for n in range(51, 58)]
    found = fw.testapp.get(f"{KE}/participants?agency=agency+1", headers=HTML)
    assert len(re.findall(r">(RA1-KE-\d+-A)</a>", found.text)) == 10
    bad = fw.testapp.get(f"{KE}/participants?id_prefix=%21%21", headers=HTML)
    assert bad.html.find(id="error-id_prefix") is not None
    forged = fw.testapp.get(f"{KE}/participants?after=not-an-id", headers=HTML)
    assert "start from the first page" in forged.html.find(class_="form-error").get_text()
    missing = fw.testapp.get("/console/studies/ocsea/countries/ZZ/participants", headers=HTML, status="*")
    assert missing.status_int in (403, 404) and "Traceback" not in missing.text
    # Another country's coordinator sees neither the list nor a participant of it.
    other = fw.person("boss-tz", "coordinator", ["TZ"])
    _no_json_or_traceback(fw.get(other, f"{KE}/participants", status=403))
    fw.get(other, "/console/studies/ocsea/participants/RA1-KE-01-A", status=403)
    assert "RA1-KE" not in fw.get(other, f"{TZ}/participants").text


def test_a_participant_is_edited_and_withdrawn_with_errors_beside_their_fields(fw: Fieldwork) -> None:
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    url = "/console/studies/ocsea/participants/RA1-KE-01-A"
    refused = fw.post(boss, url, {"agency": "", "position": "", "status": "planned"}, status=422)
    assert "agency is required" in refused.html.find(id="error-agency").get_text()
    done = fw.post(
        boss, url, {"agency": "Ministry of ICT", "position": "Director", "status": "withdrawn"}, 303
    )
    assert done.location.endswith(url)
    person = fw.session.scalar(select(Participant).where(Participant.pid == "RA1-KE-01-A"))
    fw.session.refresh(person)
    assert (person.position, person.status) == ("Director", "withdrawn")
    event = fw.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "participant.update").order_by(AuditEvent.id)
    ).all()[-1]
    assert event.target == "RA1-KE-01-A"
    # A withdrawn participant cannot become planned again: the registry says so beside the status.
    back = fw.post(boss, url, {"agency": "Ministry of ICT", "position": "", "status": "planned"}, status=422)
    assert "cannot become planned" in back.html.find(id="error-status").get_text()
    analyst = fw.person("reader-ke", "analyst", ["KE"])
    page = fw.get(analyst, url)
    assert page.html.find("form", action=url) is None
    fw.as_(analyst).post(url, {"agency": "x", "csrf_token": "x"}, headers=HTML, status=403)


def _upload(fw: Fieldwork, user: Any, text: str, activity: str = "RA1", status: int | str = "*"):
    app = fw.as_(user)
    token = csrf_in(app.get(f"{KE}/participants/import", headers=HTML))
    return app.post(
        f"{KE}/participants/import",
        {"csrf_token": token, "step": "check", "activity": activity},
        upload_files=[("file", "sample.csv", text.encode("utf-8"), "text/csv")],
        headers=HTML,
        status=status,
    )


def _count(fw: Fieldwork) -> int:
    return fw.session.scalar(
        select(func.count()).select_from(Participant).where(Participant.country_code == "KE")
    )


def test_an_import_is_checked_row_by_row_before_anything_is_stored(fw: Fieldwork) -> None:
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    before = _count(fw)
    bad = _upload(
        fw, boss, "agency,position,interview\nMinistry of ICT,Director,1\n,Head,1\nPolice,,\n", status=422
    )
    _no_json_or_traceback(bad)
    assert "Nothing was imported" in bad.html.find(id="error-file").get_text()
    problem = bad.html.find("tr", class_="problem-row")
    assert [cell.get_text(strip=True) for cell in problem.find_all(["th", "td"])] == [
        "3",
        "agency",
        "agency is required",
    ]
    assert _count(fw) == before
    good = _upload(
        fw, boss, "agency,position,interview\nMinistry of ICT,Director,1\nTreasury,Head,1\nPolice,,\n"
    )
    rows = [
        [c.get_text(strip=True) for c in tr.find_all(["th", "td"])]
        for tr in good.html.find("tbody").find_all("tr")
    ]
    assert rows == [
        ["2", "RA1-KE-03-A", "1", "Ministry of ICT", "Director"],
        ["3", "RA1-KE-03-B", "1", "Treasury", "Head"],
        ["4", "RA1-KE-04-A", "2", "Police", ""],
    ]
    assert _count(fw) == before, "the check stores nothing"
    confirm = good.html.find("input", attrs={"name": "step", "value": "store"}).find_parent("form")
    form = {field["name"]: field.get("value", "") for field in confirm.find_all("input")}
    stored = fw.testapp.post(f"{KE}/participants/import", form, headers=HTML, status=303)
    assert stored.location.endswith(f"{KE}/participants")
    assert _count(fw) == before + 3
    pids = set(fw.session.scalars(select(Participant.pid).where(Participant.country_code == "KE")))
    assert {"RA1-KE-03-A", "RA1-KE-03-B", "RA1-KE-04-A"} <= pids
    assert (
        fw.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "participant.import")
        )
        == 1
    )


def test_an_import_refuses_fixable_mistakes_next_to_their_cause(fw: Fieldwork) -> None:
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    no_activity = _upload(fw, boss, "agency\nPolice\n", activity="", status=422)
    assert no_activity.html.find(id="error-activity") is not None
    names = _upload(fw, boss, "name,agency\nJane,Police\n", status=422)
    assert names.html.find(id="error-file") is not None and "Jane" not in names.text
    app = fw.as_(boss)
    token = csrf_in(app.get(f"{KE}/participants/import", headers=HTML))
    not_a_sheet = app.post(
        f"{KE}/participants/import",
        {"csrf_token": token, "step": "check", "activity": "RA1"},
        upload_files=[("file", "notes.pdf", b"%PDF-1.4 not a sheet", "application/pdf")],
        headers=HTML,
        status=422,
    )
    assert not_a_sheet.html.find(id="error-file") is not None
    tampered = app.post(
        f"{KE}/participants/import",
        {"csrf_token": token, "step": "store", "activity": "RA1", "data": "not base64!", "filename": "x.csv"},
        headers=HTML,
        status=422,
    )
    assert "choose the file again" in tampered.html.find(id="error-file").get_text()
    # Someone else's country: refused before anything is read.
    other = fw.person("boss-tz", "coordinator", ["TZ"])
    fw.get(other, f"{KE}/participants/import", status=403)


# --------------------------------------------------------------------------------------- tablets


def test_a_tablet_is_enrolled_with_its_code_and_qr_code_then_re_enrolled_and_revoked(fw: Fieldwork) -> None:
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    fw.person("walker-ke", "fieldworker", ["KE", "TZ"])
    fw.person("walker-tz", "fieldworker", ["TZ"])
    page = fw.get(boss, f"{KE}/tablets")
    options = [o["value"] for o in page.html.find("select", attrs={"name": "username"}).find_all("option")]
    assert options == ["", "walker-ke"]
    enrolled = fw.post(boss, f"{KE}/tablets", {"username": "walker-ke", "label": "KE tablet 1"}, status=200)
    assert enrolled.headers["Cache-Control"] == "no-store"
    code = enrolled.html.find(id="enrolment-code").get_text()
    image = enrolled.html.find("img", id="enrolment-qr")["src"]
    png = base64.b64decode(image.removeprefix("data:image/png;base64,"))
    (text,) = read_qr_codes(png)
    assert text == f"surveykit://enrol?server=http%3A%2F%2Fsurveykit.test&code={code}"
    device = fw.session.scalar(select(Device).where(Device.label == "KE tablet 1"))
    assert device.scope == [{"study_id": fw.study.id, "countries": ["KE"]}]
    assert (
        fw.session.scalar(select(AuditEvent.target).where(AuditEvent.action == "device.enrol")) == device.id
    )
    # Enrolment errors beside their fields: someone else's field researcher, a missing label.
    refused = fw.post(boss, f"{KE}/tablets", {"username": "walker-tz", "label": "x"}, status=403)
    assert (
        "not a fieldworker in a study and country you coordinate"
        in refused.html.find(id="error-username").get_text()
    )
    missing = fw.post(boss, f"{KE}/tablets", {"username": "walker-ke", "label": ""}, status=422)
    assert missing.html.find(id="error-label") is not None
    # Re-enrolment: a new code for the same device.
    again = fw.post(boss, f"{KE}/tablets/{device.id}/reenrol", {}, status=200, page=f"{KE}/tablets")
    assert again.html.find(id="enrolment-code").get_text() != code
    # Revocation asks first, then revokes.
    confirm = fw.get(boss, f"{KE}/tablets/{device.id}/revoke")
    assert "Revoke tablet KE tablet 1?" in confirm.text
    assert fw.session.get(Device, device.id).revoked_at is None
    done = fw.post(boss, f"{KE}/tablets/{device.id}/revoke", {}, status=303)
    assert done.location.endswith(f"{KE}/tablets")
    fw.session.refresh(device)
    assert device.revoked_at is not None
    # A revoked tablet cannot be re-enrolled: said on the tablets page.
    stays = fw.post(boss, f"{KE}/tablets/{device.id}/reenrol", {}, status=409, page=f"{KE}/tablets")
    assert "stays revoked" in stays.text


def test_another_countrys_coordinator_cannot_see_or_touch_its_tablets(fw: Fieldwork) -> None:
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    fw.person("walker-ke", "fieldworker", ["KE"])
    fw.post(boss, f"{KE}/tablets", {"username": "walker-ke", "label": "KE tablet 1"}, status=200)
    device = fw.session.scalar(select(Device).where(Device.label == "KE tablet 1"))
    other = fw.person("boss-tz", "coordinator", ["TZ"])
    _no_json_or_traceback(fw.get(other, f"{KE}/tablets", status=403))
    assert "KE tablet 1" not in fw.get(other, f"{TZ}/tablets").text
    # Through its own country's address the device is still out of reach.
    refused = fw.post(other, f"{TZ}/tablets/{device.id}/revoke", {}, status=403, page=f"{TZ}/tablets")
    assert "outside your grants" in refused.text
    fw.session.refresh(device)
    assert device.revoked_at is None


# ------------------------------------------------------------------------------------- conflicts


def _conflict(fw: Fieldwork, country: str = "KE") -> tuple[str, int]:
    admin = fw.accounts.user(None, "admin", None)
    caller = sync.Caller(admin.id, admin.username, None, (GrantScope("admin", "*", None),))
    number = fw.world.register(country)
    uuid = new_uuid()
    original = make_record(number, country=country)
    sync.push_batch(fw.session, caller, [change(uuid, 0, original)])
    sync.push_batch(fw.session, caller, [change(uuid, 1, dict(original, notes="first tablet"))])
    theirs = json.loads(json.dumps(original))
    theirs.update(notes="second tablet", mode="virtual")
    theirs["answers"]["people"] = 6
    (result,) = sync.push_batch(fw.session, caller, [change(uuid, 1, theirs)]).results
    assert result.result == "conflict"
    return uuid, result.conflict_id


def test_a_conflict_is_shown_side_by_side_and_merged_field_by_field(fw: Fieldwork) -> None:
    uuid, conflict_id = _conflict(fw)
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    queue = fw.get(boss, f"{KE}/conflicts")
    assert f"/console/conflicts/{conflict_id}" in queue.text
    url = f"/console/conflicts/{conflict_id}"
    page = fw.get(boss, url)
    differing = {row["id"].removeprefix("row-") for row in page.html.select("table.comparison tr.differs")}
    assert {"notes", "mode", "answers.people"} <= differing
    notes = page.html.find("tr", id="row-notes").find_all("td")
    assert [cell.get_text(strip=True) for cell in notes[:2]] == ["first tablet", "second tablet"]
    # Merge with nothing ticked: said beside the choice, nothing stored.
    empty = fw.post(boss, url, {"resolution": "merged", "base_revision": "2"}, status=422)
    assert empty.html.find(id="error-take") is not None
    merged = fw.post(
        boss,
        url,
        {"resolution": "merged", "base_revision": "2", "take": ["notes", "answers.people"]},
        status=303,
    )
    assert merged.location.endswith(url)
    stored = fw.session.get(Interview, uuid)
    fw.session.refresh(stored)
    assert stored.revision == 3
    assert (stored.record["notes"], stored.record["answers"]["people"], stored.record["mode"]) == (
        "second tablet",
        6,
        "in_person",
    )
    revision = fw.session.scalar(
        select(InterviewRevision).where(
            InterviewRevision.interview_uuid == uuid, InterviewRevision.revision == 3
        )
    )
    assert revision.record == stored.record
    after = fw.get(boss, url)
    history = [
        tr.find("th").get_text(strip=True)
        for tr in after.html.find_all("table")[-1].find("tbody").find_all("tr")
    ]
    assert history == ["revision 1", "revision 2", f"conflict {conflict_id}", "revision 3"]
    # Resolving it again (a second tab): the page says it is resolved already, nothing changes.
    again = fw.post(boss, url, {"resolution": "keep_current"}, status=409)
    assert "was resolved (merged) by boss-ke" in again.text
    fw.session.refresh(stored)
    assert stored.revision == 3


def test_a_stale_or_invalid_resolution_is_explained_and_stores_nothing(fw: Fieldwork) -> None:
    uuid, conflict_id = _conflict(fw)
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    url = f"/console/conflicts/{conflict_id}"
    stale = fw.post(boss, url, {"resolution": "take_incoming", "base_revision": "1"}, status=409)
    assert "changed while you were looking at it" in stale.text
    # The conflict's mode "virtual" with the current answers: still valid; but a take of an answer the
    # instrument refuses is shown beside that field.
    fw.session.execute(
        InterviewRevision.__table__.update()
        .where(InterviewRevision.id == conflict_id)
        .values(record={**fw.session.get(InterviewRevision, conflict_id).record, "answers": {"people": 99}})
    )
    fw.session.expire_all()
    invalid = fw.post(
        boss, url, {"resolution": "merged", "base_revision": "2", "take": ["answers.people"]}, status=422
    )
    assert "Nothing was stored" in invalid.text
    assert invalid.html.find("tr", id="row-answers.people").find(class_="error") is not None
    assert fw.session.get(Interview, uuid).revision == 2


def test_another_countrys_coordinator_sees_no_conflict_of_it(fw: Fieldwork) -> None:
    _uuid, conflict_id = _conflict(fw)
    other = fw.person("boss-tz", "coordinator", ["TZ"])
    fw.get(other, f"{KE}/conflicts", status=403)
    _no_json_or_traceback(fw.get(other, f"/console/conflicts/{conflict_id}", status=403))
    assert f"/console/conflicts/{conflict_id}" not in fw.get(other, f"{TZ}/conflicts").text
    analyst = fw.person("reader-ke", "analyst", ["KE"])
    fw.get(analyst, f"{KE}/conflicts", status=403)


def test_a_field_conflict_is_resolved_from_its_page(fw: Fieldwork) -> None:
    from test_sync_support import make_field_conflict

    admin = fw.accounts.user(None, "admin", None)
    conflict_id = make_field_conflict(fw.session, admin.id)
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    url = f"/console/field-conflicts/{conflict_id}"
    page = fw.get(boss, url)
    assert "Ministry of ICT and Innovation" in page.text
    nothing = fw.post(boss, url, {"resolution": ""}, status=422)
    assert nothing.html.find(id="error-resolution") is not None
    done = fw.post(boss, url, {"resolution": "take_incoming"}, status=303)
    assert done.location.endswith(url)
    conflict = fw.session.get(FieldConflict, conflict_id)
    fw.session.refresh(conflict)
    assert conflict.resolution == "take_incoming"
    person = fw.session.get(Participant, conflict.participant_id)
    fw.session.refresh(person)
    assert person.agency == "Ministry of ICT"


def test_a_form_without_its_csrf_token_is_refused(fw: Fieldwork) -> None:
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    fw.person("walker-ke", "fieldworker", ["KE"])
    app = fw.as_(boss)
    refused = app.post(f"{KE}/tablets", {"username": "walker-ke", "label": "x"}, headers=HTML, status=400)
    _no_json_or_traceback(refused)
    assert fw.session.scalar(select(func.count()).select_from(Device)) == 0


def test_the_guide_shows_screenshots_the_browser_tests_take() -> None:
    root = Path(__file__).parent.parent
    guide = (root / "docs" / "console-coordinators.md").read_text(encoding="utf-8")
    shown = re.findall(r"\]\(img/(console-[a-z-]+)\.png\)", guide)
    taken = set(
        re.findall(
            r'screenshot\(page, "([a-z-]+)"',
            (Path(__file__).parent / "browser" / "test_console_coordinators.py").read_text(),
        )
    )
    assert shown and set(shown) <= taken
    for name in shown:
        assert (root / "docs" / "img" / f"{name}.png").stat().st_size > 1000, name


def test_a_field_conflict_resolved_on_a_stale_page_changes_nothing(fw: Fieldwork) -> None:
    from test_sync_support import make_field_conflict

    admin = fw.accounts.user(None, "admin", None)
    conflict_id = make_field_conflict(fw.session, admin.id)
    boss = fw.person("boss-ke", "coordinator", ["KE"])
    url = f"/console/field-conflicts/{conflict_id}"
    app = fw.as_(boss)
    page = app.get(url, headers=HTML)
    conflict = fw.session.get(FieldConflict, conflict_id)
    person = fw.session.get(Participant, conflict.participant_id)
    participants.update_participant(fw.session, person, {"agency": "Ministry of Communications"})
    fw.session.flush()
    form = page.html.find("form", action=url)
    fields = {field["name"]: field.get("value", "") for field in form.find_all("input", type="hidden")}
    stale = app.post(url, {**fields, "resolution": "take_incoming"}, headers=HTML, status=409)
    assert "changed while you were looking at it" in stale.text
    assert "Ministry of Communications" in stale.text
    fw.session.refresh(conflict)
    fw.session.refresh(person)
    assert conflict.resolved_at is None and person.agency == "Ministry of Communications"
