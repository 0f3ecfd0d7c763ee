"""The tablet's local SQLite file: credentials, instrument cache, number blocks, records, outbox,
receipts and what was pulled.

Rules the file keeps (see docs/client.md):
- Every change of state is one SQLite transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) with
  ``synchronous=FULL``: what the app was told is saved survives a crash or a flat battery.
- An outbox entry is deleted only in the transaction that stores the receipt proving the server
  holds exactly that content (see ``client.Client.push``).
- One process owns the file at a time (an exclusive lock on ``<file>.lock``): two processes could
  otherwise both spend the same refresh token or mint the same interview number.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere the single-owner rule is the app's to keep.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from surveykit.client.http import ClientError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
-- Every instrument version this tablet has downloaded (versions never change on the server).
CREATE TABLE IF NOT EXISTS instruments (
    slug TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    body TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (slug, version)
);
-- The current version of each instrument and the ETag to revalidate it with.
CREATE TABLE IF NOT EXISTS instrument_heads (
    slug TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    etag TEXT,
    checked_at TEXT NOT NULL
);
-- Interview numbers reserved for this device; next_number is the next one to mint.
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    study TEXT NOT NULL,
    country TEXT NOT NULL,
    activity TEXT NOT NULL,
    first_number INTEGER NOT NULL,
    last_number INTEGER NOT NULL,
    next_number INTEGER NOT NULL
);
-- Numbers minted from a block, so none is ever minted twice, even after a crash.
CREATE TABLE IF NOT EXISTS minted (
    study TEXT NOT NULL,
    country TEXT NOT NULL,
    activity TEXT NOT NULL,
    interview_number INTEGER NOT NULL,
    block_id INTEGER,
    minted_at TEXT NOT NULL,
    PRIMARY KEY (study, country, activity, interview_number)
);
-- The tablet's copy of each interview: the local content, and what it knows of the server's.
CREATE TABLE IF NOT EXISTS interviews (
    uuid TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    country TEXT NOT NULL,
    activity TEXT NOT NULL,
    interview_number INTEGER NOT NULL,
    record TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    server_revision INTEGER NOT NULL DEFAULT 0,
    server_hash TEXT,
    server_record TEXT,
    origin TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- Changes not yet acknowledged by a matching receipt. Per record they form a chain in id order:
-- only the first is ever sent; base_revision is NULL while it waits for its predecessor's receipt.
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL,
    base_revision INTEGER,
    record TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    conflict_id INTEGER,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_outbox_uuid ON outbox (uuid, id);
-- Every receipt received: proof that the server holds this content as this revision.
CREATE TABLE IF NOT EXISTS receipts (
    uuid TEXT NOT NULL,
    revision INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    result TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (uuid, revision, content_hash)
);
-- Changes the server kept as conflict revisions, with its current version at the time.
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL,
    base_revision INTEGER,
    content_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    current TEXT,
    received_at TEXT NOT NULL
);
-- The latest object of each pulled change-feed key (participants, interviews, conflicts, instruments).
CREATE TABLE IF NOT EXISTS pulled (
    study TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    country TEXT,
    body TEXT,
    PRIMARY KEY (study, kind, key)
);
CREATE TABLE IF NOT EXISTS cursors (
    study TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL
);
"""


class StoreInUse(ClientError):
    """Another process has this store open."""


def canonical_json(value: Any) -> bytes:
    """The bytes the server hashes: sorted keys, no whitespace, UTF-8 (no ``\\u`` escapes).

    The same function as ``surveykit.sync.validation.canonical_json``, repeated here so the client
    needs nothing but the standard library; the tests check that both agree.
    """
    return json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def content_hash(record: Any) -> str:
    return hashlib.sha256(canonical_json(record)).hexdigest()


def normalise(record: Any) -> Any:
    """The record as the server will parse it from JSON: what is stored, sent and hashed.

    Tuples become lists, non-string keys become strings, NaN and infinities are refused (JSON has
    none), and the result is a deep copy the caller cannot change afterwards.
    """
    return json.loads(canonical_json(record))


def utc_now_text() -> str:
    return datetime.now(UTC).isoformat()


def dumps(value: Any) -> str:
    return canonical_json(value).decode("utf-8")


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = None
        if fcntl is not None:
            self._lock_file = open(f"{self.path}.lock", "a+")  # noqa: SIM115 (held until close)
            try:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                self._lock_file.close()
                raise StoreInUse(f"{self.path} is open in another process") from exc
        # isolation_level=None: transactions are begun explicitly, always as BEGIN IMMEDIATE.
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._mutex = threading.RLock()
        self._depth = 0
        with self.transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ClientError(f"{self.path} was written by a newer client (schema {version})")
            code = "\n".join(line for line in SCHEMA.splitlines() if not line.lstrip().startswith("--"))
            for statement in code.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._mutex:
            self.db.close()
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit of work (nested calls join the outer one)."""
        with self._mutex:
            if self._depth:
                self._depth += 1
                try:
                    yield self.db
                finally:
                    self._depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.db
            except BaseException:
                self._depth = 0
                self.db.execute("ROLLBACK")
                raise
            self._depth = 0
            self.db.execute("COMMIT")

    # ------------------------------------------------------------------------------------ meta

    def get(self, key: str, default: str | None = None) -> str | None:
        with self._mutex:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None or row[0] is None else row[0]

    def set(self, **values: Any) -> None:
        """Set several meta values in one transaction (None deletes)."""
        with self.transaction() as db:
            for key, value in values.items():
                if value is None:
                    db.execute("DELETE FROM meta WHERE key = ?", (key,))
                else:
                    db.execute(
                        "INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (key, str(value)),
                    )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._mutex:
            return self.db.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._mutex:
            return self.db.execute(sql, params).fetchone()
