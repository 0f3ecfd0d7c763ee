"""What the benchmark scripts share: a throwaway PostgreSQL database and its planner statistics.

The scripts run as ``python bench/<script>.py``, so this folder is on ``sys.path`` and they import
it as ``harness``.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool


class DatabaseUnavailable(RuntimeError):
    """The throwaway database could not be created (no server, no rights)."""


class ThrowawayDatabase:
    """A uniquely named PostgreSQL database, created on entry and dropped (WITH FORCE) on exit."""

    def __init__(self, admin_url: str, purpose: str = "bench") -> None:
        self.admin_url = admin_url
        self.name = f"surveykit_{purpose}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.url = ""

    def _execute(self, statement: str) -> None:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))
        finally:
            engine.dispose()

    def __enter__(self) -> ThrowawayDatabase:
        try:
            self._execute(f'CREATE DATABASE "{self.name}"')
        except Exception as exc:
            raise DatabaseUnavailable(f"cannot create a database through {self.admin_url}: {exc}") from exc
        self.url = make_url(self.admin_url).set(database=self.name).render_as_string(hide_password=False)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def libpq_url(self) -> str:
        """The database's URL without SQLAlchemy's driver suffix, for psycopg and for Kinto."""
        return libpq_url(self.url)


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` as ``postgresql://…`` (what psycopg and libpq accept)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PlannerStatistics:
    """Keeps the planner statistics of some databases as a production server's autovacuum would.

    The benchmark's tables start empty and grow in seconds. Without statistics PostgreSQL plans as
    for an empty table, and a prepared statement's cached plan keeps that shape while the table
    grows. Production servers run autovacuum, which analyses a table once the rows changed since its
    last analysis exceed ``autovacuum_analyze_threshold + autovacuum_analyze_scale_factor * rows``.

    ``analyse_now`` runs ANALYZE on a whole database (after a preload, as an operator does after a
    restore). When the server's autovacuum is off, ``start`` checks every ``interval`` seconds and
    analyses each table that autovacuum's rule would pick, from a thread; when it is on, autovacuum
    is left to do it. ``mode`` says which, for the output.
    """

    def __init__(self, admin_url: str, enabled: bool = True, interval: float = 1.0) -> None:
        import psycopg

        self.enabled = enabled
        self.interval = interval
        self.urls: dict[str, str] = {}
        self.runs: dict[str, int] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        with psycopg.connect(libpq_url(admin_url), autocommit=True) as connection:
            settings = dict(
                connection.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('autovacuum', 'track_counts', 'autovacuum_analyze_threshold', "
                    "'autovacuum_analyze_scale_factor')"
                ).fetchall()
            )
        self.server_autovacuum = settings.get("autovacuum") == "on" and settings.get("track_counts") == "on"
        self.threshold = int(settings.get("autovacuum_analyze_threshold", 50))
        self.scale_factor = float(settings.get("autovacuum_analyze_scale_factor", 0.1))

    @property
    def emulating(self) -> bool:
        return self.enabled and not self.server_autovacuum

    def mode(self) -> str:
        rule = f"{self.threshold} + {self.scale_factor:g} x rows changed since the last analysis"
        if not self.enabled:
            return (
                "planner statistics: NOT maintained (--analyze off): every database is left as the "
                f"server leaves it (autovacuum {'on' if self.server_autovacuum else 'off'})"
            )
        if self.server_autovacuum:
            return (
                "planner statistics: the server's autovacuum keeps them (it is on); each database is "
                f"also analysed once after its set-up (autovacuum analyses a table at {rule})"
            )
        return (
            "planner statistics: the server's autovacuum is OFF, so the benchmark does its analysing: "
            "each database is analysed after its set-up, then every table that passes autovacuum's "
            f"rule ({rule}) is analysed, checked every {self.interval:g} s"
        )

    def add(self, name: str, url: str) -> None:
        self.urls[name] = libpq_url(url)
        self.runs.setdefault(name, 0)

    def analyse_now(self, name: str) -> None:
        import psycopg

        if not self.enabled:
            return
        with psycopg.connect(self.urls[name], autocommit=True) as connection:
            connection.execute("ANALYZE")
        self.runs[name] += 1

    def start(self) -> None:
        if self.emulating and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="analyse", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def summary(self) -> str:
        return ", ".join(f"{name} {count}" for name, count in self.runs.items())

    def _watch(self) -> None:
        import psycopg

        connections: dict[str, Any] = {}
        try:
            while not self._stop.wait(self.interval):
                for name, url in list(self.urls.items()):
                    try:
                        if name not in connections:
                            connections[name] = psycopg.connect(url, autocommit=True)
                        self._analyse_due(name, connections[name])
                    except psycopg.Error as exc:  # a dropped database ends its watch, not the run
                        self.errors.append(f"{name}: {exc}")
                        connection = connections.pop(name, None)
                        if connection is not None:
                            connection.close()
                        self.urls.pop(name, None)
        finally:
            for connection in connections.values():
                connection.close()

    def _analyse_due(self, name: str, connection: Any) -> None:
        due = connection.execute(
            "SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname) FROM pg_stat_user_tables s "
            "JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.n_mod_since_analyze > %s + %s * greatest(c.reltuples, 0)",
            (self.threshold, self.scale_factor),
        ).fetchall()
        for (table,) in due:
            connection.execute(f"ANALYZE {table}")
            self.runs[name] += 1


def analyse_seeded(engine: Any) -> None:
    """Planner statistics for a database just seeded in bulk, as autovacuum would have kept them
    while it grew: ``VACUUM ANALYZE`` on PostgreSQL, ``ANALYZE`` on SQLite."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
