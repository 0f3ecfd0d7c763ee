"""The text rule (surveykit/text.py) on every way in: JSON bodies, path segments, query strings,
instrument files and imported sheets. Also duplicate JSON keys and the bounds of the audit query.

The first tests replay the requests of issue 11 (item 5) that answered 500; each must now be a clear
4xx naming the location and path of the bad text, storing nothing. The property tests below put NUL,
lone surrogates and control characters into otherwise valid requests of every operation.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import webtest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from instrument_samples import minimal_definition, write_yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_route_matrix import CALLERS, CALLS, EXPECTED, World, app_routes
from test_sync_support import SyncWorld, change, make_record, new_uuid

from surveykit import text as text_rule
from surveykit.audit.models import AuditEvent
from surveykit.cli import cli
from surveykit.db import Base
from surveykit.instruments import services as instruments
from surveykit.participants import importer
from surveykit.studies import services as studies

# Characters refused in every kind of text, one-line or multi-line.
ALWAYS_REFUSED = st.one_of(
    st.just("\x00"),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.sampled_from([chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"]),
    st.integers(0x7F, 0x9F).map(chr),
)


def table_counts(session: Session) -> dict[str, int]:
    """Rows per table, the audit log left out (refusals are audited on purpose)."""
    session.expire_all()
    return {
        table.name: session.scalar(select(func.count()).select_from(table))
        for table in Base.metadata.sorted_tables
        if table.name != AuditEvent.__tablename__
    }


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> World:
    world = World(accounts, dbsession)
    for slug in ("ocsea", "other"):
        study = studies.get_study(dbsession, slug)
        studies.add_activity(dbsession, study, "RA1", "Duty bearers")
    dbsession.flush()
    return world


def send(
    testapp: webtest.TestApp, method: str, url: str, headers: dict[str, str], body: Any = None
) -> webtest.TestResponse:
    if body is None:
        return testapp.request(url, method=method, headers=headers, expect_errors=True)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    return testapp.request(
        url, method=method, body=raw, content_type="application/json", headers=headers, expect_errors=True
    )


def assert_refused(response: webtest.TestResponse, status: int, location: str, path: str) -> None:
    assert response.status_int == status, response.text
    body = response.json
    assert set(body) == {"status", "code", "message", "details"} and body["status"] == status
    assert {"location": location, "path": path} in [
        {"location": d["location"], "path": d["path"]} for d in body["details"]
    ], body


# (caller, method, URL, body, status, location, path): the issue's reproductions and their kin.
ISSUE_REQUESTS = [
    (
        "anonymous",
        "POST",
        "/api/v1/auth/token",
        {"username": "a\x00", "password": "x"},
        422,
        "body",
        "username",
    ),
    (
        "anonymous",
        "POST",
        "/api/v1/auth/token",
        {"username": "a", "password": "\ud800"},
        422,
        "body",
        "password",
    ),
    ("anonymous", "POST", "/api/v1/auth/refresh", {"refresh_token": "\ud800"}, 422, "body", "refresh_token"),
    ("anonymous", "POST", "/api/v1/auth/logout", {"refresh_token": "\x00"}, 422, "body", "refresh_token"),
    ("anonymous", "POST", "/api/v1/devices/activate", {"code": "\ud800"}, 422, "body", "code"),
    ("anonymous", "POST", "/api/v1/devices/activate", {"code": "AB\x00"}, 422, "body", "code"),
    ("fieldworker_ke", "GET", "/api/v1/instruments/ra1%00", None, 400, "path", "slug"),
    (
        "fieldworker_ke",
        "GET",
        "/api/v1/instruments/ocsea-debrief/versions/1%00",
        None,
        400,
        "path",
        "version",
    ),
    ("device", "GET", "/api/v1/blocks?study=%00", None, 400, "querystring", "study"),
    ("global_admin", "GET", "/api/v1/audit?before=99999999999999999999", None, 422, "querystring", "before"),
    (
        "global_admin",
        "GET",
        "/api/v1/audit?until=9999-12-31T23:59:59-12:00",
        None,
        422,
        "querystring",
        "until",
    ),
    (
        "global_admin",
        "GET",
        "/api/v1/audit?since=0001-01-01T00:00:00%2B14:00",
        None,
        422,
        "querystring",
        "since",
    ),
    ("global_admin", "GET", "/api/v1/audit?actor=%00", None, 400, "querystring", "actor"),
    ("global_admin", "GET", "/api/v1/audit?action=a%1b%5b2J", None, 400, "querystring", "action"),
    ("global_admin", "GET", "/api/v1/devices?username=%00", None, 400, "querystring", "username"),
    (
        "coordinator_ke",
        "POST",
        "/api/v1/devices",
        {"username": "m-target-ke\x00", "label": "t"},
        422,
        "body",
        "username",
    ),
    (
        "coordinator_ke",
        "POST",
        "/api/v1/devices",
        {"username": "m-target-ke", "label": "t\x00"},
        422,
        "body",
        "label",
    ),
    ("coordinator_ke", "DELETE", "/api/v1/devices/%00", None, 400, "path", "device_id"),
    ("global_admin", "POST", "/api/v1/studies", {"slug": "nul-study", "name": "N\x00"}, 422, "body", "name"),
    (
        "global_admin",
        "POST",
        "/api/v1/studies/ocsea/countries",
        {"code": "QA", "name": "\x00"},
        422,
        "body",
        "name",
    ),
    (
        "global_admin",
        "PATCH",
        "/api/v1/studies/ocsea/countries/KE",
        {"region": "East\x9b"},
        422,
        "body",
        "region",
    ),
    ("global_admin", "GET", "/api/v1/studies/ocsea%00", None, 400, "path", "study"),
    ("global_admin", "GET", "/api/v1/studies/ocsea/participants/RA1-KE-01-A%00", None, 400, "path", "pid"),
    (
        "coordinator_ke",
        "POST",
        "/api/v1/studies/ocsea/countries/KE/participants",
        {"activity": "RA1", "participants": [{"agency": "Ministry\x00"}]},
        422,
        "body",
        "participants[0].agency",
    ),
    (
        "coordinator_ke",
        "POST",
        "/api/v1/studies/ocsea/countries/KE/participants",
        {"activity": "RA1", "participants": [{"agency": "Ministry", "position": "\ud800"}]},
        422,
        "body",
        "participants[0].position",
    ),
    ("global_admin", "GET", "/api/v1/exports/ocsea%00/KE.xlsx", None, 400, "path", "study"),
    (
        "global_admin",
        "GET",
        "/api/v1/sync/changes?study=ocsea&cursor=99999999999",
        None,
        422,
        "querystring",
        "cursor",
    ),
    ("global_admin", "GET", "/api/v1/conflicts?study=ocsea&after=-1", None, 422, "querystring", "after"),
]


@pytest.mark.parametrize(
    ("caller", "method", "url", "body", "status", "location", "path"),
    ISSUE_REQUESTS,
    ids=[f"{r[1]} {r[2]} {r[6]}" for r in ISSUE_REQUESTS],
)
def test_the_issues_requests_are_clear_refusals_that_store_nothing(
    testapp: webtest.TestApp,
    dbsession: Session,
    world: World,
    caller: str,
    method: str,
    url: str,
    body: Any,
    status: int,
    location: str,
    path: str,
) -> None:
    headers = world.headers(caller)
    before = table_counts(dbsession)
    response = send(testapp, method, url, headers, body)
    assert_refused(response, status, location, path)
    assert table_counts(dbsession) == before


@pytest.mark.parametrize("field", ["title", "prompt"], ids=["instrument title", "question prompt"])
def test_nul_in_an_instrument_is_refused_with_its_path(
    testapp: webtest.TestApp, dbsession: Session, world: World, field: str
) -> None:
    definition = minimal_definition("nul-debrief")
    if field == "title":
        definition["title"] = "Debrief\x00"
        path = "title"
    else:
        definition["sections"][0]["questions"][0]["prompt"] = "Why\x00?"
        path = "sections[0].questions[0].prompt"
    headers = world.headers("global_admin")
    before = table_counts(dbsession)
    for url in ("/api/v1/instruments", "/api/v1/instruments/validate"):
        response = send(testapp, "POST", url, headers, definition)
        assert_refused(response, 422, "body", path)
    assert table_counts(dbsession) == before


def test_a_refused_character_is_named_by_its_code_point(testapp: webtest.TestApp, world: World) -> None:
    response = send(testapp, "POST", "/api/v1/auth/token", {}, {"username": "a\x1b[2J", "password": "x"})
    assert response.json["details"] == [
        {"location": "body", "path": "username", "message": "contains the control character U+001B"}
    ]
    assert "\x1b" not in response.text


def test_a_key_with_a_refused_character_is_named_without_the_character(
    testapp: webtest.TestApp, world: World
) -> None:
    response = send(testapp, "POST", "/api/v1/auth/token", {}, {"username": "a", "pass\x00": "x"})
    assert_refused(response, 422, "body", "pass\\u0000")
    assert "\\u0000" in response.json["details"][0]["path"]


# ------------------------------------------------------------------------------ one line or several


def test_line_breaks_are_refused_in_one_line_fields_and_kept_in_free_text(
    testapp: webtest.TestApp, dbsession: Session, world: World
) -> None:
    admin = world.headers("global_admin")
    response = send(
        testapp, "POST", "/api/v1/devices", admin, {"username": "m-target-ke", "label": "KE\ntablet"}
    )
    assert_refused(response, 422, "body", "label")
    assert "line break" in response.json["details"][0]["message"]
    response = send(
        testapp,
        "POST",
        "/api/v1/studies/ocsea/countries/KE/participants",
        admin,
        {"activity": "RA1", "participants": [{"agency": "Ministry\tof ICT"}]},
    )
    assert_refused(response, 422, "body", "participants[0].agency")

    definition = minimal_definition("multi-line-debrief")
    definition["sections"][0]["questions"][0]["prompt"] = "First line.\r\nSecond line,\twith a tab."
    response = send(testapp, "POST", "/api/v1/instruments", admin, definition)
    assert response.status_int == 201, response.text
    stored = instruments.load_definition(dbsession, "multi-line-debrief", 1)
    assert stored["sections"][0]["questions"][0]["prompt"]["en"] == "First line.\r\nSecond line,\twith a tab."


def test_query_strings_and_paths_are_one_line(testapp: webtest.TestApp, world: World) -> None:
    headers = world.headers("global_admin")
    assert_refused(send(testapp, "GET", "/api/v1/audit?actor=a%0Ab", headers), 400, "querystring", "actor")
    assert_refused(send(testapp, "GET", "/api/v1/studies/ocsea%09", headers), 400, "path", "study")
    assert_refused(send(testapp, "GET", "/api/v1/me?x%00=1", headers), 400, "querystring", "x\\u0000")


# --------------------------------------------------------------------------------- duplicate keys


def test_a_duplicate_key_is_malformed_json_naming_the_key_and_its_place(
    testapp: webtest.TestApp, dbsession: Session, world: World
) -> None:
    coordinator = world.headers("coordinator_ke")
    before = table_counts(dbsession)
    response = send(
        testapp,
        "POST",
        "/api/v1/auth/token",
        {},
        b'{"username": "m-login", "password": "wrong", "password": "matrix password 1"}',
    )
    assert_refused(response, 400, "body", "password")
    assert response.json["code"] == "malformed_json"
    assert "'password' appears more than once in the top-level object" in response.json["message"]

    body = (
        b'{"activity": "RA1", "participants": [{"agency": "A"}, '
        b'{"agency": "B", "position": "x", "agency": "C"}]}'
    )
    response = send(
        testapp,
        "POST",
        "/api/v1/studies/ocsea/countries/KE/participants",
        coordinator,
        body,
    )
    assert_refused(response, 400, "body", "participants[1].agency")
    assert "in the object at participants[1]" in response.json["message"]
    assert table_counts(dbsession) == before


# ------------------------------------------------------------------------------------------- sync


@pytest.fixture
def sync_world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


def test_a_record_with_refused_text_is_rejected_alone_and_line_breaks_in_answers_are_kept(
    testapp: webtest.TestApp, sync_world: SyncWorld
) -> None:
    tablet = sync_world.tablet()
    escape = make_record(tablet.mint(), notes="hidden \x1b[8m text")
    multi_line = make_record(tablet.mint(), notes="first line\nsecond line\tand a tab")
    key = make_record(tablet.mint())
    key["answers"]["people\x7f"] = 3
    results = tablet.push(testapp, [change(new_uuid(), 0, r) for r in (escape, multi_line, key)]).json[
        "results"
    ]
    assert [r["result"] for r in results] == ["rejected", "created", "rejected"]
    assert results[0]["errors"][0]["path"] == "changes[0].record.notes"
    assert results[0]["errors"][0]["message"] == "contains the control character U+001B"
    assert results[2]["errors"][0]["path"] == "changes[2].record.answers"


def test_refused_text_outside_the_records_refuses_the_whole_batch(
    testapp: webtest.TestApp, dbsession: Session, sync_world: SyncWorld
) -> None:
    tablet = sync_world.tablet()
    before = table_counts(dbsession)
    good = change(new_uuid(), 0, make_record(tablet.mint()))
    bad = {**change(new_uuid(), 0, make_record(tablet.mint())), "uuid": "\x00"}
    response = send(testapp, "POST", "/api/v1/sync", tablet.headers, {"changes": [good, bad]})
    assert_refused(response, 422, "body", "changes[1].uuid")
    duplicated = json.dumps({"changes": [good]}).replace(
        '"base_revision": 0', '"base_revision": 0, "base_revision": 1'
    )
    response = send(testapp, "POST", "/api/v1/sync", tablet.headers, duplicated.encode())
    assert_refused(response, 400, "body", "changes[0].base_revision")
    assert table_counts(dbsession) == before


# ------------------------------------------------------------------------- inputs without HTTP


def test_an_instrument_file_with_refused_text_is_not_published_from_the_command_line(
    tmp_path: Any, settings: dict[str, Any], engine: Any
) -> None:
    definition = minimal_definition("cli-nul-debrief")
    definition["sections"][0]["questions"][0]["prompt"] = "Tell us\x00"
    definition["sections"][0]["questions"][0]["probes"] = ["Probe \x1b[2J"]
    path = write_yaml(tmp_path / "bad.yaml", definition)
    result = CliRunner().invoke(cli, ["instruments", "validate", str(path)])
    assert result.exit_code == 1, result.output
    assert "sections[0].questions[0].prompt: contains a NUL character (U+0000)" in result.output
    assert "sections[0].questions[0].probes[0]: contains the control character U+001B" in result.output

    with pytest.raises(instruments.DefinitionError) as refused:
        instruments.validate_definition({**minimal_definition("x-debrief"), "title": "Lone \ud83d half"})
    assert refused.value.errors == [("title", "contains a lone surrogate (U+D83D), which is not text")]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("Ministry\x1b[2J", "contains the control character U+001B"),
        ("Police\x9b2J", "contains the control character U+009B"),
    ],
)
def test_an_imported_sheet_obeys_the_same_rule(cell: str, message: str) -> None:
    data = f"agency,position\n{cell},\n".encode()
    with pytest.raises(importer.ImportRejected) as rejected:
        importer.parse(data, importer.CSV)
    assert [(e.row, e.column, e.message) for e in rejected.value.errors] == [
        (2, "agency", f"agency {message}")
    ]


# ----------------------------------------------------------------------------- property tests


def string_spots(value: Any) -> list[tuple[str, tuple[Any, ...], str]]:
    """Every place a string sits in JSON-like data, as (kind, location, path of the parent):
    ``value`` is the string at that location, ``key`` the key at that location."""
    spots: list[tuple[str, tuple[Any, ...], str]] = []

    def walk(item: Any, where: tuple[Any, ...], parent_path: str, path: str) -> None:
        if isinstance(item, str):
            spots.append(("value", where, parent_path))
        elif isinstance(item, dict):
            for key, child in item.items():
                spots.append(("key", (*where, key), path))
                walk(child, (*where, key), path, text_rule.json_path(path, key))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                walk(child, (*where, index), path, text_rule.json_path(path, index))

    walk(value, (), "", "")
    return spots


def spoil(
    data: Any, kind: str, where: tuple[Any, ...], parent_path: str, char: str, at: int
) -> tuple[Any, str]:
    """A copy of ``data`` with ``char`` put into the string (or key) at ``where``, and the path an
    error about it must name."""
    data = json.loads(json.dumps(data))
    parent = data
    for step in where[:-1]:
        parent = parent[step]
    last = where[-1]
    original = parent[last] if kind == "value" else last
    cut = at % (len(original) + 1)
    spoilt = original[:cut] + char + original[cut:]
    if kind == "value":
        parent[last] = spoilt
        return data, text_rule.json_path(parent_path, last)
    parent[spoilt] = parent.pop(last)
    return data, text_rule.json_path(parent_path, spoilt)


def allowed_caller(route: str, method: str) -> str:
    signed_in = [
        caller for caller in CALLERS if caller in EXPECTED[(route, method)] and caller != "anonymous"
    ]
    return signed_in[0] if signed_in else "anonymous"


# The API's routes (the console's forms are not JSON; its errors are pages).
API_CALLS = sorted(key for key in CALLS if not key[0].startswith("console."))
BODY_ROUTES = sorted(key for key in API_CALLS if key[1] in ("POST", "PATCH"))
PROPERTY_SETTINGS = settings(
    max_examples=20, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
# In a URL a character travels percent-encoded as UTF-8, which a lone surrogate does not have (a URL
# that is not UTF-8 is refused on its own, tests/test_hostile_clients.py); the URL is one line.
URL_REFUSED = st.one_of(st.sampled_from([chr(c) for c in range(0x20)]), st.integers(0x7F, 0x9F).map(chr))


@pytest.mark.parametrize(("route", "method"), BODY_ROUTES, ids=lambda value: str(value))
@PROPERTY_SETTINGS
@given(data=st.data(), char=ALWAYS_REFUSED)
def test_refused_text_anywhere_in_a_valid_body_is_a_4xx_naming_its_path(
    testapp: webtest.TestApp, dbsession: Session, world: World, route: str, method: str, data: Any, char: str
) -> None:
    call = CALLS[(route, method)](world)
    body = call.json
    if (route, method) == ("sync", "POST"):
        body = {"changes": [{"uuid": new_uuid(), "base_revision": 0, "record": {}}]}
    if body is None:
        return  # an operation without a body (retire, re-enrol)
    kind, where, parent_path = data.draw(st.sampled_from(string_spots(body)))
    spoilt, path = spoil(body, kind, where, parent_path, char, data.draw(st.integers(0, 64)))
    headers = world.headers(allowed_caller(route, method))
    before = table_counts(dbsession)
    response = send(testapp, call.method, call.url, headers, spoilt)
    if path == "changes[0].record" or path.startswith(("changes[0].record.", "changes[0].record[")):
        # A sync record is checked on its own: rejected in a 200, the rest of the batch unaffected.
        assert response.status_int == 200, response.text
        [result] = response.json["results"]
        assert result["result"] == "rejected", result
        assert any(path.startswith(error["path"]) for error in result["errors"]), (path, result)
    else:
        assert response.status_int == 422, response.text
        assert ("body", path) in [(d["location"], d["path"]) for d in response.json["details"]], (
            path,
            response.json,
        )
    assert table_counts(dbsession) == before


def _encoded(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


@pytest.mark.parametrize(("route", "method"), API_CALLS, ids=lambda value: str(value))
@settings(PROPERTY_SETTINGS, max_examples=10)
@given(data=st.data(), char=URL_REFUSED)
def test_refused_text_in_any_path_segment_or_query_parameter_is_a_400_naming_it(
    app: Any,
    testapp: webtest.TestApp,
    dbsession: Session,
    world: World,
    route: str,
    method: str,
    data: Any,
    char: str,
) -> None:
    pattern = app_routes(app)[(route, method)]["pattern"]
    # A placeholder with a pattern of its own ({country:[A-Z]{2}}) does not match such text: a 404.
    placeholders = re.findall(r"\{(\w+)(:(?:[^{}]|\{[^{}]*\})*)?\}", pattern)
    segments = [name for name, own_pattern in placeholders if not own_pattern]
    call = CALLS[(route, method)](world)
    where = data.draw(st.sampled_from(["querystring", *(["path"] if segments else [])]))
    if where == "path":
        name = data.draw(st.sampled_from(segments))
        url = pattern.replace("{" + name + "}", f"x{_encoded(char)}y")
        # The other placeholders get a value their own pattern matches (a country, a number).
        url = re.sub(r"\{\w+:\\d(?:[^{}]|\{[^{}]*\})*\}", "1", url)
        url = re.sub(r"\{\w+(?::(?:[^{}]|\{[^{}]*\})*)?\}", "KE", url)
    else:
        name = data.draw(st.sampled_from(["study", "limit", "q"]))
        url = f"{call.url}{'&' if '?' in call.url else '?'}{name}=a{_encoded(char)}"
    headers = world.headers(allowed_caller(route, method))
    before = table_counts(dbsession)
    response = send(testapp, call.method, url, headers, call.json)
    assert_refused(response, 400, where, name)
    assert table_counts(dbsession) == before
