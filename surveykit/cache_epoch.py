"""Facts kept in memory between requests that still see every change on the very next request.

A tablet's instrument check needs two facts that almost never change: that its session, account and
device are still good (with its grants), and which version of the instrument is current. Reading them
from the database on every request costs several times the rest of the request, so each process
keeps them in memory, in an ``EpochCache``, and checks one number instead.

That number is the single row of ``cache_epoch``. Database triggers (migrations 0005 and 0006)
replace it with a new random value in the same transaction as anything those facts depend on: a
session ended, a device revoked, moved or bound to another scope, an account deactivated or
renamed, a grant given, changed or taken away, a study renamed or removed, an instrument published,
moved or retired. No code path can forget to do so. Each request reads the number once, outside
its own transaction and before it loads anything, and uses a remembered fact only if it was loaded
under that same number. A revocation committed before the request started is therefore always
seen, in every process.

The value is random rather than a counter so that an old value can never come back with a different
state behind it (a database restored from a backup while the server runs, or a test's rolled-back
transaction).
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Integer, create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.pool import NullPool

from surveykit.db import Base

READ_EPOCH = "SELECT value FROM cache_epoch WHERE id = 1"


class CacheEpoch(Base):
    __tablename__ = "cache_epoch"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class EpochReader:
    """Reads the current epoch with one indexed read outside any request transaction.

    Each thread keeps one driver connection of its own in autocommit mode, so a read is a single
    statement: no pool checkout, no BEGIN, no ROLLBACK. A connection the server has dropped (a
    restart, an idle timeout) is replaced once, at once. In tests the reader may be bound to the
    test's own connection, so that it sees the test's uncommitted changes.
    """

    def __init__(self, bind: Engine | Connection) -> None:
        self._connection: Connection | None = None
        self._engine: Engine | None = None
        self._local = threading.local()
        self._kept: list[Any] = []
        self._lock = threading.Lock()
        self._pooled = False
        if isinstance(bind, Connection):
            self._connection = bind
        elif bind.dialect.name == "sqlite" and bind.url.database in (None, "", ":memory:"):
            self._engine = bind  # an in-memory database exists only on the application's own connections
            self._pooled = True
        else:
            self._engine = create_engine(bind.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
            self._pooled = False

    def __call__(self) -> int | None:
        if self._connection is not None:
            return self._connection.exec_driver_sql(READ_EPOCH).scalar()
        if self._pooled:
            raw = self._engine.raw_connection()
            try:
                return _read(raw)
            finally:
                raw.close()
        raw = getattr(self._local, "raw", None)
        if raw is not None:
            try:
                return _read(raw)
            except self._engine.dialect.loaded_dbapi.Error:
                self._forget(raw)
        raw = self._engine.raw_connection()
        self._local.raw = raw
        with self._lock:
            self._kept.append(raw)
        return _read(raw)

    def _forget(self, raw: Any) -> None:
        self._local.raw = None
        with self._lock:
            if raw in self._kept:
                self._kept.remove(raw)
        raw.invalidate()

    def dispose(self) -> None:
        """Close every thread's connection (when the application shuts down)."""
        with self._lock:
            kept, self._kept = self._kept, []
        for raw in kept:
            try:
                raw.invalidate()
            except Exception:  # noqa: BLE001 - closing a connection that is already gone
                pass
        if not self._pooled and self._engine is not None:
            self._engine.dispose()


_PREPARED = b"surveykit_read_epoch"


def _read(raw: Any) -> int | None:
    driver = raw.driver_connection
    pgconn = getattr(driver, "pgconn", None)
    if pgconn is not None:
        return _read_libpq(raw, driver, pgconn)
    cursor = raw.cursor()
    try:
        cursor.execute(READ_EPOCH)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return None if row is None else row[0]


def _read_libpq(raw: Any, driver: Any, pgconn: Any) -> int | None:
    """The epoch through libpq's prepared-statement call (psycopg's ``pgconn``): the read runs on
    every request, and psycopg's cursor machinery costs several times the call itself. The
    connection is in autocommit mode and used by this thread alone."""
    from psycopg import OperationalError
    from psycopg.pq import ExecStatus

    if not raw.info.get("epoch_prepared"):
        result = pgconn.prepare(_PREPARED, READ_EPOCH.encode())
        if result.status != ExecStatus.COMMAND_OK:
            raise OperationalError(f"cannot prepare the cache epoch read: {pgconn.get_error_message()}")
        raw.info["epoch_prepared"] = True
    result = pgconn.exec_prepared(_PREPARED, None)
    if result.status != ExecStatus.TUPLES_OK:
        raise OperationalError(f"cannot read the cache epoch: {pgconn.get_error_message()}")
    if result.ntuples == 0:
        return None
    value = result.get_value(0, 0)
    return None if value is None else int(value)


MISSING = object()


class EpochCache:
    """Values remembered together with the epoch they were loaded under.

    ``get`` answers ``MISSING`` unless the value was stored under the epoch given; with no epoch
    (no row, which only an unmigrated database has) nothing is ever remembered.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[Any, tuple[int, Any]] = {}

    def get(self, key: Any, epoch: int | None) -> Any:
        entry = self._entries.get(key)
        if entry is None or epoch is None or entry[0] != epoch:
            return MISSING
        return entry[1]

    def put(self, key: Any, epoch: int | None, value: Any) -> None:
        if epoch is None:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (epoch, value)

    def __len__(self) -> int:
        return len(self._entries)


def includeme(config: Any) -> None:
    # ``request.cache_epoch`` itself is defined on the request class (``surveykit.db``).
    engine = config.registry["db_engine"]
    config.registry["cache_epoch_reader"] = EpochReader(engine)
