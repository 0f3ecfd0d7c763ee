"""The fieldwork progress summary: what the dashboard shows, through the service and the API."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session
from test_sync_support import SyncWorld, change, make_conflict, make_field_conflict, make_record, new_uuid

from surveykit.accounts import services as account_services
from surveykit.participants import ids
from surveykit.participants.models import Participant
from surveykit.studies import services as studies
from surveykit.studies.progress import study_progress


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


def _country(progress: Any, code: str) -> Any:
    (country,) = [c for c in progress.countries if c.code == code]
    return country


def _planned(world: SyncWorld, country: str, letters: str = "A", status: str = "planned") -> int:
    number = world.register(country, letters)
    if status != "planned":
        for person in world.session.query(Participant).filter_by(
            country_code=country, interview_number=number
        ):
            person.status = status
        world.session.flush()
    return number


def test_progress_counts_registry_records_conflicts_and_tablets(testapp, dbsession, world) -> None:
    # KE: three planned interviews (one of two officials, one withdrawn), a tablet that syncs one
    # complete record and one draft, an open record conflict and an open field conflict.
    _planned(world, "KE", "AB")
    _planned(world, "KE")
    _planned(world, "KE", "A", status="withdrawn")
    tablet = world.tablet(["KE"])
    complete = make_record(tablet.mint("KE"), country="KE")
    draft = make_record(tablet.mint("KE"), country="KE", status="draft")
    tablet.push(testapp, [change(new_uuid(), 0, complete), change(new_uuid(), 0, draft)])
    admin_id = world.accounts.user("progress-admin", "admin", None).id
    make_conflict(dbsession, admin_id, "ocsea", "KE")
    make_field_conflict(dbsession, admin_id, "ocsea", "KE")
    # TZ: one planned interview, a revoked tablet.
    _planned(world, "TZ")
    gone = world.tablet(["TZ"])
    account_services.revoke_device(dbsession, gone.device)
    dbsession.flush()

    progress = study_progress(dbsession, "ocsea", None)
    assert progress.study == "ocsea" and [c.code for c in progress.countries] == ["KE", "KH", "TZ"]
    kenya = _country(progress, "KE")
    (ra1,) = kenya.activities
    # Planned: the two live planned interviews, the two synced by the tablet (registered by sync),
    # and the three made by the conflict helpers; the withdrawn one is not planned any more.
    assert ra1.activity == "RA1"
    assert ra1.planned == 7
    assert (ra1.complete, ra1.drafts) == (4, 1)
    assert ra1.withdrawn == kenya.withdrawn == 1
    # make_field_conflict makes a record conflict first: two record conflicts and a field conflict.
    assert kenya.open_conflicts == 3
    (ke_tablet,) = kenya.tablets
    assert ke_tablet.device_id == tablet.device.id and ke_tablet.owner == tablet.user.username
    assert ke_tablet.label == tablet.device.label and not ke_tablet.revoked
    # A block of ten, two numbers used by the pushed records.
    assert ke_tablet.numbers_left == 8
    assert ke_tablet.last_sync_at is not None

    tanzania = _country(progress, "TZ")
    assert tanzania.activities[0].planned == 1 and tanzania.open_conflicts == 0
    (tz_tablet,) = tanzania.tablets
    assert tz_tablet.revoked and tz_tablet.numbers_left == 10 and tz_tablet.last_sync_at is not None
    cambodia = _country(progress, "KH")
    assert cambodia.tablets == [] and cambodia.activities[0].planned == 0

    # A released block leaves no numbers.
    from surveykit.participants import services as registry

    registry.release_blocks(dbsession, tablet.device.id, world.study, "KE", None, "tests")
    assert _country(study_progress(dbsession, "ocsea", ["KE"]), "KE").tablets[0].numbers_left == 0


def test_progress_keeps_to_the_countries_asked_for(dbsession, world) -> None:
    _planned(world, "KE")
    _planned(world, "TZ")
    progress = study_progress(dbsession, "ocsea", ["TZ", "ZZ"])
    assert [c.code for c in progress.countries] == ["TZ"]
    assert study_progress(dbsession, "ocsea", []).countries == []
    with pytest.raises(studies.StudyNotFound):
        study_progress(dbsession, "nope", None)


def test_to_json_carries_every_field(dbsession, world) -> None:
    _planned(world, "KE")
    world.tablet(["KE"])
    body = study_progress(dbsession, "ocsea", ["KE"]).to_json()
    assert set(body) == {"study", "generated_at", "countries"}
    (kenya,) = body["countries"]
    assert set(kenya) == {"code", "name", "activities", "withdrawn", "open_conflicts", "tablets"}
    assert kenya["activities"] == [
        {"activity": "RA1", "planned": 1, "drafts": 0, "complete": 0, "withdrawn": 0}
    ]
    (tablet,) = kenya["tablets"]
    assert set(tablet) == {"device_id", "label", "owner", "last_sync_at", "numbers_left", "revoked"}
    assert isinstance(tablet["last_sync_at"], str) and isinstance(body["generated_at"], str)


def _count_statements(session: Session, call: Any) -> int:
    executed: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        executed.append(statement)

    engine = session.get_bind().engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(executed)


def _add_countries(world: SyncWorld, codes: list[str]) -> None:
    for code in codes:
        if code not in studies.country_codes(world.session, world.study):
            studies.add_country(world.session, world.study, code, f"Country {code}")
        _planned(world, code)
        ids.allocate_interview_numbers(world.session, world.study.id, "RA1", code)
        world.tablet([code])
    world.session.flush()


def test_the_statement_count_does_not_grow_with_the_countries(dbsession, world) -> None:
    _add_countries(world, ["KE", "TZ", "KH", "QA", "QB", "QC"])
    dbsession.expire_all()
    two = _count_statements(dbsession, lambda: study_progress(dbsession, "ocsea", ["KE", "TZ"]))
    dbsession.expire_all()
    six = _count_statements(
        dbsession, lambda: study_progress(dbsession, "ocsea", ["KE", "TZ", "KH", "QA", "QB", "QC"])
    )
    dbsession.expire_all()
    every = _count_statements(dbsession, lambda: study_progress(dbsession, "ocsea", None))
    assert two == six == every
    assert 0 < two <= 10
    assert len(study_progress(dbsession, "ocsea", None).countries) == 6


# ----------------------------------------------------------------------------------------- API


def test_the_api_shows_each_caller_its_own_countries(testapp, dbsession, world) -> None:
    _planned(world, "KE")
    _planned(world, "TZ")
    admin_id = world.accounts.user("progress-admin", "admin", None).id
    make_conflict(dbsession, admin_id, "ocsea", "KE")
    make_field_conflict(dbsession, admin_id, "ocsea", "TZ")
    url = "/api/v1/studies/ocsea/progress"
    coordinator_ke = world.staff("coordinator", ["KE"])
    (kenya,) = testapp.get(url, headers=coordinator_ke).json["countries"]
    assert kenya["code"] == "KE" and kenya["open_conflicts"] == 1
    assert kenya["activities"] == [
        {"activity": "RA1", "planned": 2, "drafts": 0, "complete": 1, "withdrawn": 0}
    ]
    analyst = world.accounts.headers("analyst", "ocsea", ["KE", "TZ"])
    assert [c["code"] for c in testapp.get(url, headers=analyst).json["countries"]] == ["KE", "TZ"]
    for headers in (world.accounts.headers("admin"), world.accounts.headers("admin", "ocsea")):
        body = testapp.get(url, headers=headers).json
        assert [c["code"] for c in body["countries"]] == ["KE", "KH", "TZ"]
    # A coordinator of several countries, two grants.
    user = world.accounts.user("two-grants", "coordinator", "ocsea", ["KH"])
    account_services.add_grant(dbsession, user, "coordinator", "ocsea", ["TZ"], "tests")
    two = {"Authorization": f"Bearer {world.accounts.token(user)}"}
    assert [c["code"] for c in testapp.get(url, headers=two).json["countries"]] == ["KH", "TZ"]


def test_the_api_refuses_fieldworkers_and_strangers(testapp, world) -> None:
    url = "/api/v1/studies/ocsea/progress"
    testapp.get(url, status=401)
    testapp.get(url, headers=world.staff("fieldworker", ["KE"]), status=403)
    tablet = world.tablet(["KE"])
    testapp.get(url, headers=tablet.headers, status=403)
    world.accounts.study("other", ("KE",))
    stranger = world.accounts.headers("coordinator", "other", ["KE"])
    testapp.get(url, headers=stranger, status=403)
    missing = testapp.get(
        "/api/v1/studies/nope/progress", headers=world.accounts.headers("admin"), status=404
    )
    assert missing.json["code"] == "study_not_found"
