"""Attempt counters in the database: per-address throttles for logins and device activations, and
the per-account, per-address login lockout.

Each count is one upsert with RETURNING (SQLite 3.35+ and PostgreSQL), so concurrent requests in
any number of app processes each get their own number: of eight parallel attempts, exactly one is
the fifth. A window starts with the first attempt after the previous one ended; expired rows are
reset by the next attempt and deleted now and then.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, literal, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from surveykit.accounts.models import AttemptCounter
from surveykit.db import UTCDateTime

LOGIN = "login"
ACTIVATE = "activate"
LOCKOUT = "lockout"

# How often one process deletes expired counters (seconds).
PURGE_INTERVAL = 60.0
_purge_lock = threading.Lock()
_next_purge = 0.0


@dataclass(frozen=True)
class ThrottlePolicy:
    login_limit: int
    activation_limit: int
    window_seconds: int

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> ThrottlePolicy:
        return cls(
            login_limit=settings["surveykit.login_rate_limit"],
            activation_limit=settings["surveykit.activation_rate_limit"],
            window_seconds=settings["surveykit.rate_limit_seconds"],
        )

    def limit(self, kind: str) -> int:
        return self.login_limit if kind == LOGIN else self.activation_limit


@dataclass(frozen=True)
class Count:
    attempts: int
    window_ends_at: datetime


class Throttled(Exception):
    """Too many attempts from one client address in the current window."""

    def __init__(self, kind: str, window_ends_at: datetime, now: datetime, first: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry_after = max(1, int((window_ends_at - now).total_seconds() + 0.999))
        # Only the first refusal of a window is counted (and audited): the rest are refused by a
        # read, so a flood neither writes nor waits for a write lock.
        self.first = first


def address_key(client_addr: str | None) -> str:
    return (client_addr or "unknown")[:64]


def _insert(session: Session) -> Any:
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert


def count_attempt(
    session: Session,
    kind: str,
    client_addr: str,
    username: str,
    *,
    window_seconds: int,
    now: datetime,
    restart_at: int | None = None,
) -> Count:
    """Count one attempt atomically and return the count including it.

    With ``restart_at``, the attempt that brings the count to that number restarts the window (a
    lockout lasts its full length from the attempt that triggered it).
    """
    fresh_end = literal(now + timedelta(seconds=window_seconds), UTCDateTime)
    expired = AttemptCounter.window_ends_at <= literal(now, UTCDateTime)
    attempts = case((expired, 1), else_=AttemptCounter.attempts + 1)
    window_end: Any = AttemptCounter.window_ends_at
    if restart_at is not None:
        window_end = case((AttemptCounter.attempts + 1 == restart_at, fresh_end), else_=window_end)
    statement = _insert(session)(AttemptCounter).values(
        kind=kind,
        client_addr=client_addr,
        username=username,
        attempts=1,
        window_ends_at=now + timedelta(seconds=window_seconds),
    )
    statement = statement.on_conflict_do_update(
        index_elements=["kind", "client_addr", "username"],
        set_={"attempts": attempts, "window_ends_at": case((expired, fresh_end), else_=window_end)},
    ).returning(AttemptCounter.attempts, AttemptCounter.window_ends_at)
    row = session.execute(statement).one()
    return Count(row.attempts, row.window_ends_at)


def current(session: Session, kind: str, client_addr: str, username: str, now: datetime) -> Count | None:
    """The count in the window still running, if any (a plain read)."""
    row = session.execute(
        select(AttemptCounter.attempts, AttemptCounter.window_ends_at).where(
            AttemptCounter.kind == kind,
            AttemptCounter.client_addr == client_addr,
            AttemptCounter.username == username,
            AttemptCounter.window_ends_at > now,
        )
    ).first()
    return None if row is None else Count(row.attempts, row.window_ends_at)


def forget(session: Session, kind: str, client_addr: str, username: str) -> None:
    session.execute(
        delete(AttemptCounter)
        .where(
            AttemptCounter.kind == kind,
            AttemptCounter.client_addr == client_addr,
            AttemptCounter.username == username,
        )
        .execution_options(synchronize_session=False)
    )


def refuse_if_throttled(session: Session, kind: str, client_addr: str, limit: int, now: datetime) -> None:
    """Raise Throttled, by a read alone, when this address has used up the current window."""
    count = current(session, kind, client_addr, "", now)
    if count is not None and count.attempts > limit:
        raise Throttled(kind, count.window_ends_at, now, first=False)


def count_address(
    session: Session, kind: str, client_addr: str, policy: ThrottlePolicy, now: datetime
) -> None:
    """Count one attempt from the address; Throttled (``first`` for the first refusal) past the limit."""
    count = count_attempt(session, kind, client_addr, "", window_seconds=policy.window_seconds, now=now)
    limit = policy.limit(kind)
    if count.attempts > limit:
        raise Throttled(kind, count.window_ends_at, now, first=count.attempts == limit + 1)


def purge_expired(session: Session, now: datetime) -> int:
    """Delete counters whose window has ended; rows another transaction holds are left for later
    (SKIP LOCKED on PostgreSQL), so a purge never waits for a login or deadlocks with one."""
    expired = (
        select(AttemptCounter.kind, AttemptCounter.client_addr, AttemptCounter.username)
        .where(AttemptCounter.window_ends_at <= now)
        .with_for_update(skip_locked=True)
    )
    return session.execute(
        delete(AttemptCounter)
        .where(tuple_(AttemptCounter.kind, AttemptCounter.client_addr, AttemptCounter.username).in_(expired))
        .execution_options(synchronize_session=False)
    ).rowcount


def purge_due() -> bool:
    """Whether this process should purge expired counters now (at most once per PURGE_INTERVAL)."""
    global _next_purge
    with _purge_lock:
        now = time.monotonic()
        if now < _next_purge:
            return False
        _next_purge = now + PURGE_INTERVAL
        return True


def forget_account(session: Session, kind: str, username: str) -> int:
    """Delete the account's counters of ``kind`` from every address; returns how many went."""
    return session.execute(
        delete(AttemptCounter)
        .where(AttemptCounter.kind == kind, AttemptCounter.username == username)
        .execution_options(synchronize_session=False)
    ).rowcount


def locked_until(
    session: Session, kind: str, threshold: int, now: datetime, usernames: list[str] | None = None
) -> dict[str, datetime]:
    """Username -> the latest end of a window in which it reached ``threshold`` attempts from some
    address, for the windows still running (the accounts locked now)."""
    statement = (
        select(AttemptCounter.username, func.max(AttemptCounter.window_ends_at))
        .where(
            AttemptCounter.kind == kind,
            AttemptCounter.attempts >= threshold,
            AttemptCounter.window_ends_at > now,
        )
        .group_by(AttemptCounter.username)
    )
    if usernames is not None:
        statement = statement.where(AttemptCounter.username.in_(usernames))
    return {username: until for username, until in session.execute(statement)}
