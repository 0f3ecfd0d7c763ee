"""Interview-number blocks for offline minting: device tokens only, within the device's grants."""

from __future__ import annotations

import json
from typing import Any

import pytest
import webtest
from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.accounts import services as accounts_services
from surveykit.audit.models import AuditEvent
from surveykit.config import ConfigurationError, load_settings
from surveykit.participants import services
from surveykit.participants.models import NumberBlock
from surveykit.studies import services as studies

BLOCKS = "/api/v1/blocks"
ENVELOPE_KEYS = {"status", "code", "message", "details"}


def assert_envelope(response: webtest.TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_int == status, response.text
    body = response.json
    assert set(body) == ENVELOPE_KEYS
    assert (body["status"], body["code"]) == (status, code)
    return body


def audit_events(dbsession: Session, action: str) -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


class Tablets:
    def __init__(self, accounts: Any, dbsession: Session) -> None:
        self.accounts = accounts
        self.session = dbsession
        self.study = accounts.study("ocsea", ("KE", "TZ"))
        studies.add_activity(dbsession, self.study, "RA1", "Duty bearers")
        studies.add_activity(dbsession, self.study, "RA2", "Frontline")
        self.ke_owner = accounts.user("ke-fieldworker", "fieldworker", "ocsea", ["KE"])
        self.ke, self.ke_device = self.tablet(self.ke_owner)
        self.ke2, self.ke2_device = self.tablet(self.ke_owner)
        self.both_owner = accounts.user("roaming", "fieldworker", "ocsea", None)
        self.both, _ = self.tablet(self.both_owner)

    def tablet(self, owner: Any) -> tuple[dict[str, str], Any]:
        device, _ = accounts_services.enrol_device(
            self.session, owner, "tablet", "tests", self.accounts.policy
        )
        device.activated_at = device.created_at
        self.session.flush()
        return {"Authorization": f"Bearer {self.accounts.token(owner, device)}"}, device


@pytest.fixture
def tablets(accounts: Any, dbsession: Session) -> Tablets:
    return Tablets(accounts, dbsession)


def reserve(testapp: webtest.TestApp, headers: dict[str, str], **body: Any) -> Any:
    payload = {"study": "ocsea", "country": "KE", "activity": "RA1", **body}
    return testapp.post(
        BLOCKS,
        json.dumps(payload).encode(),
        headers=headers,
        content_type="application/json",
        expect_errors=True,
    )


def test_a_device_reserves_blocks_and_lists_its_own(
    testapp: webtest.TestApp, tablets: Tablets, dbsession: Session
) -> None:
    services.register_interview(
        dbsession, tablets.study, "KE", "RA1", [services.NewParticipant("Ministry of ICT")], "coordinator"
    )
    first = reserve(testapp, tablets.ke)
    assert first.status_int == 201, first.text
    assert first.json == {
        "id": first.json["id"],
        "study": "ocsea",
        "country": "KE",
        "activity": "RA1",
        "first_number": 2,
        "last_number": 11,
        "size": 10,
        "first_id": "RA1-KE-02-A",
        "created_at": first.json["created_at"],
        "released_at": None,
    }
    other = reserve(testapp, tablets.ke2, size=3).json
    assert (other["first_number"], other["last_number"]) == (12, 14)
    big = reserve(testapp, tablets.ke, size=100).json
    assert (big["first_number"], big["last_number"], big["size"]) == (15, 114, 100)
    tz = reserve(testapp, tablets.both, country="TZ", activity="RA2", size=1).json
    assert (tz["first_id"], tz["size"]) == ("RA2-TZ-01-A", 1)

    mine = testapp.get(BLOCKS, headers=tablets.ke).json["blocks"]
    assert [(b["first_number"], b["last_number"]) for b in mine] == [(2, 11), (15, 114)]
    assert testapp.get(BLOCKS, {"country": "TZ"}, headers=tablets.ke).json == {"blocks": []}
    assert (
        len(testapp.get(BLOCKS, {"study": "ocsea", "activity": "RA1"}, headers=tablets.ke).json["blocks"])
        == 2
    )
    assert [b["country"] for b in testapp.get(BLOCKS, headers=tablets.both).json["blocks"]] == ["TZ"]

    assert services.mint_check(dbsession, tablets.ke_device.id, tablets.study.id, "RA1", "KE", 114)
    assert not services.mint_check(dbsession, tablets.ke_device.id, tablets.study.id, "RA1", "KE", 12)
    events = audit_events(dbsession, "block.reserve")
    assert [(e.target, e.details["first_number"], e.details["last_number"]) for e in events] == [
        ("ocsea/KE/RA1", 2, 11),
        ("ocsea/KE/RA1", 12, 14),
        ("ocsea/KE/RA1", 15, 114),
        ("ocsea/TZ/RA2", 1, 1),
    ]
    assert events[0].device_id == tablets.ke_device.id


def test_the_default_size_is_a_setting(testapp: webtest.TestApp, app: Any, tablets: Tablets) -> None:
    settings = app.registry.settings
    original = settings["surveykit.block_size"]
    settings["surveykit.block_size"] = 25
    try:
        assert reserve(testapp, tablets.ke).json["size"] == 25
    finally:
        settings["surveykit.block_size"] = original
    assert load_settings({}, {"SURVEYKIT_BLOCK_SIZE": "40"})["surveykit.block_size"] == 40
    assert load_settings({"surveykit.block_size": "5"}, {})["surveykit.block_size"] == 5
    for bad in ("0", "101", "ten"):
        with pytest.raises(ConfigurationError, match="SURVEYKIT_BLOCK_SIZE"):
            load_settings({}, {"SURVEYKIT_BLOCK_SIZE": bad})


def test_a_fieldworker_of_kenya_cannot_reserve_for_tanzania(
    testapp: webtest.TestApp, tablets: Tablets, dbsession: Session
) -> None:
    body = assert_envelope(reserve(testapp, tablets.ke, country="TZ"), 403, "forbidden")
    assert "TZ" in body["message"]
    assert_envelope(reserve(testapp, tablets.ke, study="other"), 403, "forbidden")
    [refusal] = audit_events(dbsession, "block.reserve")[:1]
    assert (refusal.outcome, refusal.target, refusal.details["reason"]) == (
        "refused",
        "ocsea/TZ/RA1",
        "out_of_scope",
    )
    assert refusal.device_id == tablets.ke_device.id
    assert len(audit_events(dbsession, "block.reserve")) == 2
    assert not list(dbsession.scalars(select(NumberBlock)))


def test_only_device_sessions_reserve_or_list(
    testapp: webtest.TestApp, tablets: Tablets, accounts: Any, dbsession: Session
) -> None:
    # The tablet's owner, signed in without the device, holds the same grant but is no device.
    owner = {"Authorization": f"Bearer {accounts.token(tablets.ke_owner)}"}
    for headers in (
        owner,
        accounts.headers("coordinator", "ocsea", ["KE"]),
        accounts.headers("admin"),
    ):
        assert_envelope(reserve(testapp, headers), 403, "forbidden")
        assert_envelope(testapp.get(BLOCKS, headers=headers, expect_errors=True), 403, "forbidden")
    assert_envelope(reserve(testapp, {}), 401, "unauthenticated")
    assert_envelope(testapp.get(BLOCKS, expect_errors=True), 401, "unauthenticated")
    assert len(audit_events(dbsession, "authz.forbidden")) == 6


@pytest.mark.parametrize(
    ("body", "expected_paths"),
    [
        ({"size": 0}, ["size"]),
        ({"size": 101}, ["size"]),
        ({"size": "5"}, ["size"]),
        ({"size": True}, ["size"]),
        ({"size": 2.5}, ["size"]),
        ({"country": "ke"}, ["country"]),
        ({"activity": "RA"}, ["activity"]),
        ({"study": "Not A Slug"}, ["study"]),
        ({"device": "someone-elses"}, ["device"]),
        ({"first_number": 1}, ["first_number"]),
    ],
)
def test_block_requests_are_strict(
    testapp: webtest.TestApp, tablets: Tablets, body: dict[str, Any], expected_paths: list[str]
) -> None:
    details = assert_envelope(reserve(testapp, tablets.ke, **body), 422, "invalid_input")["details"]
    assert [d["path"] for d in details] == expected_paths


def test_missing_fields_and_unknown_configuration(testapp: webtest.TestApp, tablets: Tablets) -> None:
    response = testapp.post(
        BLOCKS, b"{}", headers=tablets.ke, content_type="application/json", expect_errors=True
    )
    details = assert_envelope(response, 422, "invalid_input")["details"]
    assert sorted(d["path"] for d in details) == ["activity", "country", "study"]
    missing_activity = assert_envelope(
        reserve(testapp, tablets.ke, activity="RA9"), 404, "activity_not_found"
    )
    assert missing_activity["details"][0]["path"] == "activity"
    bad_query = testapp.get(BLOCKS, {"size": "1"}, headers=tablets.ke, expect_errors=True)
    assert [d["path"] for d in assert_envelope(bad_query, 422, "invalid_input")["details"]] == ["size"]
