"""Facts kept in memory between requests that still see every change on the very next request.

A tablet's instrument check needs two facts that almost never change: that its session, account and
device are still good (with its grants), and which version of the instrument is current. Reading them
from the database on every request costs several times the rest of the request, so each process
keeps them in memory, in an ``EpochCache``, and checks one number instead.

That number is the single row of ``cache_epoch``. Database triggers (migration 0005) replace it with
a new random value in the same transaction as anything those facts depend on: a session ended, a
device revoked or moved, an account deactivated or renamed, a grant given, changed or taken away, a
study renamed or removed, an instrument published, moved or retired. No code path can forget to do
so. Each request reads the number once, outside its own transaction and before it loads anything,
and uses a remembered fact only if it was loaded under that same number. A revocation committed
before the request started is therefore always seen, in every process.

The value is random rather than a counter so that an old value can never come back with a different
state behind it (a database restored from a backup while the server runs, or a test's rolled-back
transaction).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Integer, create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, mapped_column

from surveykit.db import Base

READ_EPOCH = "SELECT value FROM cache_epoch WHERE id = 1"


class CacheEpoch(Base):
    __tablename__ = "cache_epoch"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class EpochReader:
    """Reads the current epoch with one indexed read outside any request transaction.

    It uses a small pool of driver connections of its own in autocommit mode, so a read costs no
    BEGIN and no ROLLBACK. In tests it may be bound to the test's own connection, so that it sees
    the test's uncommitted changes.
    """

    def __init__(self, bind: Engine | Connection, pool_size: int = 5) -> None:
        self._connection: Connection | None = None
        self._engine: Engine | None = None
        if isinstance(bind, Connection):
            self._connection = bind
        elif bind.dialect.name == "sqlite" and bind.url.database in (None, "", ":memory:"):
            self._engine = bind  # an in-memory database exists only on the application's own connection
        else:
            # A pool of its own: its connections stay in autocommit mode, so returning one to the
            # pool needs no ROLLBACK.
            self._engine = create_engine(
                bind.url,
                isolation_level="AUTOCOMMIT",
                pool_reset_on_return=None,
                pool_size=pool_size,
                max_overflow=pool_size,
            )
            self._owns_engine = True

    def __call__(self) -> int | None:
        if self._connection is not None:
            return self._connection.exec_driver_sql(READ_EPOCH).scalar()
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(READ_EPOCH)
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            raw.close()
        return None if row is None else row[0]

    def dispose(self) -> None:
        if getattr(self, "_owns_engine", False):
            self._engine.dispose()


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
    config.registry["cache_epoch_reader"] = EpochReader(
        engine, pool_size=config.get_settings()["surveykit.db_pool_size"]
    )
