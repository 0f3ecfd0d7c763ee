"""What the browser tests share beyond fixtures: the live server, where Chromium is, and axe-core."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from support_db import Accounts, settings_for

from surveykit import make_app, migrate
from surveykit.db import make_engine, make_session_factory
from surveykit.server import create_server

AXE_SOURCE = Path(__file__).with_name("vendor") / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    # Without these Chromium keeps trying to reach Google's hosts, which this network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-gpu",
    "--no-sandbox",
]
BLOCKING_IMPACTS = ("serious", "critical")


def chromium_path() -> str | None:
    candidate = os.environ.get("SURVEYKIT_CHROMIUM", "/usr/bin/chromium")
    return candidate if Path(candidate).exists() else shutil.which("chromium")


def missing_browser(reason: str) -> None:
    """The browser tests are part of the suite: a machine without the browser fails them, never
    skips them (install Debian's chromium, as .ci/run does)."""
    pytest.fail(f"the browser tests need Chromium and Playwright: {reason}")


class LiveServer:
    """surveykit on a real port, on its own database; tests reach its data through ``session()``."""

    def __init__(self, database_url: str, data_dir: Path, **extra_settings: Any) -> None:
        self.settings = settings_for(database_url, data_dir, **extra_settings)
        self.engine = make_engine(self.settings)
        migrate.upgrade(self.engine)
        self.app = make_app({**self.settings, "surveykit.engine": self.engine})
        self._sessions = make_session_factory(self.engine)
        self.server, addresses = create_server(self.app, self.settings, {"host": "127.0.0.1", "port": "0"})
        self.url = addresses[0]
        self._thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session on the served database that commits on a clean exit."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def accounts(self) -> Iterator[Accounts]:
        """The test suite's ``Accounts`` helper, committing what it created on a clean exit."""
        with self.session() as session:
            yield Accounts(session, self.settings)

    def close(self) -> None:
        self.server.close()
        self.server.task_dispatcher.shutdown()
        self._thread.join(timeout=10)
        self.engine.dispose()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now.

    The script is evaluated through the DevTools protocol, which the page's Content-Security-Policy
    does not govern, so pages are checked with their real CSP in force."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SOURCE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => await window.axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "targets": [node["target"] for node in violation["nodes"]][:5],
        }
        for violation in result["violations"]
        if violation["impact"] in BLOCKING_IMPACTS
    ]
