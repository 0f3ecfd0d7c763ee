"""How the field app's files are served (docs/field-app.md, "Serving"): a strict CSP, revalidation,
gzip, a service worker whose version follows the files, and the files shipped in the package."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import webtest

from surveykit.fieldapp import views

ROOT = Path(__file__).resolve().parents[1]


def test_the_page_has_a_strict_policy_and_is_revalidated(testapp: webtest.TestApp) -> None:
    page = testapp.get("/app/")
    assert page.content_type == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy
    assert "connect-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy
    assert page.headers["Cache-Control"] == "no-cache"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    # No inline script or style anywhere: the policy would refuse them.
    html = page.text
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert " style=" not in html and "<style" not in html
    assert 'type="module" src="/app/app.js"' in html


def test_files_are_revalidated_with_their_etag_and_gzipped(testapp: webtest.TestApp) -> None:
    first = testapp.get("/app/relevance.js", headers={"Accept-Encoding": "gzip"})
    assert first.content_type == "text/javascript" and first.headers["Cache-Control"] == "no-cache"
    assert first.headers["ETag"].endswith('-gzip"')
    again = testapp.get("/app/relevance.js", headers={"If-None-Match": first.headers["ETag"]}, status=304)
    assert again.body == b""
    missing = testapp.get("/app/../setup.cfg", status=404, expect_errors=True)
    assert missing.content_type == "application/json"
    assert testapp.get("/app/index.html", status=404).json["code"]


def test_the_service_worker_carries_a_version_that_changes_with_any_file(
    testapp: webtest.TestApp, monkeypatch: Any, tmp_path: Path
) -> None:
    worker = testapp.get("/app/sw.js")
    assert worker.headers["Service-Worker-Allowed"] == "/app/"
    version = views.app_version()
    assert worker.text.startswith(f'const APP_VERSION = "{version}";')
    cached = re.search(r"const APP_FILES = (\[.*?\]);", worker.text).group(1)
    assert '"./"' in cached and '"app.js"' in cached and '"sw.js"' not in cached

    copy = tmp_path / "static"
    copy.mkdir()
    for path in views.STATIC.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(views, "STATIC", copy)
    views.app_files.cache_clear()
    try:
        assert views.app_version() == version  # the same files: the same release
        (copy / "styles.css").write_bytes((copy / "styles.css").read_bytes() + b"\n/* a fix */\n")
        views.app_files.cache_clear()
        assert views.app_version() != version
    finally:
        monkeypatch.undo()
        views.app_files.cache_clear()


def test_a_non_editable_install_ships_the_files() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "fieldapp/static/*" in config["options.package_data"]["surveykit"]
    assert not [p for p in views.STATIC.rglob("*") if p.is_dir()], "package_data names no subfolders"
