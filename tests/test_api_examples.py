"""docs/api.md stays true: every HTTP exchange it shows is replayed, in order, against the app.

The page's ```http blocks come in pairs: a request, then the answer. Requests are sent as written,
with ``{{name}}`` replaced by a value captured earlier. In an answer (``{{name}}`` captures a value
the first time, and must equal it afterwards):
- the status line must match;
- each header shown must be there, with that value (``…`` for any value);
- the JSON body must contain what is shown: every key shown with its value, ``"…"`` for any value,
  a list shown must have an item matching each item shown.
Every answer is also checked against the OpenAPI document's schema for that operation and status.

The accounts the page starts from (``amina``, ``wanjiru``, the ``ocsea`` study) are set up here the
way its first section says the CLI sets them up.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy.orm import Session

from surveykit import openapi
from surveykit.accounts import passwords
from surveykit.accounts import services as account_services
from surveykit.studies import services as studies

DOC = (Path(__file__).parent.parent / "docs" / "api.md").read_text("utf-8")
BLOCK = re.compile(r"^```http\n(.*?)^```", re.S | re.M)
VARIABLE = re.compile(r"\{\{(\w+)\}\}")
ANY = "…"
PASSWORDS = {"amina": "amina-field-2026", "wanjiru": "wanjiru-field-2026"}


def exchanges() -> list[tuple[str, str]]:
    blocks = BLOCK.findall(DOC)
    assert len(blocks) % 2 == 0, "every request in docs/api.md needs its answer"
    pairs = list(zip(blocks[::2], blocks[1::2], strict=True))
    for request, response in pairs:
        assert not request.startswith("HTTP/"), request
        assert response.startswith("HTTP/1.1 "), response
    return pairs


def _split(text: str) -> tuple[str, dict[str, str], str]:
    head, _, body = text.partition("\n\n")
    first, *header_lines = head.strip("\n").split("\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return first, headers, body.strip()


def _substitute(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"{{{{{match.group(1)}}}}} is used before it is captured"
        return str(values[match.group(1)])

    return VARIABLE.sub(value, text)


def _match(expected: Any, actual: Any, where: str, values: dict[str, Any]) -> None:
    if expected == ANY:
        return
    if isinstance(expected, str) and (capture := re.fullmatch(r"\{\{(\w+)\}\}", expected)):
        name = capture.group(1)
        if name in values:
            assert actual == values[name], (
                f"{where}: expected {{{{{name}}}}} = {values[name]!r}, got {actual!r}"
            )
        values[name] = actual
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, item in expected.items():
            assert key in actual, f"{where}: no key {key!r} in {sorted(actual)}"
            _match(item, actual[key], f"{where}.{key}", values)
        return
    if isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        for index, item in enumerate(expected):
            if item == ANY:
                continue
            for candidate in actual:
                attempt = dict(values)
                try:
                    _match(item, candidate, f"{where}[{index}]", attempt)
                except AssertionError:
                    continue
                values.update(attempt)
                break
            else:
                raise AssertionError(f"{where}: no item matches {item!r} in {actual!r}")
        return
    assert expected == actual, f"{where}: expected {expected!r}, got {actual!r}"


def _inline_refs(node: Any, document: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _inline_refs(target, document)
        return {key: _inline_refs(value, document) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(item, document) for item in node]
    return node


def _documented_schema(document: dict[str, Any], method: str, url: str, status: int) -> Any:
    path = url.split("?", 1)[0]
    for template, item in document["paths"].items():
        regex = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(regex, path) and method.lower() in item:
            responses = item[method.lower()]["responses"]
            assert str(status) in responses, f"{method} {url}: status {status} is not documented"
            response = _inline_refs(responses[str(status)], document)
            return response.get("content", {}).get("application/json", {}).get("schema")
    raise AssertionError(f"{method} {url} is not in the OpenAPI document")


def _match_header(name: str, expected: str, actual: str, label: str, values: dict[str, Any]) -> None:
    if expected.startswith('"{{') and expected.endswith('}}"'):
        expected, actual = expected[1:-1], actual.strip('"')
    if name.lower() == "content-type":
        # Parameters (charset) are not part of the documented media type.
        expected, actual = expected.lower(), actual.split(";", 1)[0].strip().lower()
    _match(expected, actual, f"{label} {name}", values)


@pytest.fixture
def seeded(accounts: Any, dbsession: Session) -> None:
    """What the page's "Before you start" section sets up with the CLI."""
    policy = accounts.policy
    study = studies.create_study(dbsession, "ocsea", "OCSEA multi-country study")
    studies.add_country(dbsession, study, "KE", "Kenya")
    studies.add_activity(dbsession, study, "RA1", "Government duty bearers")
    for username, role in (("amina", "coordinator"), ("wanjiru", "fieldworker")):
        user = account_services.create_user(dbsession, username, None, policy)
        user.password_hash = passwords.hash_password(PASSWORDS[username])
        account_services.add_grant(dbsession, user, role, "ocsea", ["KE"], "docs")
    dbsession.flush()


def test_docs_api_md_has_examples_for_every_topic() -> None:
    shown = "\n".join(request for request, _ in exchanges())
    for needle in (
        "POST /api/v1/auth/token",
        "POST /api/v1/auth/refresh",
        "POST /api/v1/devices",
        "POST /api/v1/devices/activate",
        "POST /api/v1/sync",
        "GET /api/v1/sync/changes",
        "GET /api/v1/exports/",
        "GET /api/v1/openapi.json",
    ):
        assert needle in shown, needle


def test_every_example_in_docs_api_md_runs(testapp: Any, app: Any, seeded: None) -> None:
    document = openapi.build_document(app.registry)
    values: dict[str, Any] = {"amina_password": PASSWORDS["amina"]}
    for number, (request_text, response_text) in enumerate(exchanges(), start=1):
        first, headers, body = _split(_substitute(request_text, values))
        method, url, *_ = first.split()
        label = f"example {number}: {method} {url}"
        kwargs: dict[str, Any] = {"headers": headers, "expect_errors": True}
        if body:
            kwargs["body"] = body.encode("utf-8")
        response = testapp.request(url, method=method, **kwargs)

        status_line, expected_headers, expected_body = _split(response_text)
        status = int(status_line.split()[1])
        assert response.status_int == status, f"{label}: {response.status} {response.text[:500]}"
        for name, expected in expected_headers.items():
            actual = response.headers.get(name)
            assert actual is not None, f"{label}: no {name} header"
            _match_header(name, expected, actual, label, values)
        schema = _documented_schema(document, method, url, status)
        if expected_body:
            actual_body = response.json
            _match(json.loads(expected_body), actual_body, label, values)
            if schema is not None:
                jsonschema.validate(actual_body, schema)
