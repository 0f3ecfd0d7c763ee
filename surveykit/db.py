"""Database plumbing: the declarative base, engines for SQLite and PostgreSQL, and the request session.

``request.dbsession`` is joined to the request's transaction (pyramid_tm): it commits when the view
returns and rolls back when it raises. Serialisation failures, unique-constraint races and a busy
SQLite file are marked retryable, so pyramid_retry replays the whole request instead of failing it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zope.sqlalchemy
from pyramid.decorator import reify
from pyramid.request import Request
from pyramid.tweens import EXCVIEW
from pyramid_retry import mark_error_retryable
from pyramid_tm import create_tm, explicit_manager
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    DateTime,
    MetaData,
    String,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator
from transaction._transaction import Status as TransactionStatus
from zope.sqlalchemy.datamanager import join_transaction

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


class StoredJSON(dict):
    """A JSON object whose serialised text is already known (a pushed record's canonical form).
    Engines made here (``dump_json``) bind that text as it is instead of serialising the object
    again; any other serialiser sees a plain dict and writes the same value."""

    __slots__ = ("text",)

    def __init__(self, value: dict[str, Any], text: str) -> None:
        super().__init__(value)
        self.text = text


def in_values(column: Any, values: list[Any], dialect_name: str) -> ColumnElement[bool]:
    """``column IN values``. On PostgreSQL the values go as one array parameter (``= ANY``): the
    statement's text is then the same for any number of values, so neither SQLAlchemy nor the
    driver renders and parses a placeholder per value (a pull page looks up a thousand keys)."""
    if dialect_name == "postgresql":
        return column == any_(literal(list(values), _array_of(column)))
    return column.in_(values)


def _array_of(column: Any) -> ARRAY:
    # An array of the column's type without its length: a cast to varchar(n)[] would cut a longer
    # value short, and the cut value could then match a stored one.
    item = column.type
    if isinstance(item, String) and item.length is not None:
        item = String()
    return ARRAY(item)


def in_parameter(column: Any, name: str, dialect_name: str) -> ColumnElement[bool]:
    """``column IN :name`` for a statement built once and run with a list of values under ``name``:
    on PostgreSQL the list goes as one array parameter, as in ``in_values``."""
    if dialect_name == "postgresql":
        return column == any_(bindparam(name, type_=_array_of(column)))
    return column.in_(bindparam(name, expanding=True))


def rows_in_parameter(columns: Sequence[Any], name: str, dialect_name: str) -> ColumnElement[bool]:
    """``(columns) IN :name`` for a statement built once and run with ``rows_parameter(name, rows,
    dialect_name)``. On PostgreSQL each column's values go as one array parameter and the arrays are
    unnested side by side, so the statement's text (and its prepared plan) is the same for any
    number of rows; elsewhere the rows are expanded as a list of row values."""
    if dialect_name == "postgresql":
        arrays = [bindparam(f"{name}_{i}", type_=_array_of(column)) for i, column in enumerate(columns)]
        unnested = (
            func.unnest(*arrays).table_valued(*(f"{name}_{i}" for i in range(len(columns)))).render_derived()
        )
        return tuple_(*columns).in_(select(*unnested.c))
    return tuple_(*columns).in_(bindparam(name, expanding=True))


def rows_parameter(name: str, rows: Sequence[Sequence[Any]], width: int, dialect_name: str) -> dict[str, Any]:
    """The parameters of ``rows_in_parameter(columns, name, ...)`` for ``rows`` of ``width`` values."""
    if dialect_name == "postgresql":
        return {f"{name}_{i}": [row[i] for row in rows] for i in range(width)}
    return {name: [tuple(row) for row in rows]}


def dump_json(value: Any) -> str:
    """The engines' JSON serialiser: ``StoredJSON`` passes through, anything else is serialised."""
    if isinstance(value, StoredJSON):
        return value.text
    return json.dumps(value)


def make_engine(settings: dict[str, Any]) -> Engine:
    url = settings["sqlalchemy.url"]
    if is_sqlite(url):
        return _make_sqlite_engine(url, settings["surveykit.sqlite_busy_timeout_ms"])
    engine = create_engine(
        url,
        pool_size=settings["surveykit.db_pool_size"],
        max_overflow=settings["surveykit.db_pool_size"],
        json_serializer=dump_json,
    )

    @event.listens_for(engine, "handle_error")
    def _mark_disconnect_retryable(context: Any) -> None:
        # No ping before each checkout (a round trip on every request): a connection the server
        # dropped fails on first use, the pool discards it and its siblings, and the request is
        # replayed on a fresh one.
        if context.is_disconnect and context.sqlalchemy_exception is not None:
            mark_error_retryable(context.sqlalchemy_exception)

    return engine


def _make_sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    database = url.split("///", 1)[1] if "///" in url else ""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000}, json_serializer=dump_json)

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


def begin_write(session: Session) -> None:
    """Start ``session``'s transaction as a writer: on SQLite, queue for the write lock at BEGIN.

    For short write transactions outside the request's own (counters, last-seen times).
    """
    if session.get_bind().dialect.name == "sqlite":
        session.connection(execution_options={SQLITE_IMMEDIATE: True})


TRANSACTION_MANAGER = "surveykit_transaction_manager"


class RequestSession(Session):
    """A session that joins the transaction manager kept in its ``info``, if it has one.

    zope.sqlalchemy's ``register`` adds seven event listeners to every session it is given, which
    costs more than a tablet's whole instrument check; these listeners are added once, to the class,
    and find the request's manager on the session itself. A session without one (the CLI, audit
    refusals, last-seen updates) behaves as a plain session.
    """


def _manager(session: Session) -> Any:
    return session.info.get(TRANSACTION_MANAGER)


@event.listens_for(RequestSession, "after_begin")
def _join_on_begin(session: Session, _transaction: Any, _connection: Any) -> None:
    if (manager := _manager(session)) is not None:
        join_transaction(session, transaction_manager=manager)


@event.listens_for(RequestSession, "after_attach")
def _join_on_attach(session: Session, _instance: Any) -> None:
    if (manager := _manager(session)) is not None:
        join_transaction(session, transaction_manager=manager)


@event.listens_for(RequestSession, "after_flush")
def _changed_on_flush(session: Session, _flush_context: Any) -> None:
    if (manager := _manager(session)) is not None:
        zope.sqlalchemy.mark_changed(session, transaction_manager=manager)


@event.listens_for(RequestSession, "do_orm_execute")
def _changed_on_dml(state: Any) -> None:
    manager = _manager(state.session)
    if (
        manager is not None
        and state.is_orm_statement
        and (state.is_update or state.is_insert or state.is_delete)
    ):
        zope.sqlalchemy.mark_changed(state.session, transaction_manager=manager)


@event.listens_for(RequestSession, "before_commit")
def _commit_through_manager(session: Session) -> None:
    manager = _manager(session)
    if manager is None or session.in_nested_transaction():
        return
    if manager.get().status != TransactionStatus.COMMITTING:
        raise RuntimeError("a request's session is committed by its transaction manager, not directly")


def make_session_factory(bind: Any, **options: Any) -> sessionmaker[Session]:
    """Sessions on ``bind`` (an engine, or in tests a connection) that can join a request."""
    return sessionmaker(bind=bind, class_=RequestSession, expire_on_commit=False, **options)


def tm_session(session_factory: sessionmaker[Session], transaction_manager: Any) -> Session:
    """A session that commits and rolls back with the given transaction manager."""
    session = session_factory()
    if isinstance(session, RequestSession):
        session.info[TRANSACTION_MANAGER] = transaction_manager
    else:
        zope.sqlalchemy.register(session, transaction_manager=transaction_manager)
    return session


class SurveykitRequest(Request):
    """The request, with its transaction manager, database session and cache epoch made on first use.

    They are attributes of this class rather than ``add_request_method`` extensions: for those,
    Pyramid builds a new subclass of the request for every request, which alone costs as much as a
    tablet's whole (remembered) instrument check.
    """

    @reify
    def tm(self) -> Any:
        return create_tm(self)

    @reify
    def dbsession(self) -> Session:
        # Looked up per request so tests can bind the factory to a connection they roll back.
        session = tm_session(self.registry["dbsession_factory"], self.tm)
        if self.method in WRITE_METHODS and session.get_bind().dialect.name == "sqlite":
            session.connection(execution_options={SQLITE_IMMEDIATE: True})
        return session

    @reify
    def cache_epoch(self) -> int | None:
        """The cache epoch this request works under (``surveykit.cache_epoch``), read once."""
        return self.registry["cache_epoch_reader"]()


def includeme(config: Any) -> None:
    settings = config.get_settings()
    config.set_request_factory(SurveykitRequest)
    # pyramid_tm's own includeme would add ``request.tm`` as a per-request extension; its tween and
    # explicit manager are used as they are, with ``tm`` defined on the request class above.
    settings["tm.manager_hook"] = explicit_manager
    config.add_tween("pyramid_tm.tm_tween_factory", over=EXCVIEW)
    config.add_tween(
        "surveykit.errors.exceptions_as_json_tween_factory",
        under="surveykit.logs.access_log_tween_factory",
        over="pyramid_tm.tm_tween_factory",
    )
    config.include("pyramid_retry")
    # A double submit that loses a unique-constraint race is replayed, and then sees the winner.
    mark_error_retryable(IntegrityError)

    engine = settings.get("surveykit.engine") or make_engine(settings)
    session_factory = make_session_factory(engine)
    config.registry["db_engine"] = engine
    config.registry["dbsession_factory"] = session_factory
    config.include("surveykit.cache_epoch")
