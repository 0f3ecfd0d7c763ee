"""Field devices: enrolment with a one-time code and QR, activation, revocation, scope, last-seen."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import webtest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from surveykit.accounts import services
from surveykit.accounts.models import AuthSession, Device, User
from surveykit.audit.models import AuditEvent
from surveykit.db import utcnow

DEVICES = "/api/v1/devices"
ACTIVATE = "/api/v1/devices/activate"
REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/me"
ENVELOPE_KEYS = {"status", "code", "message", "details"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_envelope(response: webtest.TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_int == status, response.text
    assert response.content_type == "application/json"
    body = response.json
    assert set(body) == ENVELOPE_KEYS
    assert (body["status"], body["code"]) == (status, code)
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    return body


def audit_events(dbsession: Session, action: str | None = None) -> list[AuditEvent]:
    dbsession.expire_all()
    statement = select(AuditEvent).order_by(AuditEvent.id)
    if action is not None:
        statement = statement.where(AuditEvent.action == action)
    return list(dbsession.scalars(statement))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Team:
    """A KE fieldworker (who is also an analyst elsewhere), their KE coordinator and a TZ coordinator."""

    def __init__(self, accounts: Any) -> None:
        accounts.study("ocsea")
        accounts.study("other", ("KE",))
        self.fieldworker = accounts.user("wanjiru", "fieldworker", countries=["KE"])
        # A second, stronger grant: a device must never carry it.
        services.add_grant(accounts.session, self.fieldworker, "analyst", "other", None, "tests")
        accounts.session.flush()
        self.coordinator = accounts.user("coord-ke", "coordinator", countries=["KE"])
        self.other_coordinator = accounts.user("coord-tz", "coordinator", countries=["TZ"])
        self.ke = bearer(accounts.token(self.coordinator))
        self.tz = bearer(accounts.token(self.other_coordinator))


@pytest.fixture
def team(accounts: Any) -> Team:
    return Team(accounts)


def enrol(testapp: webtest.TestApp, team: Team, label: str = "KE tablet 3") -> dict[str, Any]:
    response = testapp.post_json(
        DEVICES, {"username": "wanjiru", "label": label}, headers=team.ke, status=201
    )
    return response.json


def activate(testapp: webtest.TestApp, code: str, **kw: Any) -> Any:
    return testapp.post_json(ACTIVATE, {"code": code}, **kw)


def enrolled_and_active(testapp: webtest.TestApp, team: Team) -> dict[str, Any]:
    enrolled = enrol(testapp, team)
    return activate(testapp, enrolled["enrolment_code"]).json


def test_a_coordinator_enrols_a_device_with_a_code_and_a_qr_code(
    testapp: webtest.TestApp, dbsession: Session, team: Team, settings: dict[str, Any]
) -> None:
    response = testapp.post_json(
        DEVICES, {"username": "wanjiru", "label": "KE tablet 3"}, headers=team.ke, status=201
    )
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    code = body["enrolment_code"]
    assert len(code) == 11 and code[5] == "-"
    assert set(code.replace("-", "")) <= set(services.CODE_ALPHABET)

    device = body["device"]
    assert device["user"] == "wanjiru"
    assert device["label"] == "KE tablet 3"
    assert device["status"] == "pending"
    assert device["last_seen_at"] is None
    assert device["enrolment_expires_at"] is not None

    qr = body["qr"]
    assert qr["png_base64"] and base64.b64decode(qr["png_base64"]).startswith(PNG_MAGIC)
    assert "<svg" in qr["svg"]
    assert code in qr["payload"]
    query = parse_qs(urlsplit(qr["payload"]).query)
    assert query == {"server": ["http://surveykit.test"], "code": [code]}

    # Only a hash of the code is kept.
    stored = dbsession.get(Device, device["id"])
    assert stored.enrolment_code_hash and code not in stored.enrolment_code_hash
    assert stored.enrolled_by == "coord-ke"
    expires = stored.enrolment_expires_at
    assert expires - utcnow() <= timedelta(seconds=settings["surveykit.enrolment_code_seconds"])

    [event] = audit_events(dbsession, "device.enrol")
    assert (event.actor, event.outcome, event.target) == ("coord-ke", "success", device["id"])
    # The scope the coordinator gave: only KE, though wanjiru is also an analyst of study other.
    assert device["scope"] == [{"study": "ocsea", "countries": ["KE"]}]
    assert event.details == {"owner": "wanjiru", "label": "KE tablet 3", "scope": device["scope"]}
    assert code not in str(event.details)


def test_activation_returns_device_tokens_with_only_fieldworker_grants(
    testapp: webtest.TestApp, dbsession: Session, team: Team, settings: dict[str, Any]
) -> None:
    enrolled = enrol(testapp, team)
    # Codes are forgiving about case, spaces and hyphens as typed on a tablet.
    typed = enrolled["enrolment_code"].lower().replace("-", " ")
    response = activate(testapp, typed)
    assert response.headers["Cache-Control"] == "no-store"
    tokens = response.json
    assert tokens["device_id"] == enrolled["device"]["id"]
    assert tokens["token_type"] == "Bearer"

    me = testapp.get(ME, headers=bearer(tokens["access_token"])).json
    assert me == {
        "username": "wanjiru",
        "device_id": enrolled["device"]["id"],
        "grants": [{"role": "fieldworker", "study": "ocsea", "countries": ["KE"]}],
    }
    # A device session lives as long as the device setting says, far beyond a staff login.
    session = dbsession.scalar(select(AuthSession).where(AuthSession.device_id == tokens["device_id"]))
    assert session is not None and session.user_id == team.fieldworker.id
    # Device tokens refresh like any other.
    renewed = testapp.post_json(REFRESH, {"refresh_token": tokens["refresh_token"]}).json
    assert testapp.get(ME, headers=bearer(renewed["access_token"])).json["device_id"] == tokens["device_id"]

    [event] = audit_events(dbsession, "device.activate")
    assert (event.actor, event.outcome, event.target) == (
        f"device:{tokens['device_id']}",
        "success",
        tokens["device_id"],
    )


def test_an_enrolment_code_works_once(testapp: webtest.TestApp, dbsession: Session, team: Team) -> None:
    enrolled = enrol(testapp, team)
    activate(testapp, enrolled["enrolment_code"], status=200)
    body = assert_envelope(
        activate(testapp, enrolled["enrolment_code"], status=401), 401, "enrolment_refused"
    )
    assert "already used" in body["message"]
    refused = [e for e in audit_events(dbsession, "device.activate") if e.outcome == "refused"]
    assert [(e.actor, e.details) for e in refused] == [("anonymous", {"reason": "unknown_or_used"})]
    assert_envelope(activate(testapp, "ABCDE-FGHJK", status=401), 401, "enrolment_refused")


def test_an_expired_enrolment_code_is_refused_and_spent(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    enrolled = enrol(testapp, team)
    dbsession.execute(
        update(Device)
        .where(Device.id == enrolled["device"]["id"])
        .values(enrolment_expires_at=utcnow() - timedelta(seconds=1))
    )
    dbsession.flush()
    body = assert_envelope(
        activate(testapp, enrolled["enrolment_code"], status=401), 401, "enrolment_refused"
    )
    assert "expired" in body["message"]
    refused = [e for e in audit_events(dbsession, "device.activate") if e.outcome == "refused"]
    assert [(e.target, e.details) for e in refused] == [(enrolled["device"]["id"], {"reason": "expired"})]
    # Moving the expiry back does not resurrect the code: it was spent by the attempt.
    dbsession.execute(
        update(Device)
        .where(Device.id == enrolled["device"]["id"])
        .values(enrolment_expires_at=utcnow() + timedelta(hours=1))
    )
    dbsession.flush()
    assert_envelope(activate(testapp, enrolled["enrolment_code"], status=401), 401, "enrolment_refused")
    dbsession.expire_all()
    assert dbsession.get(Device, enrolled["device"]["id"]).activated_at is None


def test_a_device_revoked_before_activation_cannot_activate(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    enrolled = enrol(testapp, team)
    testapp.delete(f"{DEVICES}/{enrolled['device']['id']}", headers=team.ke, status=200)
    assert_envelope(activate(testapp, enrolled["enrolment_code"], status=401), 401, "enrolment_refused")


def test_a_revoked_device_is_refused_on_its_very_next_request(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    tokens = enrolled_and_active(testapp, team)
    device_headers = bearer(tokens["access_token"])
    assert testapp.get(ME, headers=device_headers).status_int == 200

    revoked = testapp.delete(f"{DEVICES}/{tokens['device_id']}", headers=team.ke).json
    assert revoked["status"] == "revoked" and revoked["revoked_at"]

    # The access token has minutes left, but the device gets nothing from now on.
    body = assert_envelope(testapp.get(ME, headers=device_headers, status=401), 401, "unauthenticated")
    assert "revoked" in body["message"]
    assert_envelope(
        testapp.get("/api/v1/instruments", headers=device_headers, status=401), 401, "unauthenticated"
    )
    assert_envelope(
        testapp.post_json(REFRESH, {"refresh_token": tokens["refresh_token"]}, status=401),
        401,
        "refresh_refused",
    )
    token_refusals = audit_events(dbsession, "auth.token_refused")
    assert {e.details["reason"] for e in token_refusals} == {"device_revoked"}
    assert {e.device_id for e in token_refusals} == {tokens["device_id"]}
    [revocation] = audit_events(dbsession, "device.revoke")
    assert (revocation.actor, revocation.outcome, revocation.target) == (
        "coord-ke",
        "success",
        tokens["device_id"],
    )
    # Revoking again is harmless.
    assert testapp.delete(f"{DEVICES}/{tokens['device_id']}", headers=team.ke).json["status"] == "revoked"


def test_a_deactivated_users_device_is_refused(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    tokens = enrolled_and_active(testapp, team)
    pending = enrol(testapp, team, "spare tablet")
    services.deactivate_user(dbsession, dbsession.get(User, team.fieldworker.id))
    dbsession.flush()
    assert_envelope(
        testapp.get(ME, headers=bearer(tokens["access_token"]), status=401), 401, "unauthenticated"
    )
    assert_envelope(
        testapp.post_json(REFRESH, {"refresh_token": tokens["refresh_token"]}, status=401),
        401,
        "refresh_refused",
    )
    assert_envelope(activate(testapp, pending["enrolment_code"], status=401), 401, "enrolment_refused")
    [refusal] = audit_events(dbsession, "auth.token_refused")
    assert refusal.details == {"reason": "inactive"}
    # And no new device can be enrolled for the deactivated account.
    assert_envelope(
        testapp.post_json(DEVICES, {"username": "wanjiru", "label": "x"}, headers=team.ke, status=422),
        422,
        "invalid_input",
    )


def test_a_coordinator_of_another_country_cannot_enrol_or_revoke(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    body = assert_envelope(
        testapp.post_json(DEVICES, {"username": "wanjiru", "label": "mine now"}, headers=team.tz, status=403),
        403,
        "forbidden",
    )
    assert "wanjiru" in body["message"]
    assert dbsession.scalar(select(Device.id)) is None

    tokens = enrolled_and_active(testapp, team)
    assert_envelope(
        testapp.delete(f"{DEVICES}/{tokens['device_id']}", headers=team.tz, status=403), 403, "forbidden"
    )
    # The device keeps working.
    assert testapp.get(ME, headers=bearer(tokens["access_token"])).status_int == 200
    refusals = [e for e in audit_events(dbsession) if e.outcome == "refused"]
    assert [(e.action, e.actor, e.target, e.details) for e in refusals] == [
        ("device.enrol", "coord-tz", "wanjiru", {"reason": "out_of_scope"}),
        ("device.revoke", "coord-tz", tokens["device_id"], {"reason": "out_of_scope"}),
    ]
    # Nor does the TZ coordinator see the device.
    assert testapp.get(DEVICES, headers=team.tz).json == {"devices": []}


def test_roles_that_do_not_manage_devices_are_forbidden(
    testapp: webtest.TestApp, dbsession: Session, team: Team, accounts: Any
) -> None:
    tokens = enrolled_and_active(testapp, team)
    analyst = bearer(accounts.token(accounts.user(role="analyst", countries=["KE"])))
    for headers in (analyst, bearer(tokens["access_token"])):
        assert_envelope(
            testapp.post_json(DEVICES, {"username": "wanjiru", "label": "x"}, headers=headers, status=403),
            403,
            "forbidden",
        )
        assert_envelope(
            testapp.delete(f"{DEVICES}/{tokens['device_id']}", headers=headers, status=403), 403, "forbidden"
        )
    assert {e.action for e in audit_events(dbsession) if e.outcome == "refused"} == {"authz.forbidden"}


def test_enrolment_needs_an_active_fieldworker(
    testapp: webtest.TestApp, dbsession: Session, team: Team, accounts: Any
) -> None:
    accounts.user("only-analyst", "analyst", countries=["KE"])
    analyst = assert_envelope(
        testapp.post_json(DEVICES, {"username": "only-analyst", "label": "x"}, headers=team.ke, status=403),
        403,
        "forbidden",
    )
    # An unknown username looks exactly like someone else's: no probing for usernames.
    nobody = assert_envelope(
        testapp.post_json(DEVICES, {"username": "nobody", "label": "x"}, headers=team.ke, status=403),
        403,
        "forbidden",
    )
    assert nobody["message"] == analyst["message"].replace("only-analyst", "nobody")
    reasons = {(e.target, e.details["reason"]) for e in audit_events(dbsession, "device.enrol")}
    assert {("nobody", "unknown_user"), ("only-analyst", "out_of_scope")} <= reasons
    admin = bearer(accounts.token(accounts.user(role="admin", study=None)))
    body = assert_envelope(
        testapp.post_json(DEVICES, {"username": "only-analyst", "label": "x"}, headers=admin, status=403),
        403,
        "forbidden",
    )
    assert body["message"]
    # An admin of every study may see every account anyway, so is told plainly.
    assert_envelope(
        testapp.post_json(DEVICES, {"username": "nobody", "label": "x"}, headers=admin, status=404),
        404,
        "user_not_found",
    )
    assert_envelope(
        testapp.post_json(DEVICES, {"username": "wanjiru", "label": "   "}, headers=team.ke, status=422),
        422,
        "invalid_input",
    )
    assert_envelope(
        testapp.delete(f"{DEVICES}/no-such-device", headers=team.ke, status=404), 404, "device_not_found"
    )


def test_a_fieldworker_lists_their_own_devices_with_last_seen(
    testapp: webtest.TestApp, dbsession: Session, team: Team, accounts: Any
) -> None:
    tokens = enrolled_and_active(testapp, team)
    enrol(testapp, team, "spare tablet")
    someone_else = accounts.user("otieno", "fieldworker", countries=["KE"])
    testapp.post_json(DEVICES, {"username": "otieno", "label": "otieno's"}, headers=team.ke, status=201)

    own = testapp.get(DEVICES, headers=bearer(accounts.token(team.fieldworker))).json["devices"]
    assert {(d["label"], d["status"]) for d in own} == {
        ("KE tablet 3", "active"),
        ("spare tablet", "pending"),
    }
    active = next(d for d in own if d["id"] == tokens["device_id"])
    assert active["last_seen_at"] is not None and active["activated_at"] is not None
    # Through the device itself, too.
    via_device = testapp.get(DEVICES, headers=bearer(tokens["access_token"])).json["devices"]
    assert {d["id"] for d in via_device} == {d["id"] for d in own}
    # The other fieldworker sees only theirs; the KE coordinator sees all three.
    theirs = testapp.get(DEVICES, headers=bearer(accounts.token(someone_else))).json["devices"]
    assert [d["label"] for d in theirs] == ["otieno's"]
    everyone = testapp.get(DEVICES, headers=team.ke).json["devices"]
    assert len(everyone) == 3
    filtered = testapp.get(DEVICES, params={"username": "otieno"}, headers=team.ke).json["devices"]
    assert [d["user"] for d in filtered] == ["otieno"]


def test_requests_update_the_devices_last_seen(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    tokens = enrolled_and_active(testapp, team)
    long_ago = utcnow() - timedelta(hours=5)
    dbsession.execute(update(Device).where(Device.id == tokens["device_id"]).values(last_seen_at=long_ago))
    dbsession.flush()
    before = utcnow()
    testapp.get("/api/v1/instruments", headers=bearer(tokens["access_token"]))
    dbsession.expire_all()
    seen = dbsession.get(Device, tokens["device_id"]).last_seen_at
    assert seen >= before - timedelta(seconds=1)
    listed = testapp.get(DEVICES, headers=team.ke).json["devices"]
    assert listed[0]["last_seen_at"] == seen.isoformat()


def test_enrol_body_is_strict(testapp: webtest.TestApp, team: Team) -> None:
    assert_envelope(
        testapp.post_json(
            DEVICES, {"username": "wanjiru", "label": "x", "owner": "me"}, headers=team.ke, status=422
        ),
        422,
        "invalid_input",
    )
    assert_envelope(testapp.post_json(ACTIVATE, {"code": 12345}, status=422), 422, "invalid_input")


# ------------------------------------------------------------------------------------ re-enrolment


def reenrol(testapp: webtest.TestApp, device_id: str, headers: dict[str, str], **kw: Any) -> Any:
    return testapp.post(f"{DEVICES}/{device_id}/enrolment", headers=headers, **kw)


def device_sessions(dbsession: Session, device_id: str) -> list[AuthSession]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(
            select(AuthSession).where(AuthSession.device_id == device_id).order_by(AuthSession.created_at)
        )
    )


def test_reenrolment_keeps_the_device_id_and_ends_its_earlier_sessions(
    testapp: webtest.TestApp, dbsession: Session, team: Team, accounts: Any
) -> None:
    from surveykit.participants import ids
    from surveykit.studies import services as studies

    tokens = enrolled_and_active(testapp, team)
    device_id = tokens["device_id"]
    # A block of interview numbers the tablet minted from while offline.
    study = studies.get_study(dbsession, "ocsea")
    studies.add_activity(dbsession, study, "RA1", "Duty bearers")
    block = ids.reserve_block(dbsession, device_id, study.id, "RA1", "KE", 5)
    dbsession.flush()
    # The tablet refreshed, but the answer was lost: the server holds a new refresh token the tablet
    # never saw (and the old one is spent). Neither may ever work again after re-enrolment.
    lost = testapp.post_json(REFRESH, {"refresh_token": tokens["refresh_token"]}).json

    response = reenrol(testapp, device_id, team.ke, status=200)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["device"]["id"] == device_id and body["device"]["status"] == "active"
    assert body["device"]["enrolment_expires_at"] is not None
    code = body["enrolment_code"]
    assert len(code) == 11 and code[5] == "-"
    assert base64.b64decode(body["qr"]["png_base64"]).startswith(PNG_MAGIC)
    assert "<svg" in body["qr"]["svg"]
    assert parse_qs(urlsplit(body["qr"]["payload"]).query) == {
        "server": ["http://surveykit.test"],
        "code": [code],
    }
    stored = dbsession.get(Device, device_id)
    dbsession.refresh(stored)
    assert stored.enrolment_code_hash and code not in stored.enrolment_code_hash
    assert stored.enrolled_by == "coord-ke"  # the original enrolment is not rewritten
    # Issuing the code ends nothing: the tablet keeps working until the code is activated.
    assert testapp.get(ME, headers=bearer(lost["access_token"])).status_int == 200

    activated = activate(testapp, code).json
    assert activated["device_id"] == device_id
    new = bearer(activated["access_token"])
    assert testapp.get(ME, headers=new).json["device_id"] == device_id
    # The device's number blocks are still its own.
    blocks = testapp.get("/api/v1/blocks", headers=new).json["blocks"]
    assert [(b["id"], b["first_number"], b["last_number"]) for b in blocks] == [
        (block.id, block.first_number, block.last_number)
    ]
    assert ids.device_owns_number(dbsession, device_id, study.id, "RA1", "KE", block.first_number)

    # Every earlier token of the device is refused: access tokens at once, refresh tokens for good.
    for access in (tokens["access_token"], lost["access_token"]):
        body = assert_envelope(testapp.get(ME, headers=bearer(access), status=401), 401, "unauthenticated")
    assert_envelope(
        testapp.post_json(REFRESH, {"refresh_token": lost["refresh_token"]}, status=401),
        401,
        "refresh_refused",
    )
    old, current = device_sessions(dbsession, device_id)
    assert old.revoked_reason == "device re-enrolled" and old.revoked_at is not None
    assert current.revoked_at is None and current.id != old.id
    # The old spent token, presented again, is reuse of the old session: the new one is untouched.
    assert_envelope(
        testapp.post_json(REFRESH, {"refresh_token": tokens["refresh_token"]}, status=401),
        401,
        "refresh_refused",
    )
    assert testapp.get(ME, headers=new).status_int == 200
    assert testapp.post_json(REFRESH, {"refresh_token": activated["refresh_token"]}).status_int == 200

    [event] = audit_events(dbsession, "device.reenrol")
    assert (event.actor, event.outcome, event.target) == ("coord-ke", "success", device_id)
    assert event.details == {"owner": "wanjiru", "label": "KE tablet 3"}
    assert code not in str(event.details)
    first, second = audit_events(dbsession, "device.activate")
    assert first.details == {}
    assert (second.actor, second.outcome, second.target) == (f"device:{device_id}", "success", device_id)
    assert second.details == {"reenrolment": True, "sessions_ended": 1}
    # Still one device for the fieldworker.
    assert [d["id"] for d in testapp.get(DEVICES, headers=team.ke).json["devices"]] == [device_id]


def test_a_reenrolment_code_works_once_and_a_second_use_ends_nothing(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    tokens = enrolled_and_active(testapp, team)
    code = reenrol(testapp, tokens["device_id"], team.ke).json["enrolment_code"]
    activated = activate(testapp, code).json
    body = assert_envelope(activate(testapp, code, status=401), 401, "enrolment_refused")
    assert "already used" in body["message"]
    # The refused second activation did not end the session the first one started.
    assert testapp.get(ME, headers=bearer(activated["access_token"])).status_int == 200
    assert [s.revoked_at is None for s in device_sessions(dbsession, tokens["device_id"])] == [False, True]
    refused = [e for e in audit_events(dbsession, "device.activate") if e.outcome == "refused"]
    assert [e.details for e in refused] == [{"reason": "unknown_or_used"}]


def test_a_newer_reenrolment_code_replaces_an_unused_one(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    tokens = enrolled_and_active(testapp, team)
    first = reenrol(testapp, tokens["device_id"], team.ke).json["enrolment_code"]
    second = reenrol(testapp, tokens["device_id"], team.ke).json["enrolment_code"]
    assert_envelope(activate(testapp, first, status=401), 401, "enrolment_refused")
    # The refused code ended nothing either.
    assert testapp.get(ME, headers=bearer(tokens["access_token"])).status_int == 200
    assert activate(testapp, second).json["device_id"] == tokens["device_id"]


def test_an_expired_reenrolment_code_is_refused_and_the_session_kept(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    tokens = enrolled_and_active(testapp, team)
    code = reenrol(testapp, tokens["device_id"], team.ke).json["enrolment_code"]
    dbsession.execute(
        update(Device)
        .where(Device.id == tokens["device_id"])
        .values(enrolment_expires_at=utcnow() - timedelta(seconds=1))
    )
    dbsession.flush()
    body = assert_envelope(activate(testapp, code, status=401), 401, "enrolment_refused")
    assert "expired" in body["message"]
    assert testapp.get(ME, headers=bearer(tokens["access_token"])).status_int == 200
    # Spent by the attempt: it does not come back with a later expiry.
    dbsession.execute(
        update(Device)
        .where(Device.id == tokens["device_id"])
        .values(enrolment_expires_at=utcnow() + timedelta(hours=1))
    )
    dbsession.flush()
    assert_envelope(activate(testapp, code, status=401), 401, "enrolment_refused")


def test_a_revoked_device_cannot_be_reenrolled(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    tokens = enrolled_and_active(testapp, team)
    testapp.delete(f"{DEVICES}/{tokens['device_id']}", headers=team.ke, status=200)
    body = assert_envelope(reenrol(testapp, tokens["device_id"], team.ke, status=409), 409, "device_revoked")
    assert "revoked" in body["message"]
    dbsession.expire_all()
    stored = dbsession.get(Device, tokens["device_id"])
    assert stored.revoked_at is not None and stored.enrolment_code_hash is None
    [event] = audit_events(dbsession, "device.reenrol")
    assert (event.actor, event.outcome, event.target, event.details) == (
        "coord-ke",
        "refused",
        tokens["device_id"],
        {"reason": "revoked"},
    )
    # The service refuses too, whoever calls it.
    with pytest.raises(services.ReenrolmentRefused):
        services.reenrol_device(
            dbsession, stored, "tests", services.AccountPolicy.from_settings(testapp.app.registry.settings)
        )


def test_revoking_a_device_spends_its_outstanding_reenrolment_code(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    tokens = enrolled_and_active(testapp, team)
    code = reenrol(testapp, tokens["device_id"], team.ke).json["enrolment_code"]
    testapp.delete(f"{DEVICES}/{tokens['device_id']}", headers=team.ke, status=200)
    assert_envelope(activate(testapp, code, status=401), 401, "enrolment_refused")
    assert all(s.revoked_at is not None for s in device_sessions(dbsession, tokens["device_id"]))


def test_reenrolment_is_scoped_like_revocation(
    testapp: webtest.TestApp, dbsession: Session, team: Team, accounts: Any
) -> None:
    tokens = enrolled_and_active(testapp, team)
    assert_envelope(reenrol(testapp, tokens["device_id"], team.tz, status=403), 403, "forbidden")
    assert_envelope(reenrol(testapp, "no-such-device", team.ke, status=404), 404, "device_not_found")
    assert_envelope(reenrol(testapp, "x" * 100, team.ke, status=404), 404, "device_not_found")
    # Neither the tablet itself nor its owner may give themselves a code.
    for headers in (bearer(tokens["access_token"]), bearer(accounts.token(team.fieldworker))):
        assert_envelope(reenrol(testapp, tokens["device_id"], headers, status=403), 403, "forbidden")
    refusals = [e for e in audit_events(dbsession) if e.outcome == "refused"]
    assert [(e.action, e.actor, e.target, e.details) for e in refusals][0] == (
        "device.reenrol",
        "coord-tz",
        tokens["device_id"],
        {"reason": "out_of_scope"},
    )
    assert {e.action for e in refusals[1:]} == {"authz.forbidden"}
    dbsession.expire_all()
    assert dbsession.get(Device, tokens["device_id"]).enrolment_code_hash is None
    # An admin of every study may.
    admin = bearer(accounts.token(accounts.user(role="admin", study=None)))
    assert (
        reenrol(testapp, tokens["device_id"], admin, status=200).json["device"]["id"] == tokens["device_id"]
    )


def test_a_deactivated_fieldworkers_device_is_not_reenrolled(
    testapp: webtest.TestApp, dbsession: Session, team: Team
) -> None:
    tokens = enrolled_and_active(testapp, team)
    services.deactivate_user(dbsession, dbsession.get(User, team.fieldworker.id))
    dbsession.flush()
    body = assert_envelope(reenrol(testapp, tokens["device_id"], team.ke, status=422), 422, "invalid_input")
    assert "deactivated" in body["message"]
    [event] = audit_events(dbsession, "device.reenrol")
    assert event.outcome == "refused"


def test_a_pending_device_gets_a_new_code(testapp: webtest.TestApp, dbsession: Session, team: Team) -> None:
    """The first code was lost or expired before the tablet used it."""
    enrolled = enrol(testapp, team)
    again = reenrol(testapp, enrolled["device"]["id"], team.ke).json
    assert again["device"]["status"] == "pending"
    assert_envelope(activate(testapp, enrolled["enrolment_code"], status=401), 401, "enrolment_refused")
    activated = activate(testapp, again["enrolment_code"]).json
    assert activated["device_id"] == enrolled["device"]["id"]
    [activation] = [e for e in audit_events(dbsession, "device.activate") if e.outcome == "success"]
    assert activation.details == {}
