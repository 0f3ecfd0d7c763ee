"""Browser-test fixtures: surveykit served over real HTTP in a thread, and Debian's Chromium driven by
Playwright.

- ``live_server`` (one per test module): the application on its own fresh, migrated database of the
  run's backend, served by waitress (with surveykit's adaptations) in a background thread.
- ``browser`` (one per run): Chromium from ``/usr/bin/chromium`` (``SURVEYKIT_CHROMIUM`` overrides);
  ``context`` / ``page``: a fresh browser context per test; ``new_context(...)`` for more (offline,
  viewport, a persistent profile via ``new_context(user_data_dir=...)``).
- ``assert_accessible(page)``: axe-core (vendored in ``vendor/axe-core``) must find no serious or
  critical violation.
- ``screenshot(page, name)``: ``<name>.png`` into ``$SURVEYKIT_SCREENSHOT_DIR`` (a temporary folder
  unless set; ``scripts/update-screenshots.sh`` points it at ``docs/img``).

Without Chromium or Playwright these tests fail (they never skip): install Debian's ``chromium``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import CHROMIUM_ARGS, LiveServer, axe_violations, chromium_path, missing_browser
from support_db import DatabaseFactory


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def live_server(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(databases.create(), tmp_path_factory.mktemp("live-data"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        missing_browser("the playwright package is not installed")
    if chromium_path() is None:
        missing_browser("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import expect

    # A loaded CI machine (two cores, a database and the app beside Chromium) renders slowly; every
    # on-screen assertion retries for this long rather than reading the page once.
    expect.set_options(timeout=15_000)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Any) -> Iterator[Any]:
    browser = playwright_driver.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def new_context(browser: Any, playwright_driver: Any) -> Iterator[Callable[..., Any]]:
    """Makes browser contexts closed after the test. ``user_data_dir=`` gives a persistent profile
    (closing it and opening the same folder again is "closing the browser and reopening it")."""
    opened: list[Any] = []

    def make(user_data_dir: str | Path | None = None, **options: Any) -> Any:
        options.setdefault("locale", "en-GB")
        if user_data_dir is None:
            context = browser.new_context(**options)
        else:
            context = playwright_driver.chromium.launch_persistent_context(
                str(user_data_dir), executable_path=chromium_path(), args=CHROMIUM_ARGS, **options
            )
        opened.append(context)
        return context

    yield make
    for context in reversed(opened):
        with contextlib.suppress(Exception):
            context.close()


@pytest.fixture
def context(new_context: Callable[..., Any]) -> Any:
    return new_context()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


@pytest.fixture
def assert_accessible() -> Callable[[Any], None]:
    def check(page: Any) -> None:
        violations = axe_violations(page)
        assert not violations, f"accessibility violations on {page.url}: {violations}"

    return check


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("SURVEYKIT_SCREENSHOT_DIR")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def screenshot(screenshot_dir: Path) -> Callable[..., Path]:
    def take(page: Any, name: str, **options: Any) -> Path:
        path = screenshot_dir / f"{name}.png"
        page.screenshot(path=str(path), **options)
        assert path.stat().st_size > 0
        return path

    return take
