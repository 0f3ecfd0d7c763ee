"""Test fixtures: one throwaway database per run, built by the migrations, and a rollback per test.

The backend is chosen by ``SURVEYKIT_TEST_DATABASE_URL``:
- unset: a SQLite file in a temporary folder;
- a PostgreSQL URL (``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``): the server is used only
  to create a uniquely named database for this run, which is dropped at the end.

With ``SURVEYKIT_TEST_FORBID_SKIPS=1`` a run that skipped anything fails (CI sets it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import webtest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from support_db import Accounts, DatabaseFactory, bind_to_connection, settings_for

from surveykit import make_app, migrate
from surveykit.db import make_engine


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("SURVEYKIT_TEST_FORBID_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"SURVEYKIT_TEST_FORBID_SKIPS: {len(skipped)} test(s) skipped; failing the run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(
        os.environ.get("SURVEYKIT_TEST_DATABASE_URL"), tmp_path_factory.mktemp("databases")
    )
    yield factory
    factory.drop_all()


@pytest.fixture(scope="session")
def backend(databases: DatabaseFactory) -> str:
    return databases.backend


@pytest.fixture(scope="session")
def settings(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return settings_for(databases.create(), tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def engine(settings: dict[str, Any]) -> Iterator[Engine]:
    engine = make_engine(settings)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def app(settings: dict[str, Any], engine: Engine):
    return make_app({**settings, "surveykit.engine": engine})


@pytest.fixture
def connection(engine: Engine, app: Any) -> Iterator[Any]:
    """One connection per test inside a transaction that is rolled back at the end.

    The application's sessions and cache-epoch reads are bound to it too; their commits become
    savepoint releases.
    """
    connection = engine.connect()
    outer = connection.begin()
    replaced = bind_to_connection(app.registry, connection)
    try:
        yield connection
    finally:
        app.registry.update(replaced)
        if outer.is_active:
            outer.rollback()
        connection.close()


@pytest.fixture
def dbsession(connection: Any) -> Iterator[Session]:
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    yield session
    session.close()


@pytest.fixture
def testapp(app: Any, connection: Any) -> webtest.TestApp:
    return webtest.TestApp(app, extra_environ={"HTTP_HOST": "surveykit.test"})


@pytest.fixture
def fresh_database(databases: DatabaseFactory) -> Callable[[], str]:
    """Factory of new empty databases (no schema) on the run's backend."""
    return databases.create


@pytest.fixture
def accounts(dbsession: Session, settings: dict[str, Any]) -> Accounts:
    return Accounts(dbsession, settings)
