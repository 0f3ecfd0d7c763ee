"""Issue 11 item 2: no tablet can use up a country's interview numbers.

Numbers end at 99,999 for allocation, ID parsing and sync alike; a device holds a bounded number of
unused numbers; reservations are audited; coordinators release a device's numbers (API and CLI), and
sync then refuses a new record numbered from a released block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import webtest
from click.testing import CliRunner
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session
from support_db import Accounts
from test_sync_support import SyncWorld, change, make_record, new_uuid, post_json

from surveykit.accounts import services as accounts_services
from surveykit.audit.models import AuditEvent
from surveykit.cli import cli
from surveykit.config import ConfigurationError, load_settings
from surveykit.db import utcnow
from surveykit.participants import ids
from surveykit.participants.models import InterviewNumberCounter, NumberBlock

BLOCKS = "/api/v1/blocks"


def country_blocks(study: str = "ocsea", country: str = "KE") -> str:
    return f"/api/v1/studies/{study}/countries/{country}/blocks"


def events(session: Session, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(
        session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def reserve(testapp: webtest.TestApp, headers: dict[str, str], size: int, country: str = "KE") -> Any:
    body = {"study": "ocsea", "country": country, "activity": "RA1", "size": size}
    return post_json(testapp, BLOCKS, body, headers)


def assert_error(response: webtest.TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_int == status, response.text
    body = response.json
    assert set(body) == {"status", "code", "message", "details"}
    assert (body["status"], body["code"]) == (status, code)
    return body


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


@pytest.fixture
def cap(app: Any) -> Iterator[Callable[[int], None]]:
    settings = app.registry.settings
    original = settings["surveykit.max_unused_numbers"]
    yield lambda value: settings.__setitem__("surveykit.max_unused_numbers", value)
    settings["surveykit.max_unused_numbers"] = original


def _counter_at(session: Session, study_id: int, country: str, next_number: int) -> None:
    ids.allocate_interview_numbers(session, study_id, "RA1", country)  # the counter row exists
    session.execute(
        update(InterviewNumberCounter)
        .where(InterviewNumberCounter.study_id == study_id, InterviewNumberCounter.country_code == country)
        .values(next_number=next_number)
    )
    session.flush()


def _next_number(session: Session, study_id: int, country: str) -> int:
    session.expire_all()
    return session.scalar(
        select(InterviewNumberCounter.next_number).where(
            InterviewNumberCounter.study_id == study_id, InterviewNumberCounter.country_code == country
        )
    )


# ------------------------------------------------------------------------------ the largest number


def test_blocks_and_registrations_stop_at_the_largest_number(
    testapp: webtest.TestApp, world: SyncWorld, dbsession: Session
) -> None:
    tz_tablet = world.tablet(["TZ"])
    ke_tablet = world.tablet(["KE"])
    _counter_at(dbsession, world.study.id, "KE", ids.MAX_INTERVIEW_NUMBER - 4)

    body = assert_error(reserve(testapp, ke_tablet.headers, 10), 409, "interview_numbers_exhausted")
    assert "5 interview number(s) left" in body["message"]
    assert body["details"] == [{"location": "body", "path": "size", "message": body["message"]}]
    assert _next_number(dbsession, world.study.id, "KE") == ids.MAX_INTERVIEW_NUMBER - 4  # nothing taken

    last = reserve(testapp, ke_tablet.headers, 5)
    assert last.status_int == 201, last.text
    assert (last.json["first_number"], last.json["last_number"]) == (99_995, 99_999)
    assert last.json["first_id"] == "RA1-KE-99995-A"
    assert_error(reserve(testapp, ke_tablet.headers, 1), 409, "interview_numbers_exhausted")

    # The registry's own allocation stops at the same number: one planned interview, or an import.
    coordinator = world.staff("coordinator", ["KE"])
    people = "/api/v1/studies/ocsea/countries/KE/participants"
    planned = {"activity": "RA1", "participants": [{"agency": "Ministry of ICT"}]}
    assert_error(post_json(testapp, people, planned, coordinator), 409, "interview_numbers_exhausted")
    rows = {"rows": [{"agency": "Ministry of ICT"}]}
    imported = post_json(testapp, f"{people}/import?activity=RA1", rows, coordinator)
    assert_error(imported, 409, "interview_numbers_exhausted")
    assert _next_number(dbsession, world.study.id, "KE") == ids.MAX_INTERVIEW_NUMBER + 1

    # Other countries are untouched, and both refusals of the tablet are in the audit log.
    assert reserve(testapp, tz_tablet.headers, 1, "TZ").status_int == 201
    refused = [e for e in events(dbsession, "block.reserve") if e.outcome == "refused"]
    assert [(e.target, e.details["reason"], e.device_id) for e in refused] == [
        ("ocsea/KE/RA1", "numbers_exhausted", ke_tablet.device.id),
        ("ocsea/KE/RA1", "numbers_exhausted", ke_tablet.device.id),
    ]


def test_ids_and_sync_use_the_same_largest_number(testapp: webtest.TestApp, world: SyncWorld) -> None:
    assert ids.parse_pid("RA1-KE-99999-A").interview_number == 99_999
    for text in ("RA1-KE-100000-A", "RA1-KE-999999999-A"):
        with pytest.raises(ids.InvalidParticipantId, match="end at 99999"):
            ids.parse_pid(text)
    admin = world.accounts.headers("admin")
    response = testapp.get("/api/v1/studies/ocsea/participants/RA1-KE-100000-A", headers=admin, status=404)
    assert response.json["code"] == "participant_not_found"
    tablet = world.tablet()
    record = make_record(ids.MAX_INTERVIEW_NUMBER + 1)
    result = tablet.push(testapp, [change(new_uuid(), 0, record)]).json["results"][0]
    assert result["result"] == "rejected"
    assert result["errors"][0]["path"] == "changes[0].record.interview_number"
    assert "from 1 to 99999" in result["errors"][0]["message"]
    with pytest.raises(ids.NumbersExhausted):
        ids.allocate_interview_numbers(
            world.session, world.study.id, "RA1", "KH", ids.MAX_INTERVIEW_NUMBER + 1
        )


# ------------------------------------------------------------------------------------ the cap


def test_a_device_holds_at_most_the_configured_unused_numbers(
    testapp: webtest.TestApp, world: SyncWorld, dbsession: Session, cap: Callable[[int], None]
) -> None:
    """The reproduction: before, one tablet reserved 1,001 blocks of 100 numbers in a row."""
    cap(25)
    tablet = world.tablet(["KE"])  # holds a block of 10 already
    assert reserve(testapp, tablet.headers, 10).status_int == 201
    body = assert_error(reserve(testapp, tablet.headers, 10), 409, "unused_numbers_limit")
    assert "already holds 20 unused interview number(s)" in body["message"]
    assert "limit of 25" in body["message"]
    assert body["details"][0]["path"] == "size"

    # Recording an interview uses a number: one more fits again.
    number = tablet.mint()
    assert tablet.push(testapp, [change(new_uuid(), 0, make_record(number))]).json["results"][0][
        "result"
    ] == ("created")
    assert reserve(testapp, tablet.headers, 6).status_int == 201
    assert_error(reserve(testapp, tablet.headers, 1), 409, "unused_numbers_limit")
    # The cap is per device: another tablet of the same fieldworker's country still reserves.
    assert reserve(testapp, world.tablet(["KE"]).headers, 10).status_int == 201

    # A coordinator releases the tablet's numbers; they stop counting, and it may reserve again.
    coordinator = world.staff("coordinator", ["KE"])
    released = post_json(
        testapp, f"{country_blocks()}/release", {"device_id": tablet.device.id}, coordinator, 200
    ).json
    assert released["released_numbers"] == 25
    assert reserve(testapp, tablet.headers, 25).status_int == 201

    outcomes = [(e.outcome, e.details.get("reason")) for e in events(dbsession, "block.reserve")]
    assert outcomes.count(("refused", "unused_limit")) == 2
    assert outcomes.count(("success", None)) == 4


def test_the_cap_is_a_setting() -> None:
    assert load_settings({}, {})["surveykit.max_unused_numbers"] == 200
    assert load_settings({}, {"SURVEYKIT_MAX_UNUSED_NUMBERS": "50"})["surveykit.max_unused_numbers"] == 50
    assert load_settings({"surveykit.max_unused_numbers": "30"}, {})["surveykit.max_unused_numbers"] == 30
    for bad in ("0", "-1", "many"):
        with pytest.raises(ConfigurationError, match="SURVEYKIT_MAX_UNUSED_NUMBERS"):
            load_settings({}, {"SURVEYKIT_MAX_UNUSED_NUMBERS": bad})


def test_a_reservation_is_audited_with_its_numbers_and_device(
    testapp: webtest.TestApp, world: SyncWorld, dbsession: Session
) -> None:
    tablet = world.tablet(["KE"])
    block = reserve(testapp, tablet.headers, 3).json
    (event,) = events(dbsession, "block.reserve")
    assert (event.outcome, event.target, event.device_id, event.actor) == (
        "success",
        "ocsea/KE/RA1",
        tablet.device.id,
        tablet.user.username,
    )
    assert event.details == {
        "block": block["id"],
        "first_number": block["first_number"],
        "last_number": block["last_number"],
    }


# -------------------------------------------------------------------------------- releasing


def test_released_numbers_are_refused_by_sync_unless_used_before(
    testapp: webtest.TestApp, world: SyncWorld, dbsession: Session
) -> None:
    tablet = world.tablet(["KE", "TZ"])
    first, second = tablet.mint(), tablet.mint()
    used = new_uuid()
    assert (
        tablet.push(testapp, [change(used, 0, make_record(first))]).json["results"][0]["result"] == "created"
    )
    tz_number = tablet.mint("TZ")

    coordinator = world.staff("coordinator", ["KE"])
    listed = testapp.get(country_blocks(), {"device_id": tablet.device.id}, headers=coordinator).json[
        "blocks"
    ]
    assert [(b["device_id"], b["used"], b["unused"], b["released_at"]) for b in listed] == [
        (tablet.device.id, 1, 9, None)
    ]

    # Another country's coordinator cannot release Kenya's blocks; an unknown device is a 404.
    other = world.staff("coordinator", ["TZ"])
    forbidden = post_json(testapp, f"{country_blocks()}/release", {"device_id": tablet.device.id}, other)
    assert_error(forbidden, 403, "forbidden")
    missing = post_json(testapp, f"{country_blocks()}/release", {"device_id": "no-such-device"}, coordinator)
    assert_error(missing, 404, "device_not_found")

    released = post_json(
        testapp, f"{country_blocks()}/release", {"device_id": tablet.device.id}, coordinator, 200
    ).json
    assert released["device_id"] == tablet.device.id and released["released_numbers"] == 9
    assert [(b["used"], b["unused"]) for b in released["blocks"]] == [(1, 0)]
    assert released["blocks"][0]["released_at"] is not None
    (event,) = events(dbsession, "block.release")
    assert (event.outcome, event.target, event.details["device"], event.details["released_numbers"]) == (
        "success",
        f"ocsea/KE/{tablet.device.id}",
        tablet.device.id,
        9,
    )
    assert event.actor not in (None, tablet.user.username)

    # A record minted from the released block after the release is refused, with a reason...
    refused = tablet.push(testapp, [change(new_uuid(), 0, make_record(second))]).json["results"][0]
    assert (refused["result"], refused["code"]) == ("rejected", "interview_number_refused")
    assert "released" in refused["message"]
    assert [e.target for e in events(dbsession, "sync.number_refused")] == [f"RA1-KE-{second:02d}"]
    # ... while the record made from it before the release keeps syncing its edits,
    edited = make_record(first, notes="edited after the release")
    assert tablet.push(testapp, [change(used, 1, edited)]).json["results"][0]["result"] == "updated"
    # and the device's blocks elsewhere (TZ, not released) still mint.
    tz_result = tablet.push(testapp, [change(new_uuid(), 0, make_record(tz_number, "TZ"))]).json["results"][0]
    assert tz_result["result"] == "created"
    # The tablet sees its block released; releasing again changes nothing.
    mine = testapp.get(BLOCKS, {"country": "KE"}, headers=tablet.headers).json["blocks"]
    assert [b["released_at"] is not None for b in mine] == [True]
    again = post_json(
        testapp, f"{country_blocks()}/release", {"device_id": tablet.device.id}, coordinator, 200
    ).json
    assert again == {"device_id": tablet.device.id, "released_numbers": 0, "blocks": []}
    assert len(events(dbsession, "block.release")) == 1


def test_a_device_with_many_blocks_is_checked_against_the_block_of_each_number(
    testapp: webtest.TestApp, world: SyncWorld, dbsession: Session
) -> None:
    """Sync reads only the device's blocks around a batch's numbers: every number is still checked
    against its own block, at the blocks' first and last numbers too, released or not."""
    tablet = world.tablet(["KE", "TZ"])
    blocks = [
        ids.reserve_block(dbsession, tablet.device.id, world.study.id, "RA1", "KE", 3) for _ in range(12)
    ]
    tz_block = ids.reserve_block(dbsession, tablet.device.id, world.study.id, "RA1", "TZ", 3)
    released = blocks[5]
    dbsession.execute(update(NumberBlock).where(NumberBlock.id == released.id).values(released_at=utcnow()))
    dbsession.flush()
    lowest, highest = blocks[0], blocks[-1]
    beyond = highest.last_number + 1  # no block of this device holds it
    numbers = [
        (lowest.first_number, "KE", "created"),
        (highest.last_number, "KE", "created"),
        (released.first_number, "KE", "rejected"),
        (blocks[7].last_number, "KE", "created"),
        (beyond, "KE", "rejected"),
        (tz_block.first_number, "TZ", "created"),
    ]
    answer = tablet.push(
        testapp, [change(new_uuid(), 0, make_record(number, country)) for number, country, _ in numbers]
    ).json["results"]
    assert [result["result"] for result in answer] == [expected for _, _, expected in numbers]
    assert "released" in answer[2]["message"]
    assert "neither in a number block" in answer[4]["message"]
    # A batch of one number, alone in the middle of the device's blocks, is checked the same way.
    single = tablet.push(testapp, [change(new_uuid(), 0, make_record(released.last_number))]).json
    assert single["results"][0]["result"] == "rejected"
    for number in (blocks[6].first_number, blocks[8].last_number):
        alone = tablet.push(testapp, [change(new_uuid(), 0, make_record(number))]).json
        assert alone["results"][0]["result"] == "created", alone


def test_a_release_by_activity_leaves_the_other_activities_alone(
    testapp: webtest.TestApp, world: SyncWorld, dbsession: Session
) -> None:
    from surveykit.studies import services as studies

    studies.add_activity(dbsession, world.study, "RA2", "Frontline")
    tablet = world.tablet(["KE"])
    ids.reserve_block(dbsession, tablet.device.id, world.study.id, "RA2", "KE", 4)
    dbsession.flush()
    coordinator = world.staff("coordinator", ["KE"])
    body = {"device_id": tablet.device.id, "activity": "RA2"}
    released = post_json(testapp, f"{country_blocks()}/release", body, coordinator, 200).json
    assert released["released_numbers"] == 4
    blocks = testapp.get(country_blocks(), headers=coordinator).json["blocks"]
    assert [(b["activity"], b["released_at"] is None) for b in blocks] == [("RA1", True), ("RA2", False)]
    unknown = post_json(testapp, f"{country_blocks()}/release", {**body, "activity": "RA7"}, coordinator)
    assert_error(unknown, 404, "activity_not_found")


# -------------------------------------------------------------------------------------- CLI


def test_the_cli_lists_and_releases_a_devices_blocks(
    fresh_database: Callable[[], str], tmp_path: Path, settings: dict[str, Any]
) -> None:
    url = fresh_database()
    runner = CliRunner()
    env = {"SURVEYKIT_DATA_DIR": str(tmp_path / "data"), "SURVEYKIT_ENV": "test"}

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["--database-url", url, *args], env=env)

    assert run("db", "upgrade").exit_code == 0
    engine = create_engine(url)
    with Session(engine) as session:
        accounts = Accounts(session, settings)
        study = accounts.study("ocsea", ("KE", "TZ"))
        from surveykit.studies import services as studies

        studies.add_activity(session, study, "RA1", "Duty bearers")
        owner = accounts.user("cli-tablet-owner", "fieldworker", "ocsea", ["KE"])
        device, _ = accounts_services.enrol_device(session, owner, "tablet", "tests", accounts.policy)
        session.flush()
        ids.reserve_block(session, device.id, study.id, "RA1", "KE", 10)
        ids.reserve_block(session, device.id, study.id, "RA1", "TZ", 5)
        device_id = device.id
        session.commit()

    listed = run("blocks", "list", "--study", "ocsea", "--country", "KE")
    assert listed.exit_code == 0, listed.output
    assert device_id in listed.output and "RA1-KE-01 to 10" in listed.output

    released = run("blocks", "release", device_id, "--study", "ocsea", "--country", "KE")
    assert released.exit_code == 0, released.output
    assert "10 unused number(s) will stay gaps" in released.output
    again = run("blocks", "release", device_id, "--study", "ocsea", "--country", "KE")
    assert again.exit_code == 0 and "nothing to release" in again.output
    unknown = run("blocks", "release", "nope", "--study", "ocsea", "--country", "KE")
    assert unknown.exit_code == 1 and "holds no number blocks" in unknown.output
    assert "Traceback" not in unknown.output

    with Session(engine) as session:
        blocks = session.scalars(select(NumberBlock).order_by(NumberBlock.id)).all()
        assert [(b.country_code, b.released_at is not None) for b in blocks] == [("KE", True), ("TZ", False)]
        assert blocks[0].released_by.startswith("cli:")
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "block.release")).all()
        assert event.target == f"ocsea/KE/{device_id}"
        assert event.details["released_numbers"] == 10 and event.actor.startswith("cli:")
    engine.dispose()


def test_many_small_blocks_are_counted_in_chunks(world: SyncWorld, dbsession: Session) -> None:
    """1,200 one-number blocks: more ranges than SQLite nests in one expression."""
    from surveykit.participants import services

    tablet = world.tablet(["KE"], username="many-blocks")  # one block of 10
    for _ in range(1_200):
        ids.reserve_block(dbsession, tablet.device.id, world.study.id, "RA1", "KE", 1)
    dbsession.flush()
    rows = services.country_blocks(dbsession, world.study, "KE", tablet.device.id)
    assert sum(unused for _block, _used, unused in rows) == 1_210
    with pytest.raises(services.UnusedNumbersLimit, match="already holds 1210"):
        services.reserve_block(dbsession, tablet.device.id, world.study, "KE", "RA1", 100, 1_300)
    block = services.reserve_block(dbsession, tablet.device.id, world.study, "KE", "RA1", 90, 1_300)
    assert block.last_number - block.first_number == 89
