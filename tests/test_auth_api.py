"""Password login, lockout, refresh-token rotation with reuse detection, logout, and /me."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
import pytest
import webtest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from surveykit.accounts import passwords, services, throttle
from surveykit.accounts.models import AttemptCounter, AuthSession, RefreshToken, User
from surveykit.audit.models import AuditEvent
from surveykit.db import utcnow

LOGIN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/me"
ENVELOPE_KEYS = {"status", "code", "message", "details"}
PASSWORD = "correct horse battery staple"

# Hashing costs tens of milliseconds: hash once, give the hash to every user that logs in.
_PASSWORD_HASH = passwords.hash_password(PASSWORD)


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


def login_user(accounts: Any, username: str = "amina", role: str = "coordinator") -> User:
    user = accounts.user(username, role, countries=["KE"])
    user.password_hash = _PASSWORD_HASH
    accounts.session.flush()
    return user


def login(testapp: webtest.TestApp, username: str, password: str = PASSWORD, **kw: Any) -> Any:
    return testapp.post_json(LOGIN, {"username": username, "password": password}, **kw)


def pair_for(accounts: Any, user: User) -> services.TokenPair:
    pair = services.start_session(accounts.session, user, accounts.tokens, accounts.policy)
    accounts.session.flush()
    return pair


def lockout_counts(dbsession: Session) -> dict[str, int]:
    """Attempts counted towards each username's lockout (all addresses)."""
    dbsession.expire_all()
    rows = dbsession.execute(
        select(AttemptCounter.username, AttemptCounter.attempts).where(AttemptCounter.kind == "lockout")
    )
    counts: dict[str, int] = {}
    for username, attempts in rows:
        counts[username] = counts.get(username, 0) + attempts
    return counts


def lockout_window_end(dbsession: Session, username: str) -> Any:
    dbsession.expire_all()
    return dbsession.scalar(
        select(AttemptCounter.window_ends_at).where(
            AttemptCounter.kind == "lockout", AttemptCounter.username == username
        )
    )


def reload(dbsession: Session, user: User) -> User:
    dbsession.expire_all()
    return dbsession.get(User, user.id)


# --- login ------------------------------------------------------------------------------------


def test_login_returns_an_access_and_a_refresh_token(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, settings: dict[str, Any]
) -> None:
    user = login_user(accounts)
    response = login(testapp, "amina")
    body = response.json
    assert set(body) == {"token_type", "access_token", "expires_in", "refresh_token", "refresh_expires_at"}
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= settings["surveykit.access_token_seconds"]
    # Token responses must never be cached (RFC 6749 section 5.1).
    assert response.headers["Cache-Control"] == "no-store"
    me = testapp.get(ME, headers=bearer(body["access_token"])).json
    assert me == {
        "username": "amina",
        "device_id": None,
        "grants": [{"role": "coordinator", "study": "ocsea", "countries": ["KE"]}],
    }
    # The refresh token is stored only as a hash.
    stored = list(dbsession.scalars(select(RefreshToken.token_hash)))
    assert len(stored) == 1 and stored[0] != body["refresh_token"]
    assert body["refresh_token"] not in stored[0]
    assert reload(dbsession, user).last_login_at is not None
    [event] = audit_events(dbsession, "auth.login")
    assert (event.actor, event.outcome, event.target) == ("amina", "success", "amina")


def test_a_misspelled_key_is_reported_without_echoing_its_value(testapp: webtest.TestApp) -> None:
    """A password typed under the wrong key must not come back in the error (nor reach its logs)."""
    secret = "hunter2-never-echo-me"
    for path, body in [
        (LOGIN, {"username": "amina", "pasword": secret}),
        (REFRESH, {"refresh_tokn": secret}),
        ("/api/v1/devices/activate", {"code": "ABCD", "cod": secret}),
    ]:
        response = testapp.post_json(path, body, status=422)
        assert secret not in response.text
        paths = {problem["path"] for problem in response.json["details"]}
        assert set(body) - {"username", "code"} <= paths


def test_wrong_password_and_unknown_user_get_the_same_answer(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    user = login_user(accounts)
    wrong = assert_envelope(
        login(testapp, "amina", "not the right password", status=401), 401, "invalid_credentials"
    )
    unknown = assert_envelope(login(testapp, "nobody", PASSWORD, status=401), 401, "invalid_credentials")
    assert wrong == unknown
    # Each name's attempts from this address are counted, the unknown one's too.
    assert lockout_counts(dbsession) == {"amina": 1, "nobody": 1}
    assert reload(dbsession, user).last_login_at is None
    events = audit_events(dbsession, "auth.login_failed")
    assert [(e.actor, e.outcome, e.details["reason"]) for e in events] == [
        ("amina", "refused", "bad_password"),
        ("nobody", "refused", "unknown_user"),
    ]
    assert audit_events(dbsession, "auth.login") == []


def test_a_deactivated_user_cannot_log_in(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    user = login_user(accounts)
    services.deactivate_user(dbsession, user)
    dbsession.flush()
    assert_envelope(login(testapp, "amina", status=401), 401, "invalid_credentials")
    [event] = audit_events(dbsession, "auth.login_failed")
    assert event.details["reason"] == "inactive"
    assert dbsession.scalar(select(AuthSession.id)) is None


@pytest.mark.parametrize(
    "body",
    [
        {"username": "amina"},
        {"password": PASSWORD},
        {"username": "amina", "password": ""},
        {"username": "amina", "password": PASSWORD, "extra": 1},
        {"username": ["amina"], "password": PASSWORD},
    ],
)
def test_malformed_login_bodies_are_invalid_input(
    body: dict[str, Any], testapp: webtest.TestApp, accounts: Any
) -> None:
    login_user(accounts)
    assert_envelope(testapp.post_json(LOGIN, body, status=422), 422, "invalid_input")


def test_lockout_after_repeated_failures_and_its_expiry(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, settings: dict[str, Any]
) -> None:
    threshold = settings["surveykit.lockout_threshold"]
    lockout_seconds = settings["surveykit.lockout_seconds"]
    login_user(accounts)
    for _ in range(threshold - 1):
        assert_envelope(login(testapp, "amina", "wrong password!", status=401), 401, "invalid_credentials")
    assert lockout_counts(dbsession) == {"amina": threshold - 1}

    response = login(testapp, "amina", "wrong password!", status=401)
    body = assert_envelope(response, 401, "account_locked")
    retry_after = int(response.headers["Retry-After"])
    assert lockout_seconds - 5 <= retry_after <= lockout_seconds
    assert str(retry_after) in body["message"]
    locked_until = lockout_window_end(dbsession, "amina")
    assert locked_until > utcnow()

    # The right password is refused while the lock lasts, and does not lift it.
    response = login(testapp, "amina", PASSWORD, status=401)
    assert_envelope(response, 401, "account_locked")
    assert int(response.headers["Retry-After"]) <= retry_after
    assert lockout_window_end(dbsession, "amina") == locked_until

    events = audit_events(dbsession, "auth.login_failed")
    assert [e.details["reason"] for e in events] == ["bad_password"] * (threshold - 1) + [
        "locked_now",
        "locked",
    ]
    assert events[threshold - 1].details["failure"] == "bad_password"

    # Once the lock has expired the right password works again and clears the count.
    dbsession.execute(update(AttemptCounter).values(window_ends_at=utcnow() - timedelta(seconds=1)))
    dbsession.flush()
    assert login(testapp, "amina").json["access_token"]
    assert lockout_counts(dbsession) == {}


def test_lock_expiry_through_the_service(dbsession: Session, connection: Any, accounts: Any) -> None:
    user = login_user(accounts)
    policy = services.AccountPolicy(
        password_min_length=12,
        lockout_threshold=2,
        lockout_seconds=60,
        refresh_seconds=60,
        device_refresh_seconds=60,
        enrolment_seconds=60,
    )
    throttle_policy = throttle.ThrottlePolicy(login_limit=100, activation_limit=100, window_seconds=60)

    def sessions() -> Session:
        return Session(bind=connection, join_transaction_mode="create_savepoint")

    def authenticate(password: str, now: Any) -> services.VerifiedLogin:
        return services.authenticate(sessions, "amina", password, "192.0.2.1", policy, throttle_policy, now)

    now = utcnow()
    with pytest.raises(services.LoginRefused, match="bad_password"):
        authenticate("nope-nope-nope", now)
    with pytest.raises(services.LoginRefused, match="locked_now") as locked:
        authenticate("nope-nope-nope", now + timedelta(seconds=10))
    # The lock lasts its full length from the attempt that set it.
    assert locked.value.locked_until == now + timedelta(seconds=70)
    with pytest.raises(services.LoginRefused, match="locked"):
        authenticate(PASSWORD, now + timedelta(seconds=69))
    verified = authenticate(PASSWORD, now + timedelta(seconds=71))
    assert services.complete_login(dbsession, verified, now + timedelta(seconds=71)) is user
    assert user.last_login_at == now + timedelta(seconds=71)
    assert lockout_counts(dbsession) == {}


def test_password_rules_on_create(dbsession: Session, accounts: Any, settings: dict[str, Any]) -> None:
    minimum = settings["surveykit.password_min_length"]
    for password in ("x" * (minimum - 1), " " + "x" * minimum, "x" * minimum + "\n", "x" * 1025):
        with pytest.raises(services.AccountError) as refused:
            services.create_user(dbsession, "shorty", password, accounts.policy)
        assert refused.value.field == "password"
    assert dbsession.scalar(select(User.id).where(User.username == "shorty")) is None
    for username in ("ab", "Upper", "-dash", "has space", "x" * 65):
        with pytest.raises(services.AccountError) as refused:
            services.create_user(dbsession, username, None, accounts.policy)
        assert refused.value.field == "username"
    user = services.create_user(dbsession, "longenough", "y" * minimum, accounts.policy)
    assert passwords.verify_password(user.password_hash, "y" * minimum)
    assert not passwords.verify_password(user.password_hash, "y" * (minimum + 1))
    with pytest.raises(services.AccountError, match="already exists"):
        services.create_user(dbsession, "longenough", None, accounts.policy)


def test_a_user_without_a_password_cannot_log_in(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    accounts.user("nopass", "analyst")
    assert_envelope(login(testapp, "nopass", PASSWORD, status=401), 401, "invalid_credentials")


# --- refresh ----------------------------------------------------------------------------------


def test_refresh_rotates_the_pair(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, settings: dict[str, Any]
) -> None:
    user = accounts.user(role="analyst", countries=["KE"])
    first = pair_for(accounts, user)
    response = testapp.post_json(REFRESH, {"refresh_token": first.refresh_token})
    assert response.headers["Cache-Control"] == "no-store"
    second = response.json
    assert second["refresh_token"] != first.refresh_token
    assert second["access_token"] != first.access_token
    assert testapp.get(ME, headers=bearer(second["access_token"])).json["username"] == user.username
    # Same session (family), new token.
    claims = jwt.decode(
        second["access_token"],
        settings["surveykit.jwt_keys"]["k1"],
        algorithms=["HS256"],
        audience=settings["surveykit.jwt_audience"],
        issuer=settings["surveykit.jwt_issuer"],
    )
    assert claims["sid"] == first.session_id
    third = testapp.post_json(REFRESH, {"refresh_token": second["refresh_token"]}).json
    assert testapp.get(ME, headers=bearer(third["access_token"])).json["username"] == user.username
    events = audit_events(dbsession, "auth.refresh")
    assert [(e.actor, e.target) for e in events] == [(user.username, first.session_id)] * 2


def test_a_rotated_refresh_token_presented_again_kills_the_family(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    user = accounts.user(role="fieldworker", countries=["KE"])
    first = pair_for(accounts, user)
    unrelated = pair_for(accounts, user)  # another login of the same person
    second = testapp.post_json(REFRESH, {"refresh_token": first.refresh_token}).json
    third = testapp.post_json(REFRESH, {"refresh_token": second["refresh_token"]}).json

    # The thief replays the first (already rotated) refresh token.
    body = assert_envelope(
        testapp.post_json(REFRESH, {"refresh_token": first.refresh_token}, status=401),
        401,
        "refresh_refused",
    )
    assert "already used" in body["message"]
    [event] = audit_events(dbsession, "auth.refresh_reuse_detected")
    assert (event.outcome, event.actor, event.target) == ("refused", user.username, first.session_id)
    assert event.details == {"reason": "reused"}

    # Every token of that family is dead now: the newest refresh token and all access tokens.
    assert_envelope(
        testapp.post_json(REFRESH, {"refresh_token": third["refresh_token"]}, status=401),
        401,
        "refresh_refused",
    )
    for access in (first.access_token, second["access_token"], third["access_token"]):
        assert_envelope(testapp.get(ME, headers=bearer(access), status=401), 401, "unauthenticated")
    reasons = {e.details["reason"] for e in audit_events(dbsession, "auth.token_refused")}
    assert reasons == {"session_revoked"}
    dbsession.expire_all()
    family = dbsession.get(AuthSession, first.session_id)
    assert family.revoked_at is not None and family.revoked_reason == "refresh token reused"

    # The person's other session is untouched.
    assert testapp.get(ME, headers=bearer(unrelated.access_token)).json["username"] == user.username
    assert testapp.post_json(REFRESH, {"refresh_token": unrelated.refresh_token}).status_int == 200


def test_an_expired_refresh_token_is_refused(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    user = accounts.user(role="analyst")
    pair = pair_for(accounts, user)
    dbsession.execute(
        update(RefreshToken)
        .where(RefreshToken.session_id == pair.session_id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    dbsession.flush()
    body = assert_envelope(
        testapp.post_json(REFRESH, {"refresh_token": pair.refresh_token}, status=401),
        401,
        "refresh_refused",
    )
    assert "expired" in body["message"]
    [event] = audit_events(dbsession, "auth.refresh_refused")
    assert event.details == {"reason": "expired"}


def test_an_unknown_refresh_token_is_refused(testapp: webtest.TestApp, dbsession: Session) -> None:
    assert_envelope(
        testapp.post_json(REFRESH, {"refresh_token": "made-up-token"}, status=401), 401, "refresh_refused"
    )
    [event] = audit_events(dbsession, "auth.refresh_refused")
    assert (event.actor, event.details) == ("anonymous", {"reason": "unknown"})


def test_refresh_of_a_deactivated_user_is_refused(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    user = accounts.user(role="analyst")
    pair = pair_for(accounts, user)
    services.deactivate_user(dbsession, user)
    dbsession.flush()
    assert_envelope(
        testapp.post_json(REFRESH, {"refresh_token": pair.refresh_token}, status=401), 401, "refresh_refused"
    )
    assert_envelope(testapp.get(ME, headers=bearer(pair.access_token), status=401), 401, "unauthenticated")
    [event] = audit_events(dbsession, "auth.token_refused")
    assert event.details == {"reason": "inactive"}


# --- logout -----------------------------------------------------------------------------------


def test_logout_with_the_access_token_ends_the_session(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    user = accounts.user(role="analyst")
    pair = pair_for(accounts, user)
    other = pair_for(accounts, user)
    response = testapp.post(LOGOUT, headers=bearer(pair.access_token), status=204)
    assert response.body == b""
    assert_envelope(testapp.get(ME, headers=bearer(pair.access_token), status=401), 401, "unauthenticated")
    assert_envelope(
        testapp.post_json(REFRESH, {"refresh_token": pair.refresh_token}, status=401), 401, "refresh_refused"
    )
    assert testapp.get(ME, headers=bearer(other.access_token)).status_int == 200
    [event] = audit_events(dbsession, "auth.logout")
    assert (event.actor, event.target) == (user.username, pair.session_id)


def test_logout_with_the_refresh_token_ends_the_session(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    user = accounts.user(role="analyst")
    pair = pair_for(accounts, user)
    testapp.post_json(LOGOUT, {"refresh_token": pair.refresh_token}, status=204)
    assert_envelope(testapp.get(ME, headers=bearer(pair.access_token), status=401), 401, "unauthenticated")
    [event] = audit_events(dbsession, "auth.logout")
    assert (event.actor, event.target) == ("anonymous", pair.session_id)


def test_logout_without_any_token_is_refused(testapp: webtest.TestApp) -> None:
    assert_envelope(testapp.post(LOGOUT, status=401), 401, "unauthenticated")
    assert_envelope(
        testapp.post_json(LOGOUT, {"refresh_token": "unknown"}, status=401), 401, "unauthenticated"
    )


def test_logging_in_twice_gives_independent_sessions(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    login_user(accounts)
    first = login(testapp, "amina").json
    second = login(testapp, "amina").json
    testapp.post(LOGOUT, headers=bearer(first["access_token"]), status=204)
    assert testapp.get(ME, headers=bearer(second["access_token"])).status_int == 200
    assert testapp.get(ME, headers=bearer(first["access_token"]), status=401)
