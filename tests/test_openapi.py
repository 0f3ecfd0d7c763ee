"""The OpenAPI document: complete, valid OpenAPI 3.1, built from the validating schemas, published.

- ``OPERATIONS`` covers exactly the app's (route, method) pairs: a new route fails here until it
  is documented in ``surveykit/openapi.py``;
- every request schema in the document is the conversion of the colander schema the view validates
  with, and both agree on sample bodies (what colander refuses, the JSON Schema refuses too);
- ``docs/openapi.json`` is the document the code builds (regenerate with
  ``surveykit openapi --out docs/openapi.json``), and ``GET /api/v1/openapi.json`` serves it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import colander
import jsonschema
import pytest
from click.testing import CliRunner
from openapi_spec_validator import validate
from test_route_matrix import app_routes

from surveykit import openapi
from surveykit.accounts import schemas as accounts_schemas
from surveykit.analysis import codebook_schemas, coding_views
from surveykit.cli import cli
from surveykit.instruments import schemas as instrument_schemas
from surveykit.participants import schemas as participant_schemas
from surveykit.security import Permission, access_token_may
from surveykit.studies import schemas as study_schemas
from surveykit.sync import record_schema
from surveykit.sync import schemas as sync_schemas
from surveykit.sync.receipts import RESULTS

DOCS_FILE = Path(__file__).parent.parent / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def document(app: Any) -> dict[str, Any]:
    return openapi.build_document(app.registry)


def test_the_table_covers_exactly_the_apps_operations(app: Any) -> None:
    routes = {key for key, view in app_routes(app).items() if view["pattern"].startswith("/api/")}
    # Only the web console's pages and the field app's files lie outside the API.
    outside = set(app_routes(app)) - routes
    assert all(route.startswith(("console.", "fieldapp_")) for route, _ in outside), sorted(outside)
    missing = sorted(routes - set(openapi.OPERATIONS))
    stale = sorted(set(openapi.OPERATIONS) - routes)
    assert not missing, f"operations missing from surveykit.openapi.OPERATIONS: {missing}"
    assert not stale, f"surveykit.openapi.OPERATIONS names operations the app lacks: {stale}"
    assert openapi.app_operations(app.registry).keys() == routes


def test_an_undocumented_route_stops_the_build(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    table = dict(openapi.OPERATIONS)
    del table[("me", "GET")]
    monkeypatch.setattr(openapi, "OPERATIONS", table)
    with pytest.raises(openapi.UndocumentedOperations, match="'me', 'GET'"):
        openapi.build_document(app.registry)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_operation_is_in_the_document_with_its_security(app: Any, document: dict[str, Any]) -> None:
    found = openapi.app_operations(app.registry)
    operations = {
        (op["operationId"], path) for path, item in document["paths"].items() for op in item.values()
    }
    assert len(operations) == len(found)
    for (route, method), info in found.items():
        path, _ = openapi.split_pattern(info["pattern"])
        op = document["paths"][path][method.lower()]
        assert op["operationId"] == f"{route}_{method.lower()}"
        public = info["permission"] == Permission.PUBLIC
        expected = [] if public else [{"bearerAuth": []}]
        if access_token_may(method, info["permission"]):
            # The downloads a personal access token may make (surveykit.security).
            expected = [{"bearerAuth": []}, {"accessToken": []}]
        assert op["security"] == expected, (route, method)
        assert "401" in op["responses"]
        assert any(status.startswith("2") for status in op["responses"]), (route, method)


def test_only_the_downloads_take_a_personal_access_token(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["accessToken"]["scheme"] == "bearer"
    taking = sorted(
        op["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        if {"accessToken": []} in op["security"]
    )
    assert {"export_country_get", "export_study_get"} <= set(taking)
    assert all(name.endswith("_get") for name in taking)


def test_export_paths_keep_the_country_pattern(document: dict[str, Any]) -> None:
    op = document["paths"]["/api/v1/exports/{study}/{country}.xlsx"]["get"]
    (country,) = [p for p in op["parameters"] if p["name"] == "country"]
    assert country["schema"]["pattern"] == "^[A-Z]{2}$"


# (route, method) -> the colander schema its view validates the body (or query string) with.
BODY_SCHEMAS = {
    ("auth_token", "POST"): accounts_schemas.LoginSchema,
    ("auth_refresh", "POST"): accounts_schemas.RefreshSchema,
    ("auth_logout", "POST"): accounts_schemas.LogoutSchema,
    ("devices", "POST"): accounts_schemas.EnrolSchema,
    ("device_activate", "POST"): accounts_schemas.ActivateSchema,
    ("instruments", "POST"): instrument_schemas.InstrumentDefinitionSchema,
    ("instruments_validate", "POST"): instrument_schemas.InstrumentDefinitionSchema,
    ("instruments_preview", "POST"): instrument_schemas.InstrumentDefinitionSchema,
    ("instrument_compare", "POST"): instrument_schemas.InstrumentDefinitionSchema,
    ("studies", "POST"): study_schemas.StudyCreateSchema,
    ("study_countries", "POST"): study_schemas.CountryCreateSchema,
    ("study_country", "PATCH"): study_schemas.CountryUpdateSchema,
    ("study_activities", "POST"): study_schemas.ActivityCreateSchema,
    ("study_activity", "PATCH"): study_schemas.ActivityUpdateSchema,
    ("participants", "POST"): participant_schemas.RegisterSchema,
    ("participants_import", "POST"): participant_schemas.ImportRowsSchema,
    ("participant", "PATCH"): participant_schemas.ParticipantUpdateSchema,
    ("blocks", "POST"): participant_schemas.BlockRequestSchema,
    ("country_blocks_release", "POST"): participant_schemas.BlockReleaseSchema,
    ("conflict_resolve", "POST"): sync_schemas.ResolveSchema,
    ("field_conflict_resolve", "POST"): sync_schemas.FieldResolveSchema,
    ("me_password", "POST"): accounts_schemas.PasswordChangeSchema,
    ("user_password", "POST"): accounts_schemas.PasswordResetSchema,
    ("users", "POST"): accounts_schemas.UserCreateSchema,
    ("user_grants", "POST"): accounts_schemas.GrantCreateSchema,
    ("codings", "POST"): coding_views.NewCodingSchema,
    ("coding", "PATCH"): coding_views.CodingChangeSchema,
    ("codebook_codes", "POST"): codebook_schemas.CodeCreateSchema,
    ("codebook_code", "PATCH"): codebook_schemas.CodeUpdateSchema,
    ("codebook_code_retire", "POST"): codebook_schemas.CodeActionSchema,
    ("codebook_code_reactivate", "POST"): codebook_schemas.CodeActionSchema,
    ("codebook_code_merge", "POST"): codebook_schemas.CodeMergeSchema,
    ("access_tokens", "POST"): accounts_schemas.AccessTokenCreateSchema,
}
# Operations whose body is a file, not JSON: the codebook import (CSV, XLSX, multipart) and the
# REFI-QDA imports (docs/refi-qda.md).
FILE_BODIES = {
    ("codebook_import", "POST"),
    ("analysis_codebook_qdc", "POST"),
    ("analysis_country_qdpx", "POST"),
}


def test_the_sync_body_publishes_the_record_the_validation_checks(app: Any, document: dict[str, Any]) -> None:
    # The batch's colander schema passes each change on unchecked (a bad one is answered "rejected");
    # the document describes each change with the schemas built from surveykit.sync.validation.
    op = _operation(document, app, "sync", "POST")
    published = op["requestBody"]["content"]["application/json"]["schema"]
    assert published["properties"]["changes"]["items"] == {"$ref": "#/components/schemas/Change"}
    assert published["required"] == [node.name for node in sync_schemas.SyncBatchSchema().children]
    schemas = document["components"]["schemas"]
    assert schemas["Change"] == record_schema.change_schema({"$ref": "#/components/schemas/Record"})
    assert schemas["Record"] == {k: v for k, v in record_schema.record_schema().items() if k != "$schema"}
    results = op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["results"]
    kinds = [
        schemas[ref["$ref"].rsplit("/", 1)[1]]["properties"]["result"]["const"]
        for ref in results["items"]["oneOf"]
    ]
    assert kinds == list(RESULTS)


def _operation(document: dict[str, Any], app: Any, route: str, method: str) -> dict[str, Any]:
    path, _ = openapi.split_pattern(openapi.app_operations(app.registry)[(route, method)]["pattern"])
    return document["paths"][path][method.lower()]


@pytest.mark.parametrize(("route", "method"), sorted(BODY_SCHEMAS), ids=str)
def test_request_bodies_are_the_views_colander_schemas(
    route: str, method: str, app: Any, document: dict[str, Any]
) -> None:
    op = _operation(document, app, route, method)
    published = op["requestBody"]["content"]["application/json"]["schema"]
    assert published == openapi.colander_to_json_schema(BODY_SCHEMAS[(route, method)]())
    # The views really use these schemas: the table's body factory is the same class.
    assert openapi.OPERATIONS[(route, method)].body is BODY_SCHEMAS[(route, method)]


def test_operations_without_a_body_document_none(app: Any, document: dict[str, Any]) -> None:
    for route, method in openapi.app_operations(app.registry):
        op = _operation(document, app, route, method)
        if (route, method) not in {*BODY_SCHEMAS, *FILE_BODIES} and (route, method) != ("sync", "POST"):
            assert "requestBody" not in op, (route, method)


def test_file_bodies_are_binary_in_the_media_types_the_views_accept(
    app: Any, document: dict[str, Any]
) -> None:
    from surveykit.analysis.exchange_views import QDC_UPLOAD_TYPES, QDPX_UPLOAD_TYPES

    accepted = {
        ("analysis_codebook_qdc", "POST"): QDC_UPLOAD_TYPES,
        ("analysis_country_qdpx", "POST"): QDPX_UPLOAD_TYPES,
    }
    for route, method in accepted:
        content = _operation(document, app, route, method)["requestBody"]["content"]
        assert set(content) == set(accepted[(route, method)])
        assert all(item["schema"] == {"type": "string", "format": "binary"} for item in content.values())


def test_query_parameters_are_the_views_colander_schemas(app: Any, document: dict[str, Any]) -> None:
    from surveykit.audit.schemas import AuditQuerySchema

    expected = {
        ("audit", "GET"): AuditQuerySchema(),
        ("devices", "GET"): accounts_schemas.DeviceQuerySchema(),
        ("participants", "GET"): participant_schemas.ListQuerySchema(),
        ("blocks", "GET"): participant_schemas.BlockQuerySchema(),
        ("country_blocks", "GET"): participant_schemas.CountryBlocksQuerySchema(),
        ("sync_changes", "GET"): sync_schemas.pull_query_schema(
            app.registry.settings["surveykit.sync_max_pull"]
        ),
        ("conflicts", "GET"): sync_schemas.ConflictsQuerySchema(),
        ("codings", "GET"): coding_views.ListQuerySchema(),
        ("codebook_import", "POST"): codebook_schemas.ImportQuerySchema(),
    }
    for (route, method), schema in expected.items():
        op = _operation(document, app, route, method)
        query = [p for p in op["parameters"] if p["in"] == "query"]
        assert query == openapi.query_parameters(schema), route
        assert {p["name"] for p in query} == {child.name for child in schema.children}


# Bodies and whether colander accepts them; the JSON Schema must refuse whatever colander refuses
# for a reason JSON Schema can express (types, required keys, unknown keys, lengths, patterns).
SAMPLES = [
    (accounts_schemas.AccessTokenCreateSchema, {"name": "Excel", "expires_in_days": 30}, True),
    (accounts_schemas.AccessTokenCreateSchema, {"name": "Excel", "expires_in_days": "30"}, False),
    (accounts_schemas.AccessTokenCreateSchema, {"name": "Excel", "expires_in_days": 367}, False),
    (accounts_schemas.AccessTokenCreateSchema, {"name": ""}, False),
    (accounts_schemas.AccessTokenCreateSchema, {"expires_in_days": 30}, False),
    (accounts_schemas.LoginSchema, {"username": "amina", "password": "x"}, True),
    (accounts_schemas.LoginSchema, {"username": "amina"}, False),
    (accounts_schemas.LoginSchema, {"username": "amina", "password": "x", "extra": 1}, False),
    (accounts_schemas.LoginSchema, {"username": 12, "password": "x"}, False),
    (accounts_schemas.LoginSchema, {"username": "a" * 65, "password": "x"}, False),
    (study_schemas.StudyCreateSchema, {"slug": "ocsea"}, True),
    (study_schemas.StudyCreateSchema, {"slug": "OCSEA"}, False),
    (study_schemas.CountryCreateSchema, {"code": "KE", "name": "Kenya", "region": None}, True),
    (study_schemas.CountryCreateSchema, {"code": "Kenya", "name": "Kenya"}, False),
    (participant_schemas.RegisterSchema, {"activity": "RA1", "participants": [{"agency": "x"}]}, True),
    (participant_schemas.RegisterSchema, {"activity": "RA1", "participants": []}, False),
    (participant_schemas.RegisterSchema, {"activity": "RA0", "participants": [{"agency": "x"}]}, False),
    (participant_schemas.ParticipantUpdateSchema, {"consent_given": None}, True),
    (participant_schemas.ParticipantUpdateSchema, {"consent_given": "yes"}, False),
    (participant_schemas.ParticipantUpdateSchema, {"status": "gone"}, False),
    (participant_schemas.BlockRequestSchema, {"study": "ocsea", "country": "KE", "activity": "RA1"}, True),
    (
        participant_schemas.BlockRequestSchema,
        {"study": "ocsea", "country": "KE", "activity": "RA1", "size": 0},
        False,
    ),
    (sync_schemas.SyncBatchSchema, {"changes": []}, True),
    (sync_schemas.SyncBatchSchema, {"changes": {}}, False),
    (sync_schemas.ResolveSchema, {"resolution": "keep_current", "base_revision": 2}, None),
    (sync_schemas.ResolveSchema, {"resolution": "keep_current", "base_revision": 0}, False),
    (sync_schemas.ResolveSchema, {"resolution": "keep_current", "base_revision": True}, False),
    (
        coding_views.NewCodingSchema,
        {"interview_uuid": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "code_id": 1},
        True,
    ),
    (coding_views.NewCodingSchema, {"interview_uuid": "x", "code_id": 1}, False),
    (
        coding_views.NewCodingSchema,
        {"interview_uuid": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "code_id": 0},
        False,
    ),
    (coding_views.CodingChangeSchema, {"memo": "why", "start": 0, "end": 3}, True),
    (coding_views.CodingChangeSchema, {"start": -1}, False),
    (coding_views.CodingChangeSchema, {"confirm": "yes"}, False),
    (codebook_schemas.CodeCreateSchema, {"name": "Capacity", "colour": "#1F77B4", "parent_id": None}, True),
    (codebook_schemas.CodeCreateSchema, {"name": "Capacity", "colour": "blue"}, False),
    (codebook_schemas.CodeCreateSchema, {"name": "Capacity", "parent_id": "3"}, False),
    (codebook_schemas.CodeUpdateSchema, {"parent_id": None, "version": 2}, True),
    (codebook_schemas.CodeUpdateSchema, {"name": "x", "version": 0}, False),
    (codebook_schemas.CodeMergeSchema, {"into": 3}, True),
    (codebook_schemas.CodeMergeSchema, {"into": 3, "extra": 1}, False),
]


@pytest.mark.parametrize(("schema_class", "body", "accepted"), SAMPLES)
def test_json_schema_and_colander_agree(schema_class: Any, body: Any, accepted: bool | None) -> None:
    schema = schema_class()
    try:
        schema.deserialize(body)
        colander_ok = True
    except colander.Invalid:
        colander_ok = False
    if accepted is not None:
        assert colander_ok is accepted
    json_ok = jsonschema.Draft202012Validator(openapi.colander_to_json_schema(schema)).is_valid(body)
    assert json_ok is colander_ok, (body, colander_ok)


def test_unknown_colander_types_must_be_described() -> None:
    class Odd(colander.SchemaType):
        pass

    with pytest.raises(TypeError, match="Odd"):
        openapi.colander_to_json_schema(colander.SchemaNode(Odd(), name="odd"))


def test_docs_openapi_json_is_up_to_date() -> None:
    expected = openapi.render(openapi.build_default_document())
    assert DOCS_FILE.read_text("utf-8") == expected, (
        "docs/openapi.json is out of date: run `surveykit openapi --out docs/openapi.json`"
    )


def test_the_cli_writes_and_checks_the_document(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    runner = CliRunner()
    result = runner.invoke(cli, ["openapi", "--check", "--out", str(out)])
    assert result.exit_code == 1 and "out of date" in result.output
    result = runner.invoke(cli, ["openapi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text("utf-8") == DOCS_FILE.read_text("utf-8")
    result = runner.invoke(cli, ["openapi", "--check", "--out", str(out)])
    assert result.exit_code == 0, result.output


def test_the_document_is_served_to_anyone(testapp: Any) -> None:
    response = testapp.get("/api/v1/openapi.json")
    assert response.status_int == 200
    assert response.content_type == "application/json"
    served = response.json
    assert served == json.loads(DOCS_FILE.read_text("utf-8"))
    assert "/api/v1/openapi.json" in served["paths"]
