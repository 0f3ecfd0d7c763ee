"""The embedded SQLite configuration: WAL, foreign keys, busy timeout, and writers that queue."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import webtest
from sqlalchemy import event, text

from surveykit import make_app, migrate
from surveykit.config import load_settings
from surveykit.db import TRANSACTION_MANAGER, make_engine


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> dict[str, Any]:
    return load_settings(
        {}, {"SURVEYKIT_DATA_DIR": str(tmp_path), "SURVEYKIT_ENV": "test", "SURVEYKIT_DATABASE_URL": ""}
    )


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(sqlite_settings: dict[str, Any]) -> None:
    engine = make_engine(sqlite_settings)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            timeout = sqlite_settings["surveykit.sqlite_busy_timeout_ms"]
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == timeout
        assert Path(sqlite_settings["surveykit.data_dir"], "surveykit.sqlite3").exists()
    finally:
        engine.dispose()


def test_write_requests_take_the_sqlite_write_lock_up_front(
    sqlite_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from surveykit.accounts import throttle

    monkeypatch.setattr(throttle, "purge_due", lambda: False)  # the once-a-minute purge: not now
    engine = make_engine(sqlite_settings)
    migrate.upgrade(engine)
    begins: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("BEGIN"):
            begins.append(statement)

    app = webtest.TestApp(make_app({**sqlite_settings, "surveykit.engine": engine}))
    try:
        app.post_json("/api/v1/auth/token", {"username": "nobody", "password": "x" * 12}, status=401)
        # A login reads, counts the attempt in a short write, verifies with no transaction open, and
        # records the answer in the request's own (write) transaction.
        assert begins == ["BEGIN", "BEGIN IMMEDIATE", "BEGIN IMMEDIATE"]
        begins.clear()
        app.get("/api/v1/instruments", headers={"Authorization": "Bearer not-a-token"}, status=401)
        assert begins and all(statement == "BEGIN" for statement in begins)
    finally:
        engine.dispose()


def test_concurrent_writers_on_one_sqlite_file_all_succeed(sqlite_settings: dict[str, Any]) -> None:
    """Failed logins read then write the account: without an immediate lock they collide."""
    from surveykit.accounts import services
    from surveykit.db import make_session_factory

    engine = make_engine(sqlite_settings)
    migrate.upgrade(engine)
    policy = services.AccountPolicy.from_settings(sqlite_settings)
    with make_session_factory(engine).begin() as session:
        services.create_user(session, "target", "correct horse battery", policy)
    app = webtest.TestApp(make_app({**sqlite_settings, "surveykit.engine": engine}))
    statuses: list[int] = []

    def attempt() -> None:
        for _ in range(3):
            response = app.post_json(
                "/api/v1/auth/token",
                {"username": "target", "password": "wrong password!"},
                expect_errors=True,
            )
            statuses.append(response.status_int)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert statuses and set(statuses) == {401}, statuses
        assert len(statuses) == 18
    finally:
        engine.dispose()


def test_a_request_makes_its_session_transaction_manager_and_epoch_read_once(
    app: Any, connection: Any
) -> None:
    """Views hand ``request.dbsession`` to a service and then mark it changed: were a second access
    to give a second session, the service's writes would be rolled back after a 200."""
    reader = app.registry["cache_epoch_reader"]
    reads: list[int] = []

    def counting_reader() -> Any:
        reads.append(1)
        return reader()

    app.registry["cache_epoch_reader"] = counting_reader
    try:
        request = app.request_factory.blank("/api/v1/instruments")
        request.registry = app.registry
        session = request.dbsession
        assert request.dbsession is session
        assert request.tm is request.tm
        assert session.info[TRANSACTION_MANAGER] is request.tm
        assert request.cache_epoch == request.cache_epoch
        assert len(reads) == 1
        session.close()
    finally:
        app.registry["cache_epoch_reader"] = reader
