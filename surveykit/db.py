"""Database plumbing: the declarative base, engines for SQLite and PostgreSQL, and the request session.

``request.dbsession`` is joined to the request's transaction (pyramid_tm): it commits when the view
returns and rolls back when it raises. Serialisation failures, unique-constraint races and a busy
SQLite file are marked retryable, so pyramid_retry replays the whole request instead of failing it.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zope.sqlalchemy
from pyramid_retry import mark_error_retryable
from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from surveykit.config import is_sqlite

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SQLITE_IMMEDIATE = "surveykit_sqlite_immediate"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both backends (SQLite stores no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC datetime is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(settings: dict[str, Any]) -> Engine:
    url = settings["sqlalchemy.url"]
    if is_sqlite(url):
        return _make_sqlite_engine(url, settings["surveykit.sqlite_busy_timeout_ms"])
    return create_engine(
        url,
        pool_size=settings["surveykit.db_pool_size"],
        max_overflow=settings["surveykit.db_pool_size"],
        pool_pre_ping=True,
    )


def _make_sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    database = url.split("///", 1)[1] if "///" in url else ""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _configure_connection(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # The stdlib driver opens transactions lazily and cannot nest savepoints; hand transaction
        # control to SQLAlchemy, which emits BEGIN itself (the documented pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: a receipt given to a tablet must survive a power cut, not only a process crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes fails at once with "database is locked"
        # when another writer got in between; BEGIN IMMEDIATE queues for the write lock instead.
        immediate = connection.get_execution_options().get(SQLITE_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine, "handle_error")
    def _mark_locked_retryable(context: Any) -> None:
        original = context.original_exception
        if isinstance(original, sqlite3.OperationalError) and "locked" in str(original):
            if context.sqlalchemy_exception is not None:
                mark_error_retryable(context.sqlalchemy_exception)

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def tm_session(session_factory: sessionmaker[Session], transaction_manager: Any) -> Session:
    """A session that commits and rolls back with the given transaction manager."""
    session = session_factory()
    zope.sqlalchemy.register(session, transaction_manager=transaction_manager)
    return session


def includeme(config: Any) -> None:
    settings = config.get_settings()
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    config.include("pyramid_tm")
    config.include("pyramid_retry")
    # A double submit that loses a unique-constraint race is replayed, and then sees the winner.
    mark_error_retryable(IntegrityError)

    engine = settings.get("surveykit.engine") or make_engine(settings)
    session_factory = make_session_factory(engine)
    config.registry["db_engine"] = engine
    config.registry["dbsession_factory"] = session_factory

    def dbsession(request: Any) -> Session:
        # Looked up per request so tests can bind the factory to a connection they roll back.
        session = tm_session(request.registry["dbsession_factory"], request.tm)
        if request.method in WRITE_METHODS and session.get_bind().dialect.name == "sqlite":
            session.connection(execution_options={SQLITE_IMMEDIATE: True})
        return session

    config.add_request_method(dbsession, reify=True)
