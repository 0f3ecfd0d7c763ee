"""The cache epoch: what renews it, what does not, and that processes remembering access checks and
current instrument versions still see a revocation or a new version on the very next request."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import webtest
from instrument_samples import minimal_definition
from sqlalchemy import event, text, update
from sqlalchemy.orm import Session
from support_db import settings_for

from surveykit import make_app, migrate
from surveykit.accounts import policy as policy_module
from surveykit.accounts import services as account_services
from surveykit.accounts import throttle
from surveykit.accounts.models import AuthSession, Device, Grant, User
from surveykit.accounts.tokens import TokenSettings
from surveykit.cache_epoch import MISSING, EpochCache
from surveykit.db import make_engine, make_session_factory, utcnow
from surveykit.instruments import from_memory
from surveykit.instruments import services as instruments
from surveykit.logs import ACCESS_LOGGER
from surveykit.studies.models import Study


def epoch(session: Session) -> int:
    return session.execute(text("SELECT value FROM cache_epoch WHERE id = 1")).scalar_one()


def renews(session: Session, change: Callable[[], Any]) -> bool:
    before = epoch(session)
    change()
    session.flush()
    return epoch(session) != before


@pytest.fixture
def fieldworker(dbsession: Session, accounts: Any) -> User:
    return accounts.user("wanjiru", "fieldworker", "ocsea", ["KE"])


def test_each_change_an_access_check_depends_on_renews_the_epoch(
    dbsession: Session, accounts: Any, fieldworker: User
) -> None:
    policy = accounts.policy
    device, _code = accounts_enrolment(dbsession, fieldworker, policy)
    accounts.token(fieldworker)
    session_row = dbsession.query(AuthSession).filter_by(user_id=fieldworker.id).one()
    grant = dbsession.query(Grant).filter_by(user_id=fieldworker.id).one()
    study = dbsession.query(Study).filter_by(slug="ocsea").one()

    assert renews(dbsession, lambda: setattr(session_row, "revoked_at", utcnow()))
    assert renews(dbsession, lambda: account_services.revoke_device(dbsession, device))
    assert renews(dbsession, lambda: setattr(grant, "countries", ["KE", "TZ"]))
    assert renews(
        dbsession, lambda: account_services.add_grant(dbsession, fieldworker, "analyst", "ocsea", None, "t")
    )
    assert renews(dbsession, lambda: dbsession.delete(grant))
    assert renews(dbsession, lambda: setattr(fieldworker, "username", "wanjiru-k"))
    assert renews(dbsession, lambda: setattr(study, "slug", "ocsea-2"))
    assert renews(dbsession, lambda: account_services.deactivate_user(dbsession, fieldworker))


def test_publishing_and_retiring_an_instrument_renew_the_epoch(dbsession: Session) -> None:
    definition = instruments.validate_definition(minimal_definition("epoch-sample"))
    assert renews(dbsession, lambda: instruments.publish(dbsession, definition))
    changed = minimal_definition("epoch-sample")
    changed["title"] = {"en": "A second version"}
    assert renews(dbsession, lambda: instruments.publish(dbsession, instruments.validate_definition(changed)))
    assert renews(dbsession, lambda: instruments.retire(dbsession, "epoch-sample"))


def test_everyday_writes_leave_the_epoch_alone(dbsession: Session, accounts: Any, fieldworker: User) -> None:
    """Logins, token refreshes, last-seen times and failed-login counters happen all day long; if
    they renewed the epoch, no process could keep anything in memory."""
    device, _code = accounts_enrolment(dbsession, fieldworker, accounts.policy)
    assert not renews(dbsession, lambda: accounts.token(fieldworker))
    assert not renews(
        dbsession,
        lambda: dbsession.execute(update(Device).where(Device.id == device.id).values(last_seen_at=utcnow())),
    )
    assert not renews(
        dbsession,
        lambda: throttle.count_attempt(
            dbsession, throttle.LOCKOUT, "192.0.2.1", fieldworker.username, window_seconds=60, now=utcnow()
        ),
    )
    assert not renews(dbsession, lambda: setattr(fieldworker, "last_login_at", utcnow()))
    # Naming a column in SET without changing it is no change either.
    assert not renews(dbsession, lambda: dbsession.execute(update(User).values(active=User.active)))


def test_the_epoch_cache_only_answers_under_the_epoch_a_value_was_stored_under() -> None:
    cache = EpochCache(max_entries=2)
    cache.put("a", 7, "seven")
    assert cache.get("a", 7) == "seven"
    assert cache.get("a", 8) is MISSING
    assert cache.get("b", 7) is MISSING
    cache.put("none", None, "never kept")  # an unmigrated database has no epoch: nothing is kept
    assert cache.get("none", None) is MISSING
    cache.put("b", 7, "b")
    cache.put("c", 7, "c")  # over the limit: the cache starts again rather than grow
    assert len(cache) == 1 and cache.get("c", 7) == "c"


def accounts_enrolment(session: Session, user: User, policy: Any) -> tuple[Device, str]:
    device, code = account_services.enrol_device(session, user, "tablet", "tests", policy)
    session.flush()
    return device, code


# ------------------------------------------------------------- two processes on one committed database


class Process:
    """One application with its own engine, pools and memory, as a second server process has."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.engine = make_engine(settings)
        self.app = make_app({**settings, "surveykit.engine": self.engine})
        self.client = webtest.TestApp(self.app, extra_environ={"HTTP_HOST": "surveykit.test"})
        self.statements: list[str] = []
        event.listen(self.engine, "before_cursor_execute", self._count)
        self.reader = self.app.registry["cache_epoch_reader"]

    def _count(self, _conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def close(self) -> None:
        self.reader.dispose()
        self.engine.dispose()


@pytest.fixture
def two_processes(fresh_database: Callable[[], str], tmp_path: Any) -> Iterator[tuple[Process, Process, Any]]:
    settings = settings_for(fresh_database(), tmp_path)
    setup_engine = make_engine(settings)
    migrate.upgrade(setup_engine)
    factory = make_session_factory(setup_engine)
    policy = account_services.AccountPolicy.from_settings(settings)
    tokens = TokenSettings.from_settings(settings)
    with factory() as session:
        from surveykit.studies import services as studies

        study = studies.create_study(session, "ocsea", "OCSEA")
        studies.add_country(session, study, "KE", "Kenya")
        fieldworker = account_services.create_user(session, "wanjiru", None, policy)
        account_services.add_grant(session, fieldworker, "fieldworker", "ocsea", ["KE"], "tests")
        admin = account_services.create_user(session, "root", None, policy)
        account_services.add_grant(session, admin, "admin", None, None, "tests")
        session.flush()
        _device, code = account_services.enrol_device(session, fieldworker, "tablet", "tests", policy)
        device, pair = account_services.activate_device(session, code, tokens, policy)
        admin_pair = account_services.start_session(session, admin, tokens, policy)
        definition = minimal_definition("two-process-sample")
        definition["study"] = "ocsea"
        instruments.publish(session, instruments.validate_definition(definition))
        session.commit()
        state = {
            "device": device.id,
            "tablet": {"Authorization": f"Bearer {pair.access_token}"},
            "admin": {"Authorization": f"Bearer {admin_pair.access_token}"},
            "definition": definition,
        }
    setup_engine.dispose()
    first, second = Process(settings), Process(settings)
    try:
        yield first, second, state
    finally:
        first.close()
        second.close()


PATH = "/api/v1/instruments/two-process-sample"


def test_a_remembered_check_costs_one_epoch_read_and_no_other_statement(two_processes: Any) -> None:
    first, _second, state = two_processes
    etag = first.client.get(PATH, headers=state["tablet"]).headers["ETag"]
    first.statements.clear()
    first.client.get(PATH, headers={**state["tablet"], "If-None-Match": etag}, status=304)
    # The epoch is read on the reader's own connection; the request opens no transaction at all.
    assert first.statements == [] or all("cache_epoch" in s for s in first.statements)
    assert sum("cache_epoch" in s for s in first.statements) <= 1


def test_a_device_revoked_through_one_process_is_refused_by_the_other_at_once(two_processes: Any) -> None:
    first, second, state = two_processes
    assert second.client.get(PATH, headers=state["tablet"]).status_int == 200
    assert second.client.get(PATH, headers=state["tablet"]).status_int == 200  # now remembered

    first.client.delete(f"/api/v1/devices/{state['device']}", headers=state["admin"], status=200)

    body = second.client.get(PATH, headers=state["tablet"], status=401).json
    assert body["code"] == "unauthenticated" and "revoked" in body["message"]


def test_a_version_published_through_one_process_is_served_by_the_other_at_once(two_processes: Any) -> None:
    first, second, state = two_processes
    old = second.client.get(PATH, headers=state["tablet"])
    assert old.json["version"] == 1
    second.client.get(PATH, headers={**state["tablet"], "If-None-Match": old.headers["ETag"]}, status=304)

    changed = dict(state["definition"], title={"en": "Second version"})
    first.client.post_json("/api/v1/instruments", changed, headers=state["admin"], status=201)

    # The tablet's ETag no longer matches: it gets the new version, not a 304.
    new = second.client.get(PATH, headers={**state["tablet"], "If-None-Match": old.headers["ETag"]})
    assert new.status_int == 200 and new.json["version"] == 2
    assert new.headers["ETag"] != old.headers["ETag"]


def test_a_grant_taken_away_directly_in_the_database_is_seen_at_once(two_processes: Any) -> None:
    """The triggers, not the services, renew the epoch: even a change made by hand is seen."""
    _first, second, state = two_processes
    second.client.get(PATH, headers=state["tablet"], status=200)
    with second.engine.begin() as connection:
        connection.execute(text("DELETE FROM grants WHERE role = 'fieldworker'"))
    body = second.client.get(PATH, headers=state["tablet"], status=403).json
    assert body["code"] == "forbidden"


def test_the_epoch_reader_replaces_a_connection_the_server_dropped(two_processes: Any, backend: str) -> None:
    """Each thread keeps its reader connection; when the server drops it (a restart, an idle
    timeout), the next read opens another at once instead of failing the request."""
    first, _second, state = two_processes
    reader = first.reader
    value = reader()
    assert value is not None and first.client.get(PATH, headers=state["tablet"]).status_int == 200
    kept = reader._local.raw
    if backend == "postgresql":
        pid = kept.driver_connection.info.backend_pid
        with first.engine.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    else:
        kept.driver_connection.close()  # what a dropped file handle looks like to sqlite3
    assert reader() == value
    assert reader._local.raw is not kept
    assert first.client.get(PATH, headers=state["tablet"]).status_int == 200


# ------------------------------------------------------------------------ answered from memory


@pytest.fixture
def from_memory_answers(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What ``answer_from_memory`` gave for each request that reached it (None: the usual way)."""
    given: list[Any] = []
    real = from_memory.answer_from_memory

    def recording(*args: Any) -> Any:
        answer = real(*args)
        given.append(answer)
        return answer

    monkeypatch.setattr(from_memory, "answer_from_memory", recording)
    return given


def comparable(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((name, value) for name, value in response.headerlist if name != "X-Request-ID")
    return response.status_int, headers, response.body


def test_a_remembered_check_is_answered_from_memory_exactly_as_the_usual_way_answers_it(
    two_processes: Any, from_memory_answers: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _second, state = two_processes
    cold = first.client.get(PATH, headers=state["tablet"])
    assert from_memory_answers == [None]  # nothing remembered yet: the usual way answered
    etag = cold.headers["ETag"].strip('"')
    gzip_etag = first.client.get(PATH, headers={**state["tablet"], "Accept-Encoding": "gzip"}).headers["ETag"]
    variants = {
        "plain": {},
        "gzip": {"Accept-Encoding": "gzip"},
        "held": {"If-None-Match": f'"{etag}"'},
        "held, weak": {"If-None-Match": f'W/"{etag}"'},
        "held, among others": {"If-None-Match": f'"other", "{etag}"'},
        "held gzip": {"If-None-Match": gzip_etag, "Accept-Encoding": "gzip"},
        "anything held": {"If-None-Match": "*"},
        "stale": {"If-None-Match": '"0000-v0"', "Accept-Encoding": "gzip"},
    }
    for name, extra in variants.items():
        headers = {**state["tablet"], **extra}
        with monkeypatch.context() as usual_way:
            usual_way.setattr(from_memory, "answer_from_memory", lambda *args: None)
            usual = first.client.get(PATH, headers=headers, status="*")
        from_memory_answers.clear()
        remembered = first.client.get(PATH, headers=headers, status="*")
        assert from_memory_answers and from_memory_answers[-1] is not None, name
        assert comparable(remembered) == comparable(usual), name
        assert remembered.status_int == (304 if "held" in name else 200), name
        assert len(remembered.headers["X-Request-ID"]) == 32


def test_an_answer_from_memory_has_its_access_line(
    two_processes: Any, from_memory_answers: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    first, _second, state = two_processes
    etag = first.client.get(PATH, headers=state["tablet"]).headers["ETag"]
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    caplog.clear()
    response = first.client.get(PATH, headers={**state["tablet"], "If-None-Match": etag}, status=304)
    assert from_memory_answers[-1] is not None
    [line] = [record for record in caplog.records if record.name == ACCESS_LOGGER]
    assert line.access["route"] == "instrument" and line.access["status"] == 304
    assert line.access["user_id"] is not None and line.access["device_id"] == state["device"]
    assert line.request_id == response.headers["X-Request-ID"]


def test_what_memory_does_not_hold_or_answer_takes_the_usual_way(
    two_processes: Any, from_memory_answers: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _second, state = two_processes
    tablet = state["tablet"]
    first.client.get(PATH, headers=tablet, status=200)
    first.client.get(PATH, headers=tablet, status=200)
    assert from_memory_answers[-1] is not None  # remembered from here on
    cases = [
        ("a query string", f"{PATH}?lang=en", tablet, "GET", 200),
        ("a numbered version", f"{PATH}/versions/1", tablet, "GET", 200),
        ("another route under the prefix", "/api/v1/instruments/validate", tablet, "GET", None),
        ("an unknown instrument", "/api/v1/instruments/no-such-instrument", tablet, "GET", 404),
        ("no token", PATH, {}, "GET", 401),
        ("a bad token", PATH, {"Authorization": "Bearer not-a-token"}, "GET", 401),
        ("HEAD", PATH, tablet, "HEAD", 200),
    ]
    for name, path, headers, method, status in cases:
        from_memory_answers.clear()
        response = first.client.request(path, method=method, headers=headers, expect_errors=True)
        assert from_memory_answers in ([], [None]), name
        if status is not None:
            assert response.status_int == status, name
        assert response.content_type in ("application/json", ""), name

    # A tablet whose last-seen time is due goes the usual way, which records it.
    monkeypatch.setattr(policy_module, "device_seen_long_ago", lambda *args: True)
    from_memory_answers.clear()
    first.client.get(PATH, headers=tablet, status=200)
    assert from_memory_answers == [None]


def test_a_revocation_is_seen_by_a_process_answering_from_memory_at_once(
    two_processes: Any, from_memory_answers: list[Any]
) -> None:
    first, second, state = two_processes
    etag = second.client.get(PATH, headers=state["tablet"]).headers["ETag"]
    held = {**state["tablet"], "If-None-Match": etag}
    second.client.get(PATH, headers=held, status=304)
    assert from_memory_answers[-1] is not None and from_memory_answers[-1].status_int == 304

    with second.engine.begin() as connection:  # a grant taken away by hand: only the trigger knows
        connection.execute(text("DELETE FROM grants WHERE role = 'fieldworker'"))
    assert second.client.get(PATH, headers=held, status=403).json["code"] == "forbidden"
    assert from_memory_answers[-1] is None

    first.client.delete(f"/api/v1/devices/{state['device']}", headers=state["admin"], status=200)
    body = second.client.get(PATH, headers=held, status=401).json
    assert body["code"] == "unauthenticated" and "revoked" in body["message"]
    assert from_memory_answers[-1] is None


def test_a_failure_while_answering_from_memory_leaves_the_answer_to_the_usual_way(
    two_processes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _second, state = two_processes
    etag = first.client.get(PATH, headers=state["tablet"]).headers["ETag"]

    def broken(self: Any, request: Any) -> None:
        raise RuntimeError("the memory path failed")

    monkeypatch.setattr(policy_module.TokenSecurityPolicy, "remembered_identity", broken)
    response = first.client.get(PATH, headers={**state["tablet"], "If-None-Match": etag}, status=304)
    assert response.headers["ETag"] == etag


def test_a_caller_remembered_without_the_instruments_study_is_refused_as_the_usual_way_refuses(
    two_processes: Any, from_memory_answers: list[Any]
) -> None:
    """Caller and instrument both remembered under one epoch: the access rule still decides."""
    first, _second, state = two_processes
    settings = first.app.registry.settings
    policy = account_services.AccountPolicy.from_settings(settings)
    with make_session_factory(first.engine)() as session:
        from surveykit.studies import services as studies

        other = studies.create_study(session, "other", "Other study")
        studies.add_country(session, other, "KE", "Kenya")
        outsider = account_services.create_user(session, "outsider", None, policy)
        account_services.add_grant(session, outsider, "fieldworker", "other", ["KE"], "tests")
        pair = account_services.start_session(
            session, outsider, TokenSettings.from_settings(settings), policy
        )
        session.commit()
    outsider_headers = {"Authorization": f"Bearer {pair.access_token}"}
    etag = first.client.get(PATH, headers=state["tablet"]).headers["ETag"]  # the instrument, remembered
    usual = first.client.get(PATH, headers={**outsider_headers, "If-None-Match": etag}, status=403)
    from_memory_answers.clear()
    again = first.client.get(PATH, headers={**outsider_headers, "If-None-Match": etag}, status=403)
    assert from_memory_answers == [None]
    assert again.json == usual.json and again.json["code"] == "forbidden"


def test_the_router_events_an_answer_from_memory_skips_have_no_subscriber_it_would_miss(app: Any) -> None:
    """An answer from memory is given before routing, so NewRequest, BeforeTraversal and
    ContextFound are not sent for it. Today only the URL text rule listens to one of them, and a
    remembered slug always passes it; a new subscriber needs a look at ``from_memory`` first."""
    from pyramid.events import BeforeTraversal, ContextFound, NewRequest, NewResponse
    from zope.interface import implementedBy

    skipped = {implementedBy(event): event for event in (NewRequest, BeforeTraversal, ContextFound)}
    every = [(handler.required[0], handler.factory.__name__) for handler in app.registry.registeredHandlers()]
    listening = {(skipped[spec], name) for spec, name in every if spec in skipped}
    assert listening == {(BeforeTraversal, "refuse_unusable_url_text")}
    # The check itself sees subscribers: the console's NewResponse one is there.
    assert (implementedBy(NewResponse), "add_security_headers") in every
