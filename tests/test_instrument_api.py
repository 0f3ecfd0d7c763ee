"""The instruments HTTP API through WebTest, sharing the test's rolled-back connection."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import webob
import webtest
from instrument_samples import RA1_FILE, RA1_SLUG, minimal_definition
from sqlalchemy.orm import Session
from support_db import bind_to_connection

from surveykit import make_app
from surveykit.instruments import services
from surveykit.security import Permission

LIST = "/api/v1/instruments"
SAMPLE = "/api/v1/instruments/sample-debrief"
RA1 = f"/api/v1/instruments/{RA1_SLUG}"
ENVELOPE_KEYS = {"status", "code", "message", "details"}


def _publish(session: Session, data: dict[str, Any]) -> services.PublishResult:
    result = services.publish(session, services.validate_definition(data))
    session.flush()
    return result


def _revised(title: str = "Sample debrief, revised") -> dict[str, Any]:
    data = minimal_definition()
    data["title"]["en"] = title
    return data


def assert_envelope(response: webtest.TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_int == status
    assert response.content_type == "application/json"
    body = response.json
    assert set(body) == ENVELOPE_KEYS
    assert (body["status"], body["code"]) == (status, code)
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    assert response.headers["Cache-Control"] == "no-store"
    return body


@pytest.fixture
def api(testapp: webtest.TestApp, accounts: Any) -> webtest.TestApp:
    """The test app, signed in as an account without grants: it may read shared instruments only."""
    testapp.authorization = ("Bearer", accounts.token(accounts.user("reader")))
    return testapp


@pytest.fixture
def anonymous(testapp: webtest.TestApp) -> webtest.TestApp:
    """A second client on the same application and connection, signed in as nobody."""
    return webtest.TestApp(testapp.app, extra_environ=dict(testapp.extra_environ))


def raw(client: webtest.TestApp, path: str, **headers: str) -> webob.Response:
    """A response exactly as the application sent it (WebTest would undo the gzip encoding)."""
    request = webob.Request.blank(path, headers=headers)
    if client.authorization is not None:
        request.headers["Authorization"] = " ".join(client.authorization)
    return request.get_response(client.app)


def _strong(etag: str) -> str:
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/"), etag
    return etag


# --- listing ----------------------------------------------------------------------------------


def test_list_is_empty_without_instruments(api: webtest.TestApp) -> None:
    assert api.get(LIST).json == {"instruments": []}


def test_list_shows_published_instruments_but_not_retired_ones(
    api: webtest.TestApp, dbsession: Session
) -> None:
    ra1 = services.publish_file(dbsession, RA1_FILE)
    _publish(dbsession, minimal_definition())
    _publish(dbsession, _revised())
    retired = _publish(dbsession, minimal_definition("retired-one"))
    services.retire(dbsession, retired.slug)
    dbsession.flush()

    listed = {row["slug"]: row for row in api.get(LIST).json["instruments"]}
    assert set(listed) == {RA1_SLUG, "sample-debrief"}
    assert listed[RA1_SLUG]["title"] == "RA1 interview schedule for government duty bearers"
    assert listed[RA1_SLUG]["activity"] == "RA1"
    assert listed[RA1_SLUG]["current_version"] == 1
    assert listed[RA1_SLUG]["languages"] == ["en", "pt"]
    assert listed[RA1_SLUG]["content_hash"] == ra1.content_hash
    assert listed["sample-debrief"]["current_version"] == 2
    assert listed["sample-debrief"]["title"] == "Sample debrief, revised"
    # The retired instrument is still downloadable.
    assert api.get(f"/api/v1/instruments/{retired.slug}").json["version"] == 1


# --- one instrument, its ETags and encodings --------------------------------------------------


def test_current_version_with_strong_etag_and_304(api: webtest.TestApp, dbsession: Session) -> None:
    result = _publish(dbsession, minimal_definition())
    response = api.get(SAMPLE)
    assert response.status_int == 200
    assert response.content_type == "application/json"
    assert response.json == {
        "slug": "sample-debrief",
        "version": 1,
        "content_hash": result.content_hash,
        "definition": services.validate_definition(minimal_definition()),
    }
    etag = _strong(response.headers["ETag"])
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert "Accept-Encoding" in response.headers["Vary"]

    cached = api.get(SAMPLE, headers={"If-None-Match": etag}, status=304)
    assert cached.body == b""
    assert cached.headers["ETag"] == etag
    assert cached.headers["Cache-Control"] == "private, no-cache"

    # A list of tags, or the weak form of the tag, also matches; another tag does not.
    api.get(SAMPLE, headers={"If-None-Match": f'"other", {etag}'}, status=304)
    api.get(SAMPLE, headers={"If-None-Match": f"W/{etag}"}, status=304)
    assert api.get(SAMPLE, headers={"If-None-Match": '"something-else"'}).status_int == 200


def test_a_new_version_changes_the_etag(api: webtest.TestApp, dbsession: Session) -> None:
    _publish(dbsession, minimal_definition())
    old_etag = api.get(SAMPLE).headers["ETag"]
    _publish(dbsession, _revised())
    response = api.get(SAMPLE, headers={"If-None-Match": old_etag})
    assert response.status_int == 200
    assert response.json["version"] == 2
    assert response.headers["ETag"] != old_etag


def test_gzip_is_a_different_representation(api: webtest.TestApp, dbsession: Session) -> None:
    _publish(dbsession, minimal_definition())
    plain = raw(api, SAMPLE)
    zipped = raw(api, SAMPLE, **{"Accept-Encoding": "gzip, deflate"})
    assert plain.status_int == zipped.status_int == 200
    assert plain.content_encoding is None
    assert zipped.content_encoding == "gzip"
    assert zipped.body[:2] == b"\x1f\x8b"
    assert json.loads(gzip.decompress(zipped.body)) == json.loads(plain.body)
    assert len(zipped.body) < len(plain.body)
    plain_tag, zipped_tag = _strong(plain.headers["ETag"]), _strong(zipped.headers["ETag"])
    assert plain_tag != zipped_tag
    assert "Accept-Encoding" in zipped.headers["Vary"]

    for tag in (plain_tag, zipped_tag):
        for encoding in ({}, {"Accept-Encoding": "gzip"}):
            cached = raw(api, SAMPLE, **{"If-None-Match": tag}, **encoding)
            assert cached.status_int == 304, (tag, encoding)
            assert cached.body == b""


@pytest.mark.parametrize("accept_encoding", [None, "identity", "gzip;q=0", "br"])
def test_identity_body_unless_gzip_is_asked_for(
    api: webtest.TestApp, dbsession: Session, accept_encoding: str | None
) -> None:
    _publish(dbsession, minimal_definition())
    headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
    response = raw(api, SAMPLE, **headers)
    assert response.status_int == 200
    assert response.content_encoding is None
    assert json.loads(response.body)["slug"] == "sample-debrief"


def test_numbered_versions_stay_available_and_immutable(api: webtest.TestApp, dbsession: Session) -> None:
    first = _publish(dbsession, minimal_definition())
    second = _publish(dbsession, _revised())

    old = api.get(f"{SAMPLE}/versions/1")
    assert old.json["version"] == 1
    assert old.json["content_hash"] == first.content_hash
    assert old.json["definition"]["title"]["en"] == "Sample debrief"
    assert old.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    api.get(f"{SAMPLE}/versions/1", headers={"If-None-Match": old.headers["ETag"]}, status=304)

    new = api.get(f"{SAMPLE}/versions/2")
    assert (new.json["version"], new.json["content_hash"]) == (2, second.content_hash)
    current = api.get(SAMPLE)
    assert (current.json["version"], current.json["content_hash"]) == (2, second.content_hash)
    assert current.headers["Cache-Control"] == "private, no-cache"


def test_republished_earlier_content_is_served_under_its_own_version(
    api: webtest.TestApp, dbsession: Session
) -> None:
    first = _publish(dbsession, minimal_definition())
    held = api.get(SAMPLE)
    _publish(dbsession, _revised())
    third = _publish(dbsession, minimal_definition())
    assert (third.version, third.content_hash) == (3, first.content_hash)

    assert api.get(f"{SAMPLE}/versions/1").json["version"] == 1
    assert api.get(f"{SAMPLE}/versions/3").json["version"] == 3
    # The body names version 3 now, so the tag a tablet holds for version 1 no longer matches.
    current = api.get(SAMPLE, headers={"If-None-Match": held.headers["ETag"]})
    assert current.status_int == 200
    assert current.json["version"] == 3


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/v1/instruments/never-published", "instrument_not_found"),
        ("/api/v1/instruments/never-published/versions/1", "instrument_not_found"),
        (f"{SAMPLE}/versions/2", "version_not_found"),
        (f"{SAMPLE}/versions/0", "version_not_found"),
        (f"{SAMPLE}/versions/latest", "version_not_found"),
        (f"{SAMPLE}/versions/-1", "version_not_found"),
        (f"{SAMPLE}/versions/1.0", "version_not_found"),
        (f"{SAMPLE}/versions/99999999999999999999", "version_not_found"),
        (f"{SAMPLE}/versions/%C2%B2", "version_not_found"),
        (f"{SAMPLE}/versions/%D9%A3", "version_not_found"),
    ],
)
def test_unknown_instrument_or_version_is_404(
    api: webtest.TestApp, dbsession: Session, path: str, code: str
) -> None:
    _publish(dbsession, minimal_definition())
    assert_envelope(api.get(path, status=404), 404, code)


# --- languages --------------------------------------------------------------------------------


def _texts(value: Any, key: str | None = None) -> list[tuple[str, Any]]:
    """Every translatable text in a served definition, with the key it sits under."""
    found: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for child_key, child in value.items():
            if child_key in services.TRANSLATABLE_KEYS:
                found.append((child_key, child))
            elif child_key == "probes":
                found.extend(("probe", probe) for probe in child)
            else:
                found.extend(_texts(child, child_key))
    elif isinstance(value, list):
        for item in value:
            found.extend(_texts(item, key))
    return found


def _mappings(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value, *(found for child in value.values() for found in _mappings(child))]
    if isinstance(value, list):
        return [found for item in value for found in _mappings(item)]
    return []


def test_lang_pt_marks_fallbacks_on_ra1(api: webtest.TestApp, dbsession: Session) -> None:
    services.publish_file(dbsession, RA1_FILE)
    dbsession.flush()
    response = api.get(RA1, params={"lang": "pt"})
    definition = response.json["definition"]
    assert definition["language"] == "pt"

    texts = _texts(definition)
    assert len(texts) > 100
    # No translation mapping is left anywhere, whatever key it sits under.
    assert not [mapping for mapping in _mappings(definition) if mapping and set(mapping) <= {"en", "pt"}]
    for _, text in texts:
        assert set(text) == {"text", "lang", "fallback"}, text
        assert text["fallback"] is (text["lang"] != "pt")
    by_key: dict[str, set[tuple[str, bool]]] = {}
    for key, text in texts:
        by_key.setdefault(key, set()).add((text["lang"], text["fallback"]))
    assert by_key["probe"] == {("en", True)}
    assert by_key["notes"] == {("en", True)}
    for key in ("title", "description", "prompt", "label"):
        assert by_key[key] == {("pt", False)}, key

    assert definition["title"] == {
        "text": "Guião de entrevista RA1 para titulares de deveres do governo",
        "lang": "pt",
        "fallback": False,
    }
    capacity = definition["sections"][1]["sections"][0]
    assert capacity["title"] == {"text": "Capacidade", "lang": "pt", "fallback": False}
    assert capacity["questions"][0]["probes"][4] == {
        "text": "Is there a designated focal point for OCSEA in your agency or across government?",
        "lang": "en",
        "fallback": True,
    }
    # Each language is its own representation with its own tag.
    canonical = api.get(RA1)
    assert canonical.headers["ETag"] != response.headers["ETag"]
    assert canonical.json["definition"]["title"] == {
        "en": "RA1 interview schedule for government duty bearers",
        "pt": "Guião de entrevista RA1 para titulares de deveres do governo",
    }
    api.get(RA1, params={"lang": "pt"}, headers={"If-None-Match": response.headers["ETag"]}, status=304)


def test_lang_en_has_no_fallbacks(api: webtest.TestApp, dbsession: Session) -> None:
    services.publish_file(dbsession, RA1_FILE)
    dbsession.flush()
    texts = _texts(api.get(f"{RA1}/versions/1", params={"lang": "en"}).json["definition"])
    assert texts and {(text["lang"], text["fallback"]) for _, text in texts} == {("en", False)}


@pytest.mark.parametrize("lang", ["xx", "fr", "1", "", "EN", "pt_BR"])
def test_language_not_offered_is_422(api: webtest.TestApp, dbsession: Session, lang: str) -> None:
    services.publish_file(dbsession, RA1_FILE)
    dbsession.flush()
    body = assert_envelope(api.get(RA1, params={"lang": lang}, status=422), 422, "invalid_input")
    [detail] = body["details"]
    assert (detail["path"], detail["location"]) == ("lang", "querystring")
    assert detail["message"]


# --- errors -----------------------------------------------------------------------------------


def test_unknown_route_is_a_json_404(api: webtest.TestApp) -> None:
    assert_envelope(api.get("/api/v1/nothing-here", status=404), 404, "not_found")
    assert_envelope(api.get("/", status=404), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", LIST, {"GET", "HEAD", "POST"}),
        ("PUT", SAMPLE, {"GET", "HEAD"}),
        ("GET", "/api/v1/instruments/validate", {"POST"}),
        ("GET", f"{SAMPLE}/retire", {"POST"}),
        ("PATCH", f"{SAMPLE}/versions/1", {"GET", "HEAD"}),
    ],
)
def test_wrong_method_is_405_with_allow(
    api: webtest.TestApp, method: str, path: str, allowed: set[str]
) -> None:
    response = api.request(path, method=method, status=405)
    assert_envelope(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


VALIDATE = "/api/v1/instruments/validate"


def _post(api: webtest.TestApp, body: bytes, status: int, content_type: str = "application/json"):
    return api.post(VALIDATE, body, headers={"Content-Type": content_type}, status=status)


def test_malformed_json_is_400(api: webtest.TestApp) -> None:
    body = assert_envelope(_post(api, b'{"slug": ', 400), 400, "malformed_json")
    assert "line 1 column 10" in body["message"]


def test_invalid_utf8_body_is_400(api: webtest.TestApp) -> None:
    body = assert_envelope(_post(api, b'{"slug": "caf\xe9"}', 400), 400, "malformed_json")
    assert "UTF-8" in body["message"]


def test_deeply_nested_json_is_400(api: webtest.TestApp) -> None:
    assert_envelope(_post(api, b"[" * 1000 + b"]" * 1000, 400), 400, "malformed_json")
    nested = b'{"a":' * 1000 + b"1" + b"}" * 1000
    assert_envelope(_post(api, nested, 400), 400, "malformed_json")


def test_nan_is_not_json(api: webtest.TestApp) -> None:
    assert_envelope(_post(api, b'{"slug": NaN}', 400), 400, "malformed_json")


# application/yaml is accepted since instruments may be sent as files (tests/test_instrument_files.py).
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "image/png"])
def test_wrong_content_type_is_415(api: webtest.TestApp, content_type: str) -> None:
    body = json.dumps(minimal_definition()).encode()
    assert_envelope(_post(api, body, 415, content_type), 415, "unsupported_media_type")


def test_json_with_charset_parameter_is_accepted(api: webtest.TestApp) -> None:
    body = json.dumps(minimal_definition()).encode()
    response = _post(api, body, 200, "application/json; charset=utf-8")
    assert response.json["valid"] is True


def test_body_over_the_limit_is_413(
    settings: dict[str, Any], engine: Any, connection: Any, accounts: Any
) -> None:
    small = make_app({**settings, "surveykit.engine": engine, "surveykit.max_body_bytes": 1000})
    # Share the test's connection, so the account below exists for this app too and is rolled back.
    bind_to_connection(small.registry, connection)
    client = webtest.TestApp(small, extra_environ={"HTTP_HOST": "surveykit.test"})
    client.authorization = ("Bearer", accounts.token(accounts.user("reader")))
    json_type = {"Content-Type": "application/json"}

    body = assert_envelope(
        client.post(VALIDATE, b"x" * 1001, headers=json_type, status=413), 413, "body_too_large"
    )
    assert "1001" in body["message"] and "1000" in body["message"]
    # The limit applies before anything else, signed in or not.
    anonymous = webtest.TestApp(small, extra_environ={"HTTP_HOST": "surveykit.test"})
    assert_envelope(
        anonymous.post(VALIDATE, b"x" * 5000, headers=json_type, status=413), 413, "body_too_large"
    )
    # At the limit the body reaches the view, which finds it is not JSON.
    assert_envelope(client.post(VALIDATE, b"x" * 1000, headers=json_type, status=400), 400, "malformed_json")


def test_valid_definition_passes_validation(api: webtest.TestApp) -> None:
    response = api.post_json(VALIDATE, minimal_definition())
    definition = services.validate_definition(minimal_definition())
    assert response.json == {
        "valid": True,
        "slug": "sample-debrief",
        "content_hash": services.content_hash(definition),
        "translations": response.json["translations"],
    }
    assert set(response.json["translations"]) == {"pt"}
    # Validation stores nothing.
    assert api.get(LIST).json == {"instruments": []}


def test_invalid_definition_is_422_with_paths(api: webtest.TestApp) -> None:
    data = minimal_definition()
    data["sections"][0]["questions"][0]["type"] = "essay"
    data["sections"][0]["questions"][1]["promt"] = "typo"
    body = assert_envelope(api.post_json(VALIDATE, data, status=422), 422, "invalid_input")
    assert all(detail["location"] == "body" and detail["message"] for detail in body["details"])
    assert {detail["path"] for detail in body["details"]} == {
        "sections[0].questions[0].type",
        "sections[0].questions[1]",
    }
    assert "sections[0].questions[0].type" in body["message"]

    # Once the shape is right, the rules that span fields report their paths too.
    data = minimal_definition()
    data["sections"][1]["sections"][0]["id"] = "first"
    body = assert_envelope(api.post_json(VALIDATE, data, status=422), 422, "invalid_input")
    # post_json sends the body on one line: the column finds the key.
    sent = json.dumps(data)
    assert body["details"] == [
        {
            "location": "body",
            "path": "sections[1].sections[0].id",
            "message": "section id 'first' is already used at sections[0]",
            "line": 1,
            "column": sent.rindex('"id": "first"') + 1,
        }
    ]


@pytest.mark.parametrize("payload", [[], None, "text", 3])
def test_definition_that_is_not_an_object_is_422(api: webtest.TestApp, payload: Any) -> None:
    body = assert_envelope(api.post_json(VALIDATE, payload, status=422), 422, "invalid_input")
    assert body["details"][0]["path"] == ""


# --- who may call what ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", LIST), ("GET", SAMPLE), ("GET", f"{SAMPLE}/versions/1"), ("POST", VALIDATE)],
)
def test_reading_needs_a_signed_in_caller(
    anonymous: webtest.TestApp, dbsession: Session, method: str, path: str
) -> None:
    _publish(dbsession, minimal_definition())
    response = anonymous.request(
        path,
        method=method,
        body=json.dumps(minimal_definition()).encode(),
        expect_errors=True,
        headers={"Content-Type": "application/json"},
    )
    assert_envelope(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_bad_token_is_401(anonymous: webtest.TestApp, dbsession: Session) -> None:
    _publish(dbsession, minimal_definition())
    anonymous.authorization = ("Bearer", "not-a-token")
    assert_envelope(anonymous.get(SAMPLE, status=401), 401, "unauthenticated")


@pytest.mark.parametrize("client", ["anonymous", "api"])
def test_publishing_needs_a_coordinator(
    request: pytest.FixtureRequest, dbsession: Session, client: str
) -> None:
    caller: webtest.TestApp = request.getfixturevalue(client)
    response = caller.post_json(LIST, minimal_definition(), status=(401, 403))
    expected = {401: "unauthenticated", 403: "forbidden"}[response.status_int]
    assert_envelope(response, response.status_int, expected)
    if client == "anonymous":
        assert response.status_int == 401
    assert services.list_instruments(dbsession, include_retired=True) == []


@pytest.mark.parametrize("client", ["anonymous", "api"])
def test_retiring_needs_a_coordinator(
    request: pytest.FixtureRequest, dbsession: Session, client: str
) -> None:
    _publish(dbsession, minimal_definition())
    caller: webtest.TestApp = request.getfixturevalue(client)
    response = caller.post(f"{SAMPLE}/retire", status=(401, 403))
    assert_envelope(
        response, response.status_int, {401: "unauthenticated", 403: "forbidden"}[response.status_int]
    )
    assert services.get_instrument(dbsession, "sample-debrief").retired_at is None


def test_url_that_is_not_utf8_is_400(api: webtest.TestApp, anonymous: webtest.TestApp) -> None:
    for client in (api, anonymous):
        assert_envelope(client.get("/api/v1/instruments/caf%E9", status=400), 400, "bad_request")
        assert_envelope(client.get(f"{RA1}?lang=%FF", status=400), 400, "bad_request")


ERROR_REQUESTS = [
    ("GET", "/nowhere", None, None),
    ("GET", "/api/v1/instruments/never-published", None, None),
    ("GET", f"{SAMPLE}/versions/x", None, None),
    ("DELETE", LIST, None, None),
    ("POST", VALIDATE, b"{", "application/json"),
    ("POST", VALIDATE, b"{}", "text/html"),
    ("POST", VALIDATE, b"{}", "application/json"),
    ("POST", LIST, b"{}", "application/json"),
    ("GET", f"{SAMPLE}?lang=xx", None, None),
    ("GET", "/api/v1/instruments/%FF", None, None),
]


@pytest.mark.parametrize(("method", "path", "body", "content_type"), ERROR_REQUESTS)
@pytest.mark.parametrize("accept", [None, "text/html,application/xhtml+xml,*/*;q=0.8"])
@pytest.mark.parametrize("client", ["api", "anonymous"])
def test_errors_are_never_html(
    request: pytest.FixtureRequest,
    dbsession: Session,
    client: str,
    method: str,
    path: str,
    body: bytes | None,
    content_type: str | None,
    accept: str | None,
) -> None:
    caller: webtest.TestApp = request.getfixturevalue(client)
    _publish(dbsession, minimal_definition())
    headers = {} if accept is None else {"Accept": accept}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = caller.request(path, method=method, body=body or b"", headers=headers, expect_errors=True)
    assert response.status_int >= 400
    assert response.content_type == "application/json"
    assert b"<html" not in response.body.lower()
    assert set(response.json) == ENVELOPE_KEYS
    assert response.json["status"] == response.status_int


# --- every API view declares a permission -----------------------------------------------------


def test_every_api_view_declares_a_permission(app: Any) -> None:
    introspector = app.registry.introspector
    api_routes = {
        route["name"]
        for route in (item["introspectable"] for item in introspector.get_category("routes"))
        if route["pattern"].startswith("/api/")
    }
    assert {"instruments", "instrument", "instrument_version", "instruments_validate"} <= api_routes

    api_views = [
        item
        for item in introspector.get_category("views")
        if item["introspectable"]["route_name"] in api_routes
    ]
    assert len(api_views) >= 6
    declared = set(Permission) - {Permission.UNDECLARED}
    for item in api_views:
        view = item["introspectable"]
        name = f"{view['route_name']} {view['request_methods']}"
        # A view given no permission has no related permission at all (Pyramid registers none).
        permissions = [rel["value"] for rel in item["related"] if rel.category_name == "permissions"]
        assert len(permissions) == 1, name
        assert permissions[0] is not None, name
        assert permissions[0] in declared, name
    # Every API route is served by some view, so none was missed above.
    assert {item["introspectable"]["route_name"] for item in api_views} == api_routes


def test_the_instrument_views_declare_the_expected_permissions(app: Any) -> None:
    found = {}
    for item in app.registry.introspector.get_category("views"):
        view = item["introspectable"]
        if view["route_name"] and view["route_name"].startswith("instrument"):
            [permission] = [rel["value"] for rel in item["related"] if rel.category_name == "permissions"]
            found[(view["route_name"], view["request_methods"])] = permission
    assert found == {
        ("instruments", "GET"): Permission.INSTRUMENTS_READ,
        ("instrument", "GET"): Permission.INSTRUMENTS_READ,
        ("instrument_version", "GET"): Permission.INSTRUMENTS_READ,
        ("instrument_version_xlsx", "GET"): Permission.INSTRUMENTS_READ,
        ("instrument_record_schema", "GET"): Permission.INSTRUMENTS_READ,
        ("instruments_validate", "POST"): Permission.INSTRUMENTS_VALIDATE,
        ("instruments_preview", "POST"): Permission.INSTRUMENTS_VALIDATE,
        ("instrument_preview", "GET"): Permission.INSTRUMENTS_READ,
        ("instrument_compare", "GET"): Permission.INSTRUMENTS_READ,
        ("instrument_compare", "POST"): Permission.INSTRUMENTS_READ,
        ("instruments", "POST"): Permission.INSTRUMENTS_PUBLISH,
        ("instrument_retire", "POST"): Permission.INSTRUMENTS_PUBLISH,
    }
