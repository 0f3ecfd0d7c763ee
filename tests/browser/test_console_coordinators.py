"""The coordinators' console in a real browser: import a planned sample (a bad row first), enrol a
tablet and read its QR code back from the page, merge a conflict field by field, the progress
dashboard, and a coordinator of one country kept out of another's pages. Each page is checked with
axe-core, and the screenshots illustrate docs/console-coordinators.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from qr_support import read_qr_codes
from sqlalchemy import func, select
from test_sync_support import SyncWorld, change, make_record, new_uuid

from surveykit.accounts.identity import GrantScope
from surveykit.accounts.models import Device
from surveykit.participants import services as participants
from surveykit.participants.models import Participant
from surveykit.sync import services as sync
from surveykit.sync.models import Interview, InterviewRevision

PASSWORD = "coordinator password 1"
KE = "/console/studies/ocsea/countries/KE"
TZ = "/console/studies/ocsea/countries/TZ"


@pytest.fixture(scope="module")
def site(live_server: Any) -> dict[str, Any]:
    """Study ocsea (KE, TZ, KH) with RA1 and the sync instrument; a KE coordinator, a TZ one, a KE
    field researcher, an admin of the study; interviews planned in KE, TZ and KH, some synced; one open
    conflict in KE."""
    with live_server.accounts() as accounts:
        world = SyncWorld(accounts, accounts.session)
        for username, role, countries in (
            ("amina", "coordinator", ["KE"]),
            ("baraka", "coordinator", ["TZ"]),
            ("wanjiru", "fieldworker", ["KE"]),
            ("dora", "admin", None),
        ):
            accounts.user(username, role, "ocsea", countries, password=PASSWORD)
        admin = accounts.user("site-admin", "admin", None)
        for agency in ("Ministry of ICT", "Police Cyber Crime Unit", "Communications Authority"):
            participants.register_interview(
                accounts.session, world.study, "KE", "RA1", [participants.NewParticipant(agency)], "tests"
            )
        for country, count in (("TZ", 3), ("KH", 4)):
            for _ in range(count):
                participants.register_interview(
                    accounts.session,
                    world.study,
                    country,
                    "RA1",
                    [participants.NewParticipant("Ministry")],
                    "t",
                )
        caller = sync.Caller(admin.id, admin.username, None, (GrantScope("admin", "*", None),))
        sync.push_batch(accounts.session, caller, [change(new_uuid(), 0, make_record(1))])
        sync.push_batch(
            accounts.session, caller, [change(new_uuid(), 0, make_record(2, status="draft", ended_at=None))]
        )
        sync.push_batch(accounts.session, caller, [change(new_uuid(), 0, make_record(1, country="TZ"))])
        number = world.register("KE")
        uuid = new_uuid()
        original = make_record(number)
        sync.push_batch(accounts.session, caller, [change(uuid, 0, original)])
        sync.push_batch(
            accounts.session, caller, [change(uuid, 1, dict(original, notes="Quiet office, first visit."))]
        )
        theirs = json.loads(json.dumps(original))
        theirs.update(notes="Second official joined after ten minutes.", mode="virtual")
        theirs["answers"]["people"] = 6
        (result,) = sync.push_batch(accounts.session, caller, [change(uuid, 1, theirs)]).results
        assert result.result == "conflict"
    return {"conflict_id": result.conflict_id, "uuid": uuid}


def sign_in(page: Any, live_server: Any, username: str) -> None:
    page.goto(f"{live_server.url}/console/sign-in")
    page.fill("#field-username", username)
    page.fill("#field-password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/$"))


def _participants(live_server: Any, country: str = "KE") -> int:
    with live_server.session() as session:
        return session.scalar(
            select(func.count()).select_from(Participant).where(Participant.country_code == country)
        )


def test_import_a_planned_sample_with_a_bad_row_then_fixed(
    live_server: Any, site: dict[str, Any], page: Any, tmp_path: Path, assert_accessible: Any, screenshot: Any
) -> None:
    sign_in(page, live_server, "amina")
    page.goto(f"{live_server.url}{KE}/participants")
    assert_accessible(page)
    screenshot(page, "console-registry", full_page=True)
    page.click("text=Import the planned sample from a file")
    before = _participants(live_server)
    bad = tmp_path / "ke-sample.csv"
    bad.write_text(
        "agency,position,interview\n"
        "National Council for Children,Programme officer,1\n"
        ",Deputy director,1\n"
        "Office of the Data Protection Commissioner,,\n",
        encoding="utf-8",
    )
    page.select_option("#field-activity", "RA1")
    page.set_input_files("#field-file", str(bad))
    page.click("text=Check the file")
    assert "Nothing was imported" in page.inner_text("#error-file")
    row = page.locator("tr.problem-row")
    expect(row).to_have_count(1)
    assert [cell.strip() for cell in row.locator("th, td").all_inner_texts()] == [
        "3",
        "agency",
        "agency is required",
    ]
    assert _participants(live_server) == before, "a refused file stores nothing"
    assert_accessible(page)
    screenshot(page, "console-import-refused", full_page=True)

    good = tmp_path / "ke-sample-fixed.csv"
    good.write_text(
        bad.read_text(encoding="utf-8").replace("\n,Deputy", "\nNational Council for Children,Deputy")
    )
    page.select_option("#field-activity", "RA1")
    page.set_input_files("#field-file", str(good))
    page.click("text=Check the file")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3)
    assert _participants(live_server) == before, "the check stores nothing"
    first = [cell.strip() for cell in rows.nth(0).locator("th, td").all_inner_texts()]
    assert first[0] == "2" and first[1] == "RA1-KE-05-A" and first[3] == "National Council for Children"
    assert_accessible(page)
    screenshot(page, "console-import-checked", full_page=True)
    page.click("text=Store these 3 participants")
    page.wait_for_url(re.compile(r".*/participants$"))
    assert "Imported 3 participants in 2 interviews" in page.inner_text("main")
    assert _participants(live_server) == before + 3
    with live_server.session() as session:
        stored = dict(
            session.execute(
                select(Participant.pid, Participant.position).where(Participant.country_code == "KE")
            ).all()
        )
    assert stored["RA1-KE-05-B"] == "Deputy director" and stored["RA1-KE-06-A"] is None


def test_enrol_a_tablet_and_read_its_qr_code_from_the_page(
    live_server: Any, site: dict[str, Any], page: Any, assert_accessible: Any, screenshot: Any
) -> None:
    sign_in(page, live_server, "amina")
    page.goto(f"{live_server.url}{KE}/tablets")
    assert_accessible(page)
    page.fill("#field-label", "KE tablet 3")
    page.click("text=Enrol and show the code")  # no field researcher chosen: said beside the field
    assert "Choose the field researcher" in page.inner_text("#error-username")
    page.select_option("#field-username", "wanjiru")
    page.fill("#field-label", "KE tablet 3")
    page.click("text=Enrol and show the code")
    code = page.inner_text("#enrolment-code").strip()
    assert re.fullmatch(r"[A-Z0-9]{5}-[A-Z0-9]{5}", code)
    png = page.locator("#enrolment-qr").screenshot()
    (payload,) = read_qr_codes(png)
    host = live_server.url.replace(":", "%3A").replace("/", "%2F")
    assert payload == f"surveykit://enrol?server={host}&code={code}"
    assert_accessible(page)
    screenshot(page, "console-tablet-enrolled", full_page=True)
    # The code read back from the page activates the tablet.
    response = page.request.post(f"{live_server.url}/api/v1/devices/activate", data={"code": code})
    assert response.status == 200, response.text()
    with live_server.session() as session:
        device = session.scalar(select(Device).where(Device.label == "KE tablet 3"))
        assert device.activated_at is not None
        device_id = device.id
    page.goto(f"{live_server.url}{KE}/tablets")
    screenshot(page, "console-tablets", full_page=True)
    page.goto(f"{live_server.url}{KE}/tablets/{device_id}/revoke")
    assert_accessible(page)
    page.click("text=Revoke this tablet")
    assert "is revoked" in page.inner_text("main")
    with live_server.session() as session:
        assert session.get(Device, device_id).revoked_at is not None


def test_resolve_a_conflict_by_merging_two_fields(
    live_server: Any, site: dict[str, Any], page: Any, assert_accessible: Any, screenshot: Any
) -> None:
    sign_in(page, live_server, "amina")
    page.goto(f"{live_server.url}{KE}/conflicts")
    assert_accessible(page)
    page.click(f"text=Conflict {site['conflict_id']}")
    expect(page.locator("table.comparison tr.differs")).to_have_count(3)
    assert_accessible(page)
    screenshot(page, "console-conflict", full_page=True)
    page.check("tr[id='row-notes'] input[name=take]")
    page.check("tr[id='row-answers.people'] input[name=take]")
    page.check("input[name=resolution][value=merged]")
    page.click("text=Resolve the conflict")
    assert "the record is now at revision 3" in page.inner_text("main")
    with live_server.session() as session:
        revision = session.scalar(
            select(InterviewRevision).where(
                InterviewRevision.interview_uuid == site["uuid"], InterviewRevision.revision == 3
            )
        )
        assert revision.record["notes"] == "Second official joined after ten minutes."
        assert revision.record["answers"]["people"] == 6
        assert revision.record["mode"] == "in_person"
        assert session.get(Interview, site["uuid"]).revision == 3
        conflict = session.get(InterviewRevision, site["conflict_id"])
        assert (conflict.resolution, conflict.resolved_by, conflict.resolution_revision) == (
            "merged",
            "amina",
            3,
        )
    history = page.locator("table").last.locator("tbody tr th").all_inner_texts()
    assert [text.strip() for text in history] == [
        "revision 1",
        "revision 2",
        f"conflict {site['conflict_id']}",
        "revision 3",
    ]
    screenshot(page, "console-conflict-resolved", full_page=True)


def test_the_progress_dashboard(
    live_server: Any, site: dict[str, Any], page: Any, assert_accessible: Any, screenshot: Any
) -> None:
    sign_in(page, live_server, "amina")
    page.click("nav >> text=Fieldwork")
    assert_accessible(page)
    page.click("text=Progress dashboard")
    expect(page.locator("svg.bar")).to_have_count(1)  # KE only: the coordinator's country
    assert "Country TZ" not in page.inner_text("main")
    assert_accessible(page)
    # An admin of the study sees every country.
    page.click("text=Sign out")
    sign_in(page, live_server, "dora")
    page.goto(f"{live_server.url}/console/studies/ocsea/progress")
    expect(page.locator("svg.bar")).to_have_count(3)
    assert_accessible(page)
    screenshot(page, "console-progress", full_page=True)


def test_a_coordinator_of_one_country_cannot_see_anothers_pages(
    live_server: Any, site: dict[str, Any], page: Any, assert_accessible: Any
) -> None:
    sign_in(page, live_server, "baraka")
    page.goto(f"{live_server.url}/console/fieldwork")
    assert f"{TZ}/participants" in page.content() and KE not in page.content()
    for path in (
        f"{KE}/participants",
        f"{KE}/tablets",
        f"{KE}/conflicts",
        f"/console/conflicts/{site['conflict_id']}",
        "/console/studies/ocsea/participants/RA1-KE-01-A",
    ):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 403, path
        assert "Not allowed" in page.inner_text("h1")
        assert "RA1-KE" not in page.inner_text("main") and "Ministry of ICT" not in page.inner_text("main")
    assert_accessible(page)
    page.goto(f"{live_server.url}{TZ}/participants")
    assert "RA1-TZ-01-A" in page.inner_text("main") and "RA1-KE" not in page.inner_text("main")
    assert _participants(live_server, "TZ") == 3
