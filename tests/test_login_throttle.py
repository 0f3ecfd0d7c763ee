"""Login and activation throttles per client address, the per-account-and-address lockout, the
password verified outside any write transaction, and the audit CLI's escaping of control characters.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import webtest
from click.testing import CliRunner
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from support_db import CommittingApp, bind_to_connection, settings_for

from surveykit import make_app
from surveykit.accounts import passwords, services, throttle
from surveykit.accounts.models import AttemptCounter, User
from surveykit.audit import services as audit
from surveykit.audit.models import AuditEvent
from surveykit.cli import cli
from surveykit.db import begin_write, utcnow

LOGIN = "/api/v1/auth/token"
ACTIVATE = "/api/v1/devices/activate"
PASSWORD = "correct horse battery staple"
_PASSWORD_HASH = passwords.hash_password(PASSWORD)
ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"
LIMITS = {"surveykit.login_rate_limit": 3, "surveykit.activation_rate_limit": 2}


@pytest.fixture(scope="module")
def limited_app(settings: dict[str, Any], engine: Engine) -> Any:
    """The application with low per-address limits (3 logins, 2 activations per window)."""
    return make_app({**settings, **LIMITS, "surveykit.engine": engine})


@pytest.fixture
def limited(limited_app: Any, connection: Any) -> Iterator[webtest.TestApp]:
    replaced = bind_to_connection(limited_app.registry, connection)
    try:
        yield webtest.TestApp(limited_app, extra_environ={"HTTP_HOST": "surveykit.test"})
    finally:
        limited_app.registry.update(replaced)


def user_with_password(accounts: Any, username: str = "amina") -> User:
    user = accounts.user(username, "coordinator", countries=["KE"])
    user.password_hash = _PASSWORD_HASH
    accounts.session.flush()
    return user


def post(app: webtest.TestApp, path: str, body: dict[str, Any], address: str | None = None) -> Any:
    environ = {"REMOTE_ADDR": address} if address else {}
    return app.post_json(path, body, extra_environ=environ, expect_errors=True)


def login(app: webtest.TestApp, username: str, password: str, address: str | None = None) -> Any:
    return post(app, LOGIN, {"username": username, "password": password}, address)


def answer(response: Any) -> tuple[Any, ...]:
    """What a client can tell from a response, with the seconds in it blurred."""
    body = response.json if response.content_type == "application/json" else response.text
    if isinstance(body, dict) and "message" in body:
        body = {**body, "message": re.sub(r"\d+", "N", body["message"])}
    if isinstance(body, dict) and "access_token" in body:
        body = "tokens"
    return response.status_int, json.dumps(body, sort_keys=True), "Retry-After" in response.headers


def events(dbsession: Session, action: str) -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


# --- item 4: throttles per client address -------------------------------------------------------


def test_logins_past_the_address_limit_get_429_with_retry_after_and_are_audited_once(
    limited: webtest.TestApp, dbsession: Session, accounts: Any, settings: dict[str, Any]
) -> None:
    user_with_password(accounts)
    for _ in range(3):
        assert login(limited, "amina", "wrong password!", ATTACKER).status_int == 401
    for password in ("wrong password!", PASSWORD, PASSWORD):
        refused = login(limited, "amina", password, ATTACKER)
        assert refused.status_int == 429, refused.text
        assert refused.json["code"] == "too_many_requests"
        assert set(refused.json) == {"status", "code", "message", "details"}
        window = settings["surveykit.rate_limit_seconds"]
        assert 1 <= int(refused.headers["Retry-After"]) <= window
    # Throttled attempts verify nothing and count nothing towards the account's lockout.
    assert [e.details["reason"] for e in events(dbsession, "auth.login_failed")] == ["bad_password"] * 3
    # Another address is not affected, and the right password works from it.
    assert login(limited, "amina", PASSWORD, OWNER).status_int == 200
    [throttled] = events(dbsession, "auth.throttled")
    assert (throttled.outcome, throttled.target, throttled.remote_addr) == ("refused", "auth_token", ATTACKER)
    assert throttled.details == {"limit": 3, "window_seconds": settings["surveykit.rate_limit_seconds"]}

    # When the window is over, the address may try again.
    dbsession.execute(update(AttemptCounter).values(window_ends_at=utcnow() - timedelta(seconds=1)))
    dbsession.flush()
    assert login(limited, "amina", PASSWORD, ATTACKER).status_int == 200


def test_activations_past_the_address_limit_get_429(
    limited: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    owner = accounts.user("wanjiru", "fieldworker", countries=["KE"])
    _device, code = services.enrol_device(dbsession, owner, "tablet", "tests", accounts.policy)
    dbsession.flush()
    for guess in ("AAAAA-AAAAA", "BBBBB-BBBBB"):
        assert post(limited, ACTIVATE, {"code": guess}, ATTACKER).json["code"] == "enrolment_refused"
    refused = post(limited, ACTIVATE, {"code": code}, ATTACKER)
    assert (refused.status_int, refused.json["code"]) == (429, "too_many_requests")
    assert int(refused.headers["Retry-After"]) >= 1
    # The throttled request did not spend the code: the tablet activates it from its own address.
    assert post(limited, ACTIVATE, {"code": code}, OWNER).status_int == 200
    [throttled] = events(dbsession, "auth.throttled")
    assert (throttled.target, throttled.remote_addr, throttled.details["limit"]) == (
        "device_activate",
        ATTACKER,
        2,
    )


def test_the_limits_are_settings_overridable_from_the_environment() -> None:
    from surveykit.config import load_settings

    defaults = load_settings({}, {})
    assert (
        defaults["surveykit.login_rate_limit"],
        defaults["surveykit.activation_rate_limit"],
        defaults["surveykit.rate_limit_seconds"],
    ) == (30, 30, 60)
    environ = {
        "SURVEYKIT_LOGIN_RATE_LIMIT": "7",
        "SURVEYKIT_ACTIVATION_RATE_LIMIT": "4",
        "SURVEYKIT_RATE_LIMIT_SECONDS": "120",
    }
    policy = throttle.ThrottlePolicy.from_settings(
        load_settings({"surveykit.login_rate_limit": "9"}, environ)
    )
    assert policy == throttle.ThrottlePolicy(login_limit=7, activation_limit=4, window_seconds=120)


def test_expired_counters_are_purged(dbsession: Session) -> None:
    now = utcnow()
    for address in ("192.0.2.1", "192.0.2.2"):
        throttle.count_attempt(dbsession, throttle.LOGIN, address, "", window_seconds=60, now=now)
    throttle.count_attempt(dbsession, throttle.LOGIN, "192.0.2.3", "", window_seconds=600, now=now)
    assert throttle.purge_expired(dbsession, now + timedelta(seconds=61)) == 2
    assert list(dbsession.scalars(select(AttemptCounter.client_addr))) == ["192.0.2.3"]


# --- item 7: same answers for unknown users; lockout per account and address ----------------------


def test_unknown_and_known_usernames_get_the_same_answers_in_the_same_order(
    testapp: webtest.TestApp, accounts: Any, settings: dict[str, Any]
) -> None:
    user_with_password(accounts)
    threshold = settings["surveykit.lockout_threshold"]
    tries = ["wrong password!"] * (threshold + 1) + [PASSWORD, PASSWORD]
    known = [answer(login(testapp, "amina", password)) for password in tries]
    unknown = [answer(login(testapp, "nobody", password)) for password in tries]
    assert known == unknown
    assert [status for status, _body, _retry in known] == [401] * len(tries)
    assert [json.loads(body)["code"] for _status, body, _retry in known] == (
        ["invalid_credentials"] * (threshold - 1) + ["account_locked"] * 4
    )


def test_an_attacker_locks_the_account_only_for_their_own_address(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, settings: dict[str, Any]
) -> None:
    user_with_password(accounts, "admin-root")
    for _ in range(settings["surveykit.lockout_threshold"]):
        login(testapp, "admin-root", "guessing guessing", ATTACKER)
    locked = login(testapp, "admin-root", PASSWORD, ATTACKER)
    assert (locked.status_int, locked.json["code"]) == (401, "account_locked")
    # The owner, elsewhere, logs in; and that does not lift the attacker's lock.
    assert login(testapp, "admin-root", PASSWORD, OWNER).status_int == 200
    assert login(testapp, "admin-root", PASSWORD, ATTACKER).json["code"] == "account_locked"
    failed = events(dbsession, "auth.login_failed")
    assert {e.remote_addr for e in failed} == {ATTACKER}
    assert [e.remote_addr for e in events(dbsession, "auth.login")] == [OWNER]


# --- item 4: no write lock while argon2 runs; item 8: at most the threshold verified --------------


class Server(CommittingApp):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.client = webtest.TestApp(self.app, extra_environ={"HTTP_HOST": "surveykit.test"})
        self.policy = services.AccountPolicy.from_settings(settings)

    def user(self, username: str) -> int:
        with self.factory() as session:
            user = services.create_user(session, username, None, self.policy)
            user.password_hash = _PASSWORD_HASH
            session.commit()
            return user.id


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.fixture
def server(fresh_database: Callable[[], str], tmp_path: Path) -> Iterator[Server]:
    # A short busy timeout: a write that waits for SQLite's lock fails in half a second, not ten.
    server = Server(settings_for(fresh_database(), tmp_path, **{"surveykit.sqlite_busy_timeout_ms": 500}))
    yield server
    server.engine.dispose()


def test_other_writes_proceed_while_a_login_verifies_its_password(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = server.user("amina")
    verifying, release = threading.Event(), threading.Event()
    verify = passwords.verify_password

    def blocking_verify(password_hash: str | None, password: str) -> bool:
        verifying.set()
        release.wait(30)
        return verify(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password", blocking_verify)
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(login(server.client, "amina", PASSWORD)))
    thread.start()
    try:
        assert verifying.wait(30)
        # Another connection writes the very account being logged in, and an audit event.
        with server.factory() as session:
            begin_write(session)
            if server.engine.dialect.name == "postgresql":
                session.execute(text("SET LOCAL lock_timeout = '500ms'"))
                # Nothing of this database sits in an open transaction while argon2 runs.
                waiting = session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                    )
                )
                assert waiting == 0
            session.execute(update(User).where(User.id == user_id).values(created_at=utcnow()))
            audit.record(session, "test.write", actor="tests")
            session.commit()
    finally:
        release.set()
        thread.join(60)
    assert answers[0].status_int == 200, answers[0].text


def test_parallel_wrong_passwords_verify_at_most_the_threshold(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    threshold = server.settings["surveykit.lockout_threshold"]
    parallel = threshold + 3
    verified: list[str | None] = []
    verify = passwords.verify_password

    def counting_verify(password_hash: str | None, password: str) -> bool:
        verified.append(password_hash)
        return verify(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counting_verify)
    for round_ in range(3):
        username = f"racer{round_}"
        server.user(username)
        verified.clear()
        answers = at_once(
            [
                lambda i=i, username=username: login(server.client, username, f"wrong {i}")
                for i in range(parallel)
            ]
        )
        assert len(verified) == threshold, (round_, len(verified))
        codes = sorted(response.json["code"] for response in answers)
        assert codes == ["account_locked"] * (parallel - threshold + 1) + ["invalid_credentials"] * (
            threshold - 1
        )
    with server.factory() as session:
        reasons = session.execute(
            select(AuditEvent.details).where(AuditEvent.action == "auth.login_failed")
        ).scalars()
        counted = sorted(details["reason"] for details in reasons)
        assert counted.count("locked_now") == 3
        assert counted.count("bad_password") == 3 * (threshold - 1)
        assert counted.count("locked") == 3 * (parallel - threshold)
        assert session.scalar(select(func.count()).select_from(AttemptCounter)) == 3 + 1  # + the address


def test_counts_are_shared_by_app_processes_on_one_database(server: Server) -> None:
    second = webtest.TestApp(
        make_app({**server.settings, **LIMITS, "surveykit.engine": server.engine}),
        extra_environ={"HTTP_HOST": "surveykit.test"},
    )
    first = webtest.TestApp(
        make_app({**server.settings, **LIMITS, "surveykit.engine": server.engine}),
        extra_environ={"HTTP_HOST": "surveykit.test"},
    )
    server.user("amina")
    assert [login(app, "amina", "wrong password!").status_int for app in (first, second, first)] == [401] * 3
    assert login(second, "amina", PASSWORD).status_int == 429


# --- item 9: control characters in the audit CLI ------------------------------------------------


def test_the_audit_command_escapes_control_characters(
    fresh_database: Callable[[], str], tmp_path: Path
) -> None:
    url = fresh_database()
    runner = CliRunner()
    env = {"SURVEYKIT_DATA_DIR": str(tmp_path), "SURVEYKIT_ENV": "test", "SURVEYKIT_PUBLIC_URL": ""}
    assert runner.invoke(cli, ["--database-url", url, "db", "upgrade"], env=env).exit_code == 0
    # What an anonymous login may leave behind: its username is the actor and target, as typed.
    planted = "x\x1b[1A\x1b[2K\rreal-admin\x07\x01\x9b2J\u202eevil"
    server = CommittingApp(settings_for(url, tmp_path))
    try:
        with server.factory() as session:
            audit.record(
                session,
                "auth.login_failed",
                actor=planted,
                outcome="refused",
                target=planted,
                details={"reason": "unknown_user", "note": planted},
            )
            session.commit()
            stored = session.scalar(select(AuditEvent.actor))
    finally:
        server.engine.dispose()
    assert stored == planted  # kept as it came
    result = runner.invoke(cli, ["--database-url", url, "audit"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3  # header, rule, the one event: nothing erased or added a line
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", result.output)
    assert set(result.output) & {"\r", "\x1b"} == set()
    assert "x\\x1b[1A\\x1b[2K\\rreal-admin\\x07\\x01\\x9b2J\\u202eevil" in lines[2]
