"""The readable API documentation at /api/v1/docs: a vendored Swagger UI, nothing from elsewhere."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "surveykit" / "static" / "vendor" / "swagger-ui"


def test_the_docs_page_loads_only_files_of_this_server(testapp: Any) -> None:
    page = testapp.get("/api/v1/docs", status=200)
    assert page.content_type == "text/html"
    csp = dict(part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == csp["script-src"] == csp["style-src"] == csp["connect-src"] == "'self'"
    assert csp["object-src"] == "'none'"
    html = page.text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all(
        'src="/api/v1/docs/static/' in attrs and not body.strip() for attrs, body in scripts
    )
    assert "style=" not in html and "<style" not in html
    links = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {link for link in links if not link.startswith("/api/v1/")} == set()
    for link in links:
        served = testapp.get(link, status=200)
        assert served.body
    bundle = testapp.get("/api/v1/docs/static/vendor/swagger-ui/swagger-ui-bundle.js", status=200)
    assert bundle.body == (VENDOR / "swagger-ui-bundle.js").read_bytes()
    assert "javascript" in bundle.content_type
    init = testapp.get("/api/v1/docs/static/api-docs/init.js", status=200).text
    assert '"/api/v1/openapi.json"' in init and "validatorUrl: null" in init


def test_the_vendored_files_are_the_pinned_release_and_its_licence() -> None:
    script = (ROOT / "scripts" / "refetch-swagger-ui.sh").read_text()
    pinned = re.search(r'VERSION="\$\{1:-([0-9.]+)\}"', script).group(1)
    assert (VENDOR / "VERSION").read_text().strip() == pinned
    assert sorted(p.name for p in VENDOR.iterdir()) == [
        "LICENSE",
        "SHA256SUMS",
        "VERSION",
        "swagger-ui-bundle.js",
        "swagger-ui.css",
    ]
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest
    assert "Apache License" in (VENDOR / "LICENSE").read_text()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/docs/static/vendor/swagger-ui/nothing.js",
        "/api/v1/docs/static/../__init__.py",
        "/api/v1/docs/static/%2e%2e/__init__.py",
        "/api/v1/docs/static/api-docs/",
    ],
)
def test_only_the_static_files_are_served(testapp: Any, path: str) -> None:
    response = testapp.get(path, expect_errors=True)
    assert response.status_int in (400, 404)
    assert response.json["status"] == response.status_int
