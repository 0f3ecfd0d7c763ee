"""Changing one's own password, an admin's reset and unlock, through the API, the services and the CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import webtest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from surveykit.accounts import passwords, services
from surveykit.accounts.models import AttemptCounter, AuthSession, User
from surveykit.audit.models import AuditEvent
from surveykit.db import utcnow

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new long passphrase"
_PASSWORD_HASH = passwords.hash_password(PASSWORD)
HERE = "198.51.100.7"
ELSEWHERE = "203.0.113.66"


def _user(accounts: Any, username: str = "amina") -> User:
    user = accounts.user(username, "coordinator", countries=["KE"])
    user.password_hash = _PASSWORD_HASH
    accounts.session.flush()
    return user


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _post(
    testapp: webtest.TestApp, url: str, body: Any, headers: dict[str, str], addr: str = HERE
) -> webtest.TestResponse:
    return testapp.post(
        url,
        json.dumps(body).encode() if body is not None else b"",
        headers={**headers, **({"Content-Type": "application/json"} if body is not None else {})},
        extra_environ={"REMOTE_ADDR": addr},
        status="*",
    )


def _login(testapp: webtest.TestApp, username: str, password: str, addr: str = HERE) -> webtest.TestResponse:
    return _post(testapp, "/api/v1/auth/token", {"username": username, "password": password}, {}, addr)


def _events(session: Session, action: str) -> list[AuditEvent]:
    return list(
        session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def _change(testapp: webtest.TestApp, token: str, current: str, new: str, addr: str = HERE) -> Any:
    body = {"current_password": current, "new_password": new}
    return _post(testapp, "/api/v1/me/password", body, _bearer(token), addr)


# ------------------------------------------------------------------------------ own password


def test_changing_ones_password_ends_the_other_sessions_only(testapp, dbsession, accounts) -> None:
    user = _user(accounts)
    this = accounts.token(user)
    other = accounts.token(user)
    services.add_grant(dbsession, user, "fieldworker", "ocsea", ["KE"], "tests")
    _device, code = services.enrol_device(dbsession, user, "own tablet", "tests", accounts.policy)
    _device, pair = services.activate_device(dbsession, code, accounts.tokens, accounts.policy)

    answer = _change(testapp, this, PASSWORD, NEW_PASSWORD)
    assert answer.status_int == 200, answer.text
    assert answer.json == {"username": "amina", "sessions_ended": 1, "access_tokens_revoked": 0}
    testapp.get("/api/v1/me", headers=_bearer(this), status=200)
    assert testapp.get("/api/v1/me", headers=_bearer(other), status=401).json["code"] == "unauthenticated"
    # The tablet's session does not come from the password: it goes on.
    testapp.get("/api/v1/me", headers=_bearer(pair.access_token), status=200)
    assert _login(testapp, "amina", PASSWORD).json["code"] == "invalid_credentials"
    assert _login(testapp, "amina", NEW_PASSWORD).status_int == 200
    (event,) = _events(dbsession, "user.password_change")
    assert (event.actor, event.target, event.outcome, event.details) == (
        "amina",
        "amina",
        "success",
        {"sessions_ended": 1, "access_tokens_revoked": 0},
    )
    revoked = dbsession.scalars(select(AuthSession.revoked_reason).where(AuthSession.revoked_at.is_not(None)))
    assert list(revoked) == ["password changed"]


def test_a_wrong_current_password_is_a_counted_422(testapp, dbsession, accounts, settings) -> None:
    user = _user(accounts)
    token = accounts.token(user)
    wrong = _change(testapp, token, "not my password", NEW_PASSWORD)
    assert wrong.status_int == 422
    assert wrong.json["code"] == "invalid_input"
    assert wrong.json["details"] == [
        {"location": "body", "path": "current_password", "message": "wrong password"}
    ]
    (counter,) = dbsession.scalars(select(AttemptCounter).where(AttemptCounter.kind == "lockout"))
    assert (counter.username, counter.client_addr, counter.attempts) == ("amina", HERE, 1)
    (refused,) = _events(dbsession, "user.password_change")
    assert (refused.outcome, refused.details) == ("refused", {"reason": "bad_password"})
    # The threshold's wrong password locks the account for this address, as at login.
    threshold = settings["surveykit.lockout_threshold"]
    answers = [_change(testapp, token, "still wrong", NEW_PASSWORD) for _ in range(threshold - 1)]
    assert [a.status_int for a in answers] == [422] * (threshold - 2) + [429]
    locked = _change(testapp, token, PASSWORD, NEW_PASSWORD)
    assert (locked.status_int, locked.json["code"]) == (429, "account_locked")
    assert int(locked.headers["Retry-After"]) > 0
    assert locked.json["details"][0]["path"] == "current_password"
    assert _login(testapp, "amina", PASSWORD).json["code"] == "account_locked"
    assert services.account_lock_state(dbsession, "amina", accounts.policy) is not None
    # From another address, the owner changes it.
    assert _change(testapp, token, PASSWORD, NEW_PASSWORD, ELSEWHERE).status_int == 200
    dbsession.refresh(user)
    assert passwords.verify_password(user.password_hash, NEW_PASSWORD)


def test_a_new_password_breaking_the_policy_is_refused_uncounted(testapp, dbsession, accounts) -> None:
    user = _user(accounts)
    token = accounts.token(user)
    for new, message in (("short", "at least"), (" padded password here ", "white space")):
        answer = _change(testapp, token, "wrong too", new)
        assert answer.status_int == 422
        (detail,) = answer.json["details"]
        assert detail["path"] == "new_password" and message in detail["message"]
    unknown = _post(
        testapp, "/api/v1/me/password", {"current_password": PASSWORD, "new": "x"}, _bearer(token)
    )
    assert unknown.status_int == 422
    assert dbsession.scalar(select(AttemptCounter.attempts).where(AttemptCounter.kind == "lockout")) is None
    dbsession.refresh(user)
    assert user.password_hash == _PASSWORD_HASH


def test_a_tablet_session_cannot_change_its_owners_password(testapp, dbsession, accounts) -> None:
    from test_sync_support import SyncWorld

    tablet = SyncWorld(accounts, dbsession).tablet(["KE"])
    tablet.user.password_hash = _PASSWORD_HASH
    dbsession.flush()
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    refused = _post(testapp, "/api/v1/me/password", body, tablet.headers)
    assert (refused.status_int, refused.json["code"]) == (403, "forbidden")
    assert _post(testapp, "/api/v1/me/password", body, {}).status_int == 401


# ----------------------------------------------------------------------------- admin: reset


def test_an_admin_sets_or_generates_a_password(testapp, dbsession, accounts) -> None:
    user = _user(accounts)
    token = accounts.token(user)
    admin = accounts.headers("admin")
    chosen = _post(testapp, "/api/v1/users/amina/password", {"password": NEW_PASSWORD}, admin)
    assert chosen.status_int == 200, chosen.text
    assert chosen.json == {
        "username": "amina",
        "sessions_ended": 1,
        "lockouts_cleared": 0,
        "access_tokens_revoked": 0,
    }
    testapp.get("/api/v1/me", headers=_bearer(token), status=401)
    assert _login(testapp, "amina", NEW_PASSWORD).status_int == 200

    generated = _post(testapp, "/api/v1/users/amina/password", None, admin)
    assert generated.status_int == 200
    assert generated.headers["Cache-Control"] == "no-store"
    password = generated.json["password"]
    assert len(password) >= 12
    assert _login(testapp, "amina", password).status_int == 200
    assert _login(testapp, "amina", NEW_PASSWORD).json["code"] == "invalid_credentials"
    events = _events(dbsession, "user.password_reset")
    assert [(e.target, e.details["generated"]) for e in events] == [("amina", False), ("amina", True)]
    assert all(password not in json.dumps(e.details) for e in events)


def test_a_reset_refuses_bad_input_and_strangers(testapp, dbsession, accounts) -> None:
    _user(accounts)
    admin = accounts.headers("admin")
    short = _post(testapp, "/api/v1/users/amina/password", {"password": "short"}, admin)
    assert short.status_int == 422 and short.json["details"][0]["path"] == "password"
    missing = _post(testapp, "/api/v1/users/nobody/password", {"password": NEW_PASSWORD}, admin)
    assert (missing.status_int, missing.json["code"]) == (404, "user_not_found")
    extra = _post(testapp, "/api/v1/users/amina/password", {"password": NEW_PASSWORD, "x": 1}, admin)
    assert extra.status_int == 422
    for headers in (accounts.headers("admin", "ocsea"), accounts.headers("coordinator", "ocsea", ["KE"])):
        assert _post(testapp, "/api/v1/users/amina/password", None, headers).status_int == 403
    assert _events(dbsession, "user.password_reset") == []


# ---------------------------------------------------------------------------- admin: unlock


def test_an_admin_sees_a_locked_account_and_unlocks_it(testapp, dbsession, accounts, settings) -> None:
    _user(accounts)
    _user(accounts, "baraka")
    admin = accounts.headers("admin")
    for addr in (HERE, ELSEWHERE):
        for _ in range(settings["surveykit.lockout_threshold"]):
            _login(testapp, "amina", "guessing guessing", addr)
    assert _login(testapp, "amina", PASSWORD).json["code"] == "account_locked"
    listed = {u["username"]: u for u in testapp.get("/api/v1/users", headers=admin).json["users"]}
    assert listed["amina"]["locked_until"] is not None and listed["baraka"]["locked_until"] is None
    assert listed["amina"]["active"] is True
    assert listed["amina"]["grants"][0]["role"] == "coordinator"
    shown = testapp.get("/api/v1/users/amina", headers=admin).json
    assert shown["locked_until"] == listed["amina"]["locked_until"]

    unlocked = _post(testapp, "/api/v1/users/amina/unlock", None, admin)
    assert unlocked.status_int == 200
    assert unlocked.json["locked_until"] is None and unlocked.json["lockouts_cleared"] == 2
    assert testapp.get("/api/v1/users/amina", headers=admin).json["locked_until"] is None
    assert _login(testapp, "amina", PASSWORD).status_int == 200
    assert _login(testapp, "amina", PASSWORD, ELSEWHERE).status_int == 200
    (event,) = _events(dbsession, "user.unlock")
    assert event.target == "amina" and event.details["lockouts_cleared"] == 2
    assert event.details["was_locked_until"] == listed["amina"]["locked_until"]
    # Unlocking an account that is not locked changes nothing and says so.
    again = _post(testapp, "/api/v1/users/baraka/unlock", None, admin)
    assert again.json["lockouts_cleared"] == 0
    assert _post(testapp, "/api/v1/users/nobody/unlock", None, admin).status_int == 404
    testapp.get("/api/v1/users/nobody", headers=admin, status=404)
    coordinator = accounts.headers("coordinator", "ocsea", ["KE"])
    assert _post(testapp, "/api/v1/users/amina/unlock", None, coordinator).status_int == 403
    testapp.get("/api/v1/users", headers=coordinator, status=403)


def test_lock_state_counts_only_running_windows_at_the_threshold(dbsession, accounts) -> None:
    now = utcnow()
    threshold = accounts.policy.lockout_threshold
    for username, attempts, ends in (
        ("locked", threshold, now + timedelta(minutes=5)),
        ("below", threshold - 1, now + timedelta(minutes=5)),
        ("expired", threshold + 3, now - timedelta(seconds=1)),
    ):
        dbsession.add(
            AttemptCounter(
                kind="lockout", client_addr=HERE, username=username, attempts=attempts, window_ends_at=ends
            )
        )
    dbsession.add(
        AttemptCounter(
            kind="login", client_addr=HERE, username="", attempts=99, window_ends_at=now + timedelta(1)
        )
    )
    dbsession.flush()
    assert set(services.locked_accounts(dbsession, accounts.policy, now=now)) == {"locked"}
    assert services.account_lock_state(dbsession, "below", accounts.policy, now) is None
    assert services.account_lock_state(dbsession, "locked", accounts.policy, now) == now + timedelta(
        minutes=5
    )


def _lock(engine: Any, username: str) -> None:
    with Session(engine) as db:
        db.add(
            AttemptCounter(
                kind="lockout",
                client_addr=HERE,
                username=username,
                attempts=50,
                window_ends_at=utcnow() + timedelta(minutes=9),
            )
        )
        db.commit()


@pytest.mark.parametrize("generate", [True, False])
def test_the_cli_sets_a_password_and_unlocks(generate: bool, fresh_database, tmp_path) -> None:
    from test_accounts_cli import CLI, audit_actions

    run = CLI(fresh_database(), tmp_path / "data")
    run.ok("db", "upgrade")
    run.ok("users", "add", "amina", "--password-stdin", input=PASSWORD + "\n")
    engine = create_engine(run.url)
    try:
        _lock(engine, "amina")
        assert "locked until" in run.ok("users", "list")
        if generate:
            output = run.ok("users", "set-password", "amina", "--generate")
            password = output.split("password (shown once): ")[1].strip()
        else:
            assert "at least" in run.fails("users", "set-password", "amina", input="short\nshort\n")
            password = NEW_PASSWORD
            output = run.ok("users", "set-password", "amina", input=f"{password}\n{password}\n")
            assert "shown once" not in output
        assert "password of amina changed" in output
        # The reset cleared the lockout.
        assert "locked" not in run.ok("users", "list")
        _lock(engine, "amina")
        assert "amina unlocked (was locked until" in run.ok("users", "unlock", "amina")
        assert "was not locked" in run.ok("users", "unlock", "amina")
        with Session(engine) as db:
            stored = db.scalar(select(User.password_hash).where(User.username == "amina"))
            assert passwords.verify_password(stored, password)
            assert not passwords.verify_password(stored, PASSWORD)
            actions = audit_actions(db)
        assert actions[-3:] == ["user.password_reset", "user.unlock", "user.unlock"]
        assert "no user" in run.fails("users", "unlock", "nobody")
        assert "no user" in run.fails("users", "set-password", "nobody", "--generate")
    finally:
        engine.dispose()


def test_an_unknown_key_beside_a_password_is_not_echoed(testapp, accounts) -> None:
    user = _user(accounts)
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "new_pasword": "hunter2 hunter2"}
    answer = _post(testapp, "/api/v1/me/password", body, _bearer(accounts.token(user)))
    assert answer.status_int == 422
    assert [d["path"] for d in answer.json["details"]] == ["new_pasword"]
    assert "hunter2" not in answer.text
    reset = _post(
        testapp, "/api/v1/users/amina/password", {"passwd": "hunter2 hunter2"}, accounts.headers("admin")
    )
    assert reset.status_int == 422 and "hunter2" not in reset.text
