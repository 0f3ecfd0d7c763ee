"""The participant registry over HTTP: registering planned interviews, listing, reading and updating
participants, scope by study and country, strict bodies (no names), the change feed and the audit."""

from __future__ import annotations

import json
from typing import Any

import pytest
import webtest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from surveykit.accounts import services as accounts_services
from surveykit.audit.models import AuditEvent
from surveykit.participants.models import Participant
from surveykit.studies import feed
from surveykit.studies import services as studies

BASE = "/api/v1/studies/ocsea"
KE = f"{BASE}/countries/KE/participants"
TZ = f"{BASE}/countries/TZ/participants"
ENVELOPE_KEYS = {"status", "code", "message", "details"}
LONG_AGENCY = "National Council for Children, Ministry of Social Affairs, Veterans and Youth Rehabilitation"


def assert_envelope(response: webtest.TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_int == status, response.text
    body = response.json
    assert set(body) == ENVELOPE_KEYS
    assert (body["status"], body["code"]) == (status, code)
    return body


def send(testapp: webtest.TestApp, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    return testapp.request(
        url,
        method=method,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
        expect_errors=True,
    )


def audit_events(dbsession: Session, action: str) -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def count(dbsession: Session) -> int:
    dbsession.expire_all()
    return dbsession.scalar(select(func.count()).select_from(Participant))


class Team:
    def __init__(self, accounts: Any, dbsession: Session) -> None:
        self.study = accounts.study("ocsea", ("KE", "TZ", "KH"))
        studies.add_activity(dbsession, self.study, "RA1", "Duty bearers")
        studies.add_activity(dbsession, self.study, "RA2", "Frontline workers")
        self.accounts = accounts
        self.coordinator = accounts.headers("coordinator", "ocsea", ["KE"])
        self.coordinator_tz = accounts.headers("coordinator", "ocsea", ["TZ"])
        self.analyst = accounts.headers("analyst", "ocsea", ["KE"])
        self.fieldworker = accounts.headers("fieldworker", "ocsea", ["KE"])
        self.study_admin = accounts.headers("admin", "ocsea")
        self.admin = accounts.headers("admin")
        owner = accounts.user("tablet-owner", "fieldworker", "ocsea", ["KE"])
        device, _ = accounts_services.enrol_device(dbsession, owner, "KE tablet", "tests", accounts.policy)
        device.activated_at = device.created_at
        dbsession.flush()
        self.device = {"Authorization": f"Bearer {accounts.token(owner, device)}"}


@pytest.fixture
def team(accounts: Any, dbsession: Session) -> Team:
    return Team(accounts, dbsession)


def register(testapp: webtest.TestApp, team: Team, *people: dict[str, Any], url: str = KE) -> Any:
    body = {"activity": "RA1", "participants": list(people) or [{"agency": "Ministry of ICT"}]}
    return send(testapp, "POST", url, body, team.coordinator)


def test_a_coordinator_registers_planned_interviews(
    testapp: webtest.TestApp, team: Team, dbsession: Session
) -> None:
    first = register(testapp, team, {"agency": "Ministry of ICT", "position": "Director of Cyber Security"})
    assert first.status_int == 201, first.text
    assert first.json["interview_number"] == 1
    [participant] = first.json["participants"]
    assert participant == {
        "pid": "RA1-KE-01-A",
        "study": "ocsea",
        "activity": "RA1",
        "country": "KE",
        "interview_number": 1,
        "letter": "A",
        "agency": "Ministry of ICT",
        "position": "Director of Cyber Security",
        "consent_given": None,
        "consent_date": None,
        "consent_recorded_how": None,
        "status": "planned",
        "created_at": participant["created_at"],
        "updated_at": participant["updated_at"],
        "change_seq": participant["change_seq"],
    }
    assert "name" not in participant
    group = register(
        testapp,
        team,
        {"agency": LONG_AGENCY},
        {"agency": "National Council for Children", "position": None},
        {"agency": "Ministry of Interior", "position": "  "},
    )
    assert [p["pid"] for p in group.json["participants"]] == ["RA1-KE-02-A", "RA1-KE-02-B", "RA1-KE-02-C"]
    assert [p["position"] for p in group.json["participants"]] == [None, None, None]

    events = audit_events(dbsession, "participant.register")
    assert [(e.target, e.details["pids"]) for e in events] == [
        ("ocsea/RA1-KE-01", ["RA1-KE-01-A"]),
        ("ocsea/RA1-KE-02", ["RA1-KE-02-A", "RA1-KE-02-B", "RA1-KE-02-C"]),
    ]
    assert len({e.actor for e in events}) == 1 and events[0].actor.startswith("coordinator")

    # Each participant is in the study's change feed, and carries its position there.
    entries = feed.read_changes(dbsession, team.study.id, ["KE"], 0, 100)
    assert [(e.country_code, e.kind, e.key) for e in entries] == [
        ("KE", "participant", "RA1-KE-01-A"),
        ("KE", "participant", "RA1-KE-02-A"),
        ("KE", "participant", "RA1-KE-02-B"),
        ("KE", "participant", "RA1-KE-02-C"),
    ]
    seqs = {p["pid"]: p["change_seq"] for p in [participant, *group.json["participants"]]}
    assert seqs == {e.key: e.seq for e in entries}


def test_listing_and_reading_by_everyone_in_scope(testapp: webtest.TestApp, team: Team) -> None:
    register(testapp, team, {"agency": "Ministry of ICT"}, {"agency": "Police"})
    register(testapp, team, {"agency": "Communications Authority"})
    send(testapp, "POST", KE, {"activity": "RA2", "participants": [{"agency": "Teachers"}]}, team.coordinator)
    for headers in (
        team.coordinator,
        team.analyst,
        team.fieldworker,
        team.device,
        team.study_admin,
        team.admin,
    ):
        listed = testapp.get(KE, headers=headers).json["participants"]
        assert [p["pid"] for p in listed] == ["RA1-KE-01-A", "RA1-KE-01-B", "RA1-KE-02-A", "RA2-KE-01-A"]
        one = testapp.get(f"{BASE}/participants/RA1-KE-01-B", headers=headers).json
        assert (one["agency"], one["letter"]) == ("Police", "B")
    only_ra2 = testapp.get(KE, {"activity": "RA2"}, headers=team.analyst).json["participants"]
    assert [p["pid"] for p in only_ra2] == ["RA2-KE-01-A"]
    assert testapp.get(KE, {"status": "withdrawn"}, headers=team.analyst).json == {"participants": []}
    assert testapp.get(TZ, headers=team.coordinator_tz).json == {"participants": []}
    bad = testapp.get(KE, {"activity": "RA10"}, headers=team.analyst, expect_errors=True)
    assert [d["path"] for d in assert_envelope(bad, 422, "invalid_input")["details"]] == ["activity"]
    bad = testapp.get(KE, {"sort": "name"}, headers=team.analyst, expect_errors=True)
    assert [d["path"] for d in assert_envelope(bad, 422, "invalid_input")["details"]] == ["sort"]


def test_scope_by_role_study_and_country(testapp: webtest.TestApp, team: Team, dbsession: Session) -> None:
    register(testapp, team)
    body = {"activity": "RA1", "participants": [{"agency": "Ministry of ICT"}]}
    # The TZ coordinator cannot register, read or change anything in KE.
    assert_envelope(send(testapp, "POST", KE, body, team.coordinator_tz), 403, "forbidden")
    assert_envelope(testapp.get(KE, headers=team.coordinator_tz, expect_errors=True), 403, "forbidden")
    url = f"{BASE}/participants/RA1-KE-01-A"
    assert_envelope(testapp.get(url, headers=team.coordinator_tz, expect_errors=True), 403, "forbidden")
    assert_envelope(send(testapp, "PATCH", url, {"position": "x"}, team.coordinator_tz), 403, "forbidden")
    # Analysts, fieldworkers and devices read but never register or change.
    for headers in (team.analyst, team.fieldworker, team.device):
        assert_envelope(send(testapp, "POST", KE, body, headers), 403, "forbidden")
        assert_envelope(send(testapp, "PATCH", url, {"position": "x"}, headers), 403, "forbidden")
        assert_envelope(testapp.get(TZ, headers=headers, expect_errors=True), 403, "forbidden")
    # A KE fieldworker cannot read TZ participants, nor a participant of TZ by ID.
    send(testapp, "POST", TZ, body, team.coordinator_tz)
    tz_url = f"{BASE}/participants/RA1-TZ-01-A"
    assert_envelope(testapp.get(tz_url, headers=team.fieldworker, expect_errors=True), 403, "forbidden")
    assert testapp.get(tz_url, headers=team.coordinator_tz).json["agency"] == "Ministry of ICT"
    # Grants in another study give nothing here.
    other = team.accounts.headers("coordinator", "other", ["KE"])
    assert_envelope(send(testapp, "POST", KE, body, other), 403, "forbidden")
    assert_envelope(testapp.get(url, headers=other, expect_errors=True), 403, "forbidden")
    assert_envelope(send(testapp, "POST", KE, body, {}), 401, "unauthenticated")
    assert count(dbsession) == 2
    assert len([e for e in audit_events(dbsession, "authz.forbidden")]) >= 14


def test_study_admins_and_global_admins_register_anywhere_in_scope(
    testapp: webtest.TestApp, team: Team
) -> None:
    body = {"activity": "RA1", "participants": [{"agency": "Ministry of ICT"}]}
    assert send(testapp, "POST", TZ, body, team.study_admin).json["participants"][0]["pid"] == "RA1-TZ-01-A"
    assert send(testapp, "POST", TZ, body, team.admin).json["participants"][0]["pid"] == "RA1-TZ-02-A"


@pytest.mark.parametrize(
    ("body", "expected_paths"),
    [
        (
            {"activity": "RA1", "participants": [{"agency": "Ministry", "name": "Jane Doe"}]},
            ["participants[0].name"],
        ),
        (
            {"activity": "RA1", "participants": [{"agency": "Ministry", "full_name": "J"}]},
            ["participants[0].full_name"],
        ),
        ({"activity": "RA1", "participants": [{"agency": "M"}], "name": "Jane"}, ["name"]),
        ({"activity": "RA1", "participants": [{"position": "Director"}]}, ["participants[0].agency"]),
        ({"activity": "RA1", "participants": [{"agency": " "}]}, ["participants[0].agency"]),
        ({"activity": "RA1", "participants": [{"agency": "x" * 501}]}, ["participants[0].agency"]),
        (
            {"activity": "RA1", "participants": [{"agency": "M", "position": "x" * 301}]},
            ["participants[0].position"],
        ),
        ({"activity": "RA1", "participants": [{"agency": "Line\nbreak"}]}, ["participants[0].agency"]),
        ({"activity": "RA1", "participants": [{"agency": 12}]}, ["participants[0].agency"]),
        ({"activity": "RA1", "participants": []}, ["participants"]),
        ({"activity": "RA1", "participants": [{"agency": "M"}] * 27}, ["participants"]),
        ({"activity": "RA1", "participants": {"agency": "M"}}, ["participants"]),
        ({"activity": "RA01", "participants": [{"agency": "M"}]}, ["activity"]),
        ({"participants": [{"agency": "M"}]}, ["activity"]),
        ({"activity": "RA1", "participants": [{"agency": "M", "letter": "B"}]}, ["participants[0].letter"]),
        ({"activity": "RA1", "interview_number": 7, "participants": [{"agency": "M"}]}, ["interview_number"]),
    ],
)
def test_registration_bodies_are_strict(
    testapp: webtest.TestApp, team: Team, dbsession: Session, body: Any, expected_paths: list[str]
) -> None:
    response = send(testapp, "POST", KE, body, team.coordinator)
    details = assert_envelope(response, 422, "invalid_input")["details"]
    assert [d["path"] for d in details] == expected_paths
    assert "Jane" not in response.text  # a name sent by mistake is not echoed back
    assert count(dbsession) == 0


def test_a_name_field_is_refused_with_a_reason(testapp: webtest.TestApp, team: Team) -> None:
    body = {"activity": "RA1", "participants": [{"agency": "Ministry", "name": "Jane Doe"}]}
    details = assert_envelope(send(testapp, "POST", KE, body, team.coordinator), 422, "invalid_input")[
        "details"
    ]
    assert "stores no names" in details[0]["message"]


def test_unknown_country_or_activity(testapp: webtest.TestApp, team: Team) -> None:
    body = {"activity": "RA1", "participants": [{"agency": "M"}]}
    assert_envelope(
        send(testapp, "POST", f"{BASE}/countries/UG/participants", body, team.admin), 404, "country_not_found"
    )
    body["activity"] = "RA3"
    response = assert_envelope(send(testapp, "POST", KE, body, team.coordinator), 404, "activity_not_found")
    assert response["details"][0]["path"] == "activity"
    assert_envelope(
        send(testapp, "POST", "/api/v1/studies/nope/countries/KE/participants", body, team.admin),
        404,
        "study_not_found",
    )


def test_updating_consent_position_and_status(
    testapp: webtest.TestApp, team: Team, dbsession: Session
) -> None:
    register(testapp, team, {"agency": "Ministry of ICT"}, {"agency": "Police"})
    url = f"{BASE}/participants/RA1-KE-01-B"
    before = testapp.get(url, headers=team.coordinator).json
    updated = send(
        testapp,
        "PATCH",
        url,
        {
            "position": "Head, Cyber Crime Unit",
            "consent_given": True,
            "consent_date": "2020-05-14",
            "consent_recorded_how": "verbal_audio",
            "status": "interviewed",
        },
        team.coordinator,
    )
    assert updated.status_int == 200, updated.text
    body = updated.json
    assert (body["position"], body["consent_given"], body["consent_date"], body["status"]) == (
        "Head, Cyber Crime Unit",
        True,
        "2020-05-14",
        "interviewed",
    )
    assert body["change_seq"] > before["change_seq"]
    assert body["pid"] == "RA1-KE-01-B"
    [event] = audit_events(dbsession, "participant.update")
    assert event.target == "RA1-KE-01-B"
    assert event.details["changed"]["status"] == ["planned", "interviewed"]
    assert event.details["changed"]["consent_date"] == [None, "2020-05-14"]

    cleared = send(testapp, "PATCH", url, {"position": None}, team.study_admin).json
    assert cleared["position"] is None
    # Unchanged values: no feed entry, no audit event.
    again = send(testapp, "PATCH", url, {"position": None, "status": "interviewed"}, team.coordinator).json
    assert again["change_seq"] == cleared["change_seq"]
    assert len(audit_events(dbsession, "participant.update")) == 2

    back = send(testapp, "PATCH", url, {"status": "planned"}, team.coordinator)
    assert assert_envelope(back, 409, "invalid_status_transition")["details"][0]["path"] == "status"
    withdrawn = send(testapp, "PATCH", url, {"status": "withdrawn"}, team.coordinator).json
    assert withdrawn["status"] == "withdrawn"
    assert_envelope(
        send(testapp, "PATCH", url, {"status": "interviewed"}, team.coordinator),
        409,
        "invalid_status_transition",
    )
    # The withdrawn number stays taken; the next interview gets a new one.
    assert register(testapp, team).json["participants"][0]["pid"] == "RA1-KE-02-A"


@pytest.mark.parametrize(
    ("body", "expected_paths"),
    [
        ({}, [""]),
        ({"name": "Jane"}, ["name"]),
        ({"pid": "RA1-KE-09-A"}, ["pid"]),
        ({"interview_number": 9}, ["interview_number"]),
        ({"agency": None}, ["agency"]),
        ({"agency": ""}, ["agency"]),
        ({"consent_given": "yes"}, ["consent_given"]),
        ({"consent_date": "14/05/2020"}, ["consent_date"]),
        ({"consent_date": "2020-02-30"}, ["consent_date"]),
        ({"consent_date": 20200514}, ["consent_date"]),
        ({"consent_recorded_how": "x" * 101}, ["consent_recorded_how"]),
        ({"status": "done"}, ["status"]),
    ],
)
def test_update_bodies_are_strict(
    testapp: webtest.TestApp, team: Team, body: Any, expected_paths: list[str]
) -> None:
    register(testapp, team)
    response = send(testapp, "PATCH", f"{BASE}/participants/RA1-KE-01-A", body, team.coordinator)
    assert [d["path"] for d in assert_envelope(response, 422, "invalid_input")["details"]] == expected_paths
    assert "Jane" not in response.text


def test_unknown_and_malformed_ids_are_404(testapp: webtest.TestApp, team: Team) -> None:
    register(testapp, team)
    for pid in ("RA1-KE-02-A", "RA1-KE-01-B", "RA2-KE-01-A"):
        response = testapp.get(f"{BASE}/participants/{pid}", headers=team.coordinator, expect_errors=True)
        assert_envelope(response, 404, "participant_not_found")
    for pid in ("RA1-KE-1-A", "nonsense", "RA1-KE-001-A"):
        response = testapp.get(f"{BASE}/participants/{pid}", headers=team.coordinator, expect_errors=True)
        assert_envelope(response, 404, "participant_not_found")
        response = send(testapp, "PATCH", f"{BASE}/participants/{pid}", {"position": "x"}, team.coordinator)
        assert_envelope(response, 404, "participant_not_found")
    # Without any grant in the study, even a malformed ID is refused rather than looked at.
    outsider = team.accounts.headers("coordinator", "other", ["KE"])
    response = testapp.get(f"{BASE}/participants/nonsense", headers=outsider, expect_errors=True)
    assert_envelope(response, 403, "forbidden")
