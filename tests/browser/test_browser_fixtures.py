"""The browser fixtures themselves: a page of the live server in Chromium, and axe-core on it."""

from __future__ import annotations

import json

from browser_support import axe_violations
from sqlalchemy import text


def test_chromium_reads_the_live_server_and_axe_runs_under_its_csp(live_server, page, screenshot):
    with live_server.session() as session:
        assert session.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
    response = page.goto(f"{live_server.url}/api/v1/health")
    assert response.status == 200
    assert json.loads(page.inner_text("body"))["status"] == "ok"
    shot = screenshot(page, "fixture-health")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_axe_reports_a_serious_violation(live_server, page):
    page.goto(f"{live_server.url}/api/docs-missing")
    page.set_content("<html><body><img src='x.png'><input type='text'></body></html>")
    found = {violation["id"] for violation in axe_violations(page)}
    assert {"image-alt", "label"} <= found
