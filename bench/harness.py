"""What the benchmark scripts share: a throwaway PostgreSQL database.

The scripts run as ``python bench/<script>.py``, so this folder is on ``sys.path`` and they import
it as ``harness``.
"""

from __future__ import annotations

import os
import uuid

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
