"""What the tests share beyond fixtures: throwaway databases, settings, a committing application and
the ``Accounts`` helper (``tests/conftest.py`` builds its fixtures from these; test modules may import
them from either)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from surveykit import make_app, migrate
from surveykit.cache_epoch import EpochReader
from surveykit.config import load_settings
from surveykit.db import make_engine, make_session_factory

TEST_SECRET = "test-secret-" + "x" * 40


class DatabaseFactory:
    """Creates empty databases on the chosen backend and removes them afterwards."""

    def __init__(self, base_url: str | None, tmp_root: Path) -> None:
        self.base_url = base_url
        self.tmp_root = tmp_root
        self.created: list[str] = []

    @property
    def backend(self) -> str:
        return "postgresql" if self.base_url and self.base_url.startswith("postgresql") else "sqlite"

    def create(self) -> str:
        name = f"surveykit_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp_root / (name + '.sqlite3')}"
        with self._admin() as admin:
            admin.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(self.base_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if not self.created:
            return
        with self._admin() as admin:
            for name in self.created:
                admin.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.created.clear()

    def _admin(self):
        engine = create_engine(self.base_url, isolation_level="AUTOCOMMIT", poolclass=None)
        return _disposing_connection(engine)


class _disposing_connection:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self):
        self.connection = self.engine.connect()
        return self.connection

    def __exit__(self, *exc: Any) -> None:
        self.connection.close()
        self.engine.dispose()


class CommittingApp:
    """The application on a real, migrated database whose requests really commit (for races between
    threads, which a rolled-back test connection cannot show)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.engine = make_engine(settings)
        migrate.upgrade(self.engine)
        self.app = make_app({**settings, "surveykit.engine": self.engine})
        self.factory = make_session_factory(self.engine)
        self.settings = settings


def settings_for(database_url: str, data_dir: Path, **extra: Any) -> dict[str, Any]:
    environ = {
        "SURVEYKIT_ENV": "test",
        "SURVEYKIT_DATABASE_URL": database_url,
        "SURVEYKIT_DATA_DIR": str(data_dir),
        "SURVEYKIT_SECRET": TEST_SECRET,
    }
    return load_settings(extra, environ)


class Accounts:
    """Builds studies, users with grants, and real signed tokens for tests.

    ``headers("coordinator", study="ocsea", countries=["KE"])`` returns an Authorization header for a
    fresh user holding that grant; ``headers("admin")`` is an admin of every study.
    """

    def __init__(self, session: Session, settings: dict[str, Any]) -> None:
        from surveykit.accounts.services import AccountPolicy
        from surveykit.accounts.tokens import TokenSettings

        self.session = session
        self.settings = settings
        self.policy = AccountPolicy.from_settings(settings)
        self.tokens = TokenSettings.from_settings(settings)
        self._counter = 0

    def study(self, slug: str = "ocsea", countries: tuple[str, ...] = ("KE", "TZ", "KH")) -> Any:
        from surveykit.studies import services as studies

        try:
            study = studies.get_study(self.session, slug)
        except studies.StudyNotFound:
            study = studies.create_study(self.session, slug, f"Study {slug}")
        existing = studies.country_codes(self.session, study)
        for code in countries:
            if code not in existing:
                studies.add_country(self.session, study, code, f"Country {code}")
        self.session.flush()
        return study

    def user(
        self,
        username: str | None = None,
        role: str | None = None,
        study: str | None = "ocsea",
        countries: list[str] | None = None,
        password: str | None = None,
    ) -> Any:
        from surveykit.accounts import services

        self._counter += 1
        username = username or f"{role or 'user'}{self._counter}"
        user = services.create_user(self.session, username, password, self.policy)
        if role is not None:
            if study is not None:
                self.study(study)
            services.add_grant(
                self.session, user, role, study if role != "admin" or study else None, countries, "tests"
            )
        self.session.flush()
        return user

    def token(self, user: Any, device: Any = None) -> str:
        from surveykit.accounts import services

        pair = services.start_session(self.session, user, self.tokens, self.policy, device=device)
        self.session.flush()
        return pair.access_token

    def headers(
        self,
        role: str = "admin",
        study: str | None = None,
        countries: list[str] | None = None,
        username: str | None = None,
    ) -> dict[str, str]:
        if role == "admin" and study is None:
            user = self.user(username, "admin", None, None)
        else:
            user = self.user(username, role, study or "ocsea", countries)
        return {"Authorization": f"Bearer {self.token(user)}"}


def bind_to_connection(registry: Any, connection: Any) -> dict[str, Any]:
    """Run an application's sessions and cache-epoch reads on one connection (tests roll it back).

    Returns what it replaced, for ``registry.update`` afterwards.
    """
    replaced = {key: registry[key] for key in ("dbsession_factory", "cache_epoch_reader")}
    registry["dbsession_factory"] = make_session_factory(connection, join_transaction_mode="create_savepoint")
    registry["cache_epoch_reader"] = EpochReader(connection)
    return replaced
