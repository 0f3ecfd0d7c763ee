"""The OpenAPI 3.1 document of the API, built from the application itself.

- the operations are the app's own routes and views, read from Pyramid's introspector;
- request bodies and query parameters are the colander schemas the views validate with, converted
  to JSON Schema here (``colander_to_json_schema``), so the two cannot drift apart;
- what the views do not expose (which schema a view passes to ``json_body``, what it answers) is in
  ``OPERATIONS``, one row per (route, method). ``tests/test_openapi.py`` checks that the table covers
  exactly the app's operations: a new route fails the suite until it is documented here.

Served at ``GET /api/v1/openapi.json`` to everyone, and written to ``docs/openapi.json`` by
``surveykit openapi --out docs/openapi.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import colander
from pyramid.authorization import Allow, Everyone
from pyramid.request import Request
from pyramid.response import Response
from pyramid.static import static_view
from pyramid.view import view_config

from surveykit.accounts import schemas as accounts_schemas
from surveykit.audit.schemas import AuditQuerySchema
from surveykit.errors import ErrorCode
from surveykit.exports.views import ExportQuerySchema
from surveykit.instruments import schemas as instrument_schemas
from surveykit.openapi_codebook import CODEBOOK_OPERATIONS
from surveykit.openapi_coding import CODING_OPERATIONS
from surveykit.openapi_console import CONSOLE_OPERATIONS
from surveykit.openapi_exports import STATS_EXPORT_OPERATIONS
from surveykit.openapi_jobs import JOB_OPERATIONS
from surveykit.openapi_refi import REFI_OPERATIONS
from surveykit.openapi_shapes import (
    ANY_OBJECT,
    BOOL,
    DATETIME,
    INT,
    JSON,
    NULLABLE_DATETIME,
    NULLABLE_STR,
    STR,
    Operation,
    Reply,
)
from surveykit.openapi_shapes import list_of as _list_of
from surveykit.openapi_shapes import obj as _obj
from surveykit.openapi_studio import STUDIO_OPERATIONS
from surveykit.openapi_tokens import ACCESS_TOKEN_SCHEME, TOKEN_OPERATIONS
from surveykit.participants import schemas as participant_schemas
from surveykit.security import Permission, access_token_may
from surveykit.studies import schemas as study_schemas
from surveykit.sync import record_schema
from surveykit.sync import schemas as sync_schemas
from surveykit.sync.receipts import RESULTS

OPENAPI_VERSION = "3.1.0"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv"

# ------------------------------------------------------------------------ colander -> JSON Schema


def _not_blank() -> dict[str, Any]:
    # StrictString strips the text and refuses what is left empty.
    return {"type": "string", "pattern": r"\S"}


def _type_schema(node: colander.SchemaNode) -> dict[str, Any]:
    typ = node.typ
    # Most specific first: several of the project's types subclass others.
    if isinstance(typ, study_schemas.NullableText):
        return {"type": ["string", "null"]}
    if isinstance(typ, instrument_schemas.StrictString):
        return _not_blank()
    if isinstance(typ, instrument_schemas.TranslatableText):
        return {
            "anyOf": [
                _not_blank(),
                {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"pattern": instrument_schemas.LANGUAGE_PATTERN},
                    "additionalProperties": _not_blank(),
                },
            ],
            "description": "text in the default language, or a mapping of language code to text",
        }
    if isinstance(typ, participant_schemas.NullableBoolean):
        return {"type": ["boolean", "null"]}
    if isinstance(typ, instrument_schemas.StrictBoolean):
        return {"type": "boolean"}
    if isinstance(typ, instrument_schemas.StrictNumber):
        return {"type": "number"}
    if isinstance(typ, sync_schemas.StrictInt):
        return {"type": ["integer", "null"]}
    if isinstance(typ, participant_schemas.StrictInteger):
        return {"type": "integer"}
    if isinstance(typ, sync_schemas.JSONArray):
        return {"type": "array"}
    if isinstance(typ, sync_schemas.JSONObject):
        return {"type": ["object", "null"]}
    if isinstance(typ, sync_schemas.RegistryValue):
        return {"type": ["string", "boolean", "null"], "maxLength": 500}
    if isinstance(typ, participant_schemas.ISODate):
        return {"type": ["string", "null"], "format": "date"}
    if isinstance(typ, participant_schemas.QueryBoolean):
        return {"type": "boolean"}
    if isinstance(typ, participant_schemas.AnyValue):
        return {}
    if isinstance(typ, colander.Mapping):
        properties = {child.name: colander_to_json_schema(child) for child in node.children}
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        required = [child.name for child in node.children if child.required]
        if required:
            schema["required"] = required
        if typ.unknown == "raise":
            schema["additionalProperties"] = False
        return schema
    if isinstance(typ, colander.Sequence):
        return {"type": "array", "items": colander_to_json_schema(node.children[0])}
    if isinstance(typ, colander.DateTime):
        return {"type": "string", "format": "date-time"}
    if isinstance(typ, colander.Integer):
        return {"type": "integer"}
    if isinstance(typ, colander.String):
        return {"type": "string"}
    # A new type must be described here before the document can be built (and the suite pass).
    raise TypeError(f"no JSON Schema for colander type {type(typ).__name__} (node {node.name!r})")


def _apply_validator(schema: dict[str, Any], validator: Any) -> None:
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if isinstance(validator, colander.All):
        for inner in validator.validators:
            _apply_validator(schema, inner)
    elif isinstance(validator, colander.Length):
        low, high = ("minItems", "maxItems") if "array" in kinds else ("minLength", "maxLength")
        if validator.min is not None:
            schema[low] = validator.min
        if validator.max is not None:
            schema[high] = validator.max
    elif isinstance(validator, colander.Range):
        if validator.min is not None:
            schema["minimum"] = validator.min
        if validator.max is not None:
            schema["maximum"] = validator.max
    elif isinstance(validator, colander.Regex):
        schema["pattern"] = validator.match_object.pattern
    elif isinstance(validator, colander.OneOf):
        schema["enum"] = list(validator.choices)
    # Other validators are functions (cross-field rules); the descriptions in docs/ cover them.


def colander_to_json_schema(node: colander.SchemaNode) -> dict[str, Any]:
    """The JSON Schema of what ``node.deserialize`` accepts (as closely as JSON Schema can say)."""
    schema = _type_schema(node)
    if node.validator is not None:
        _apply_validator(schema, node.validator)
    missing = node.missing
    if missing not in (colander.required, colander.drop, colander.null, None) and isinstance(
        missing, str | int | float | bool
    ):
        schema["default"] = missing
    return schema


def query_parameters(schema: colander.SchemaNode) -> list[dict[str, Any]]:
    return [
        {
            "name": child.name,
            "in": "query",
            "required": child.required,
            "schema": colander_to_json_schema(child),
        }
        for child in schema.children
    ]


# ----------------------------------------------------------------------------- response shapes

ERROR_ENVELOPE = {
    "type": "object",
    "required": ["status", "code", "message", "details"],
    "additionalProperties": False,
    "properties": {
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "code": {"type": "string", "enum": [str(code) for code in ErrorCode]},
        "message": {"type": "string"},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["location", "path", "message"],
                "properties": {
                    # "file": a row or column of an uploaded sheet (participants import).
                    "location": {"type": "string", "enum": ["body", "querystring", "path", "file"]},
                    "path": {"type": "string"},
                    "message": {"type": "string"},
                    "row": {"type": ["integer", "null"]},
                    # A sheet's column (its letter or header), or a text file's column number
                    # (1-based, with `line`: instrument files).
                    "column": {"type": ["string", "integer", "null"]},
                    "line": {"type": "integer", "minimum": 1},
                    "sheet": {"type": "string"},
                },
            },
        },
    },
}


TOKEN_PAIR = _obj(
    {
        "token_type": {"const": "Bearer"},
        "access_token": STR,
        "expires_in": INT,
        "refresh_token": STR,
        "refresh_expires_at": DATETIME,
    }
)
GRANT = _obj(
    {
        "role": {"enum": ["fieldworker", "coordinator", "analyst", "admin"]},
        "study": STR,
        "countries": {"anyOf": [{"const": "*"}, {"type": "array", "items": STR}]},
    }
)
DEVICE_SCOPE = _obj(
    {
        "study": STR,
        "countries": {"anyOf": [{"const": "*"}, {"type": "array", "items": STR}]},
    }
)
DEVICE = _obj(
    {
        "id": STR,
        "label": STR,
        "user": STR,
        "status": STR,
        "scope": {
            "type": "array",
            "items": DEVICE_SCOPE,
            "description": "the studies and countries the device was enrolled for: its sessions carry "
            "the owner's fieldworker grants within them, and managing it needs grants covering all of it",
        },
        "created_at": DATETIME,
        "activated_at": NULLABLE_DATETIME,
        "revoked_at": NULLABLE_DATETIME,
        "last_seen_at": NULLABLE_DATETIME,
    }
)
ENROLMENT = _obj(
    {
        "device": DEVICE,
        "enrolment_code": STR,
        "qr": _obj({"payload": STR, "png_base64": STR, "svg": STR}),
    }
)
AUDIT_EVENT = _obj(
    {
        "id": INT,
        "at": DATETIME,
        "action": STR,
        "outcome": STR,
        "actor": NULLABLE_STR,
        "device_id": NULLABLE_STR,
        "target": NULLABLE_STR,
        "remote_addr": NULLABLE_STR,
        "details": {},
    }
)
INSTRUMENT_SUMMARY = _obj(
    {
        "slug": STR,
        "title": {},
        "activity": STR,
        "study": NULLABLE_STR,
        "current_version": INT,
        "languages": {"type": "array", "items": STR},
        "default_language": STR,
    }
)
INSTRUMENT_VERSION = {
    **_obj({"slug": STR, "version": INT, "content_hash": STR, "definition": ANY_OBJECT}),
    "description": "the published definition (docs/instruments.md), localised when `lang` is given",
}
COUNTRY = _obj({"code": STR, "name": STR, "region": NULLABLE_STR, "languages": {"type": "array"}})
ACTIVITY = _obj({"code": STR, "name": STR})
STUDY = _obj(
    {
        "slug": STR,
        "name": NULLABLE_STR,
        "created_at": DATETIME,
        "activities": {"type": "array", "items": ACTIVITY},
        "countries": {"type": "array", "items": COUNTRY},
    }
)
STUDY_SUMMARY = _obj(
    {
        "slug": STR,
        "name": NULLABLE_STR,
        "created_at": DATETIME,
        "countries": {"type": "array", "items": STR},
        "activities": {"type": "array"},
    }
)
PARTICIPANT = _obj(
    {
        "pid": STR,
        "study": STR,
        "activity": STR,
        "country": STR,
        "interview_number": INT,
        "letter": STR,
        "agency": STR,
        "position": NULLABLE_STR,
        "consent_given": {"type": ["boolean", "null"]},
        "consent_date": {"type": ["string", "null"], "format": "date"},
        "consent_recorded_how": NULLABLE_STR,
        "status": STR,
        "created_at": DATETIME,
        "updated_at": DATETIME,
        "change_seq": {"type": ["integer", "null"]},
    }
)
BLOCK = _obj(
    {
        "id": INT,
        "study": STR,
        "country": STR,
        "activity": STR,
        "first_number": INT,
        "last_number": INT,
        "size": INT,
        "first_id": STR,
        "created_at": DATETIME,
        "released_at": NULLABLE_DATETIME,
    }
)
HELD_BLOCK = _obj({**BLOCK["properties"], "device_id": STR, "used": INT, "unused": INT})
IMPORT_SUMMARY = _obj(
    {
        "dry_run": BOOL,
        "file_type": {"enum": ["csv", "xlsx", "json"]},
        "rows": INT,
        "interview_count": INT,
        "participant_count": INT,
    },
    participants={"type": "array", "items": PARTICIPANT},
)
# The record and the change as the server's own validation rules say (surveykit.sync.record_schema).
RECORD_REF = {"$ref": "#/components/schemas/Record"}
RECORD = {key: value for key, value in record_schema.record_schema().items() if key != "$schema"}
CHANGE = record_schema.change_schema(RECORD_REF)
SYNC_BATCH = {
    "type": "object",
    "additionalProperties": False,
    "required": ["changes"],
    "properties": {"changes": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}}},
}
REGISTRY_VALUE = {"type": ["string", "boolean", "null"]}
STORED_INTERVIEW = _obj(
    {"uuid": STR, "revision": INT, "content_hash": STR, "record": RECORD_REF, "updated_at": DATETIME},
    interviewer=STR,
)
FIELD_CONFLICT_RESULT = _obj(
    {"id": INT, "pid": STR, "field": STR, "incoming": REGISTRY_VALUE, "registry": REGISTRY_VALUE}
)


def _result(kind: str, required: dict[str, Any]) -> dict[str, Any]:
    common = {"index": INT, "uuid": NULLABLE_STR, "revision": {"type": ["integer", "null"]}}
    return _obj(
        {"result": {"const": kind}, **common, "content_hash": NULLABLE_STR, **required},
        # current: the stored interview, when the change could not be applied over it;
        # field_conflicts: registry fields kept as conflicts (docs/sync.md).
        current=STORED_INTERVIEW,
        field_conflicts={"type": "array", "items": FIELD_CONFLICT_RESULT},
    )


# One schema per result kind (docs/sync.md), told apart by "result".
SYNC_RESULTS = {
    "created": _result("created", {}),
    "updated": _result("updated", {}),
    "unchanged": _result("unchanged", {}),
    "conflict": _result("conflict", {"conflict_id": INT, "conflict_status": STR}),
    "rejected": _result(
        "rejected",
        {
            "code": STR,
            "message": STR,
            "errors": {"type": "array", "items": ERROR_ENVELOPE["properties"]["details"]["items"]},
        },
    ),
}
assert tuple(SYNC_RESULTS) == RESULTS
SYNC_RESULT = {"oneOf": [{"$ref": f"#/components/schemas/SyncResult{kind.title()}"} for kind in RESULTS]}
SYNC_OUTCOME = _obj(
    {"results": {"type": "array", "items": SYNC_RESULT}, "counts": {"type": "object"}},
)
FEED_CONFLICT = _obj(
    {
        "id": INT,
        "uuid": STR,
        "study": STR,
        "country": STR,
        "status": {"enum": ["open", "resolved"]},
        "base_revision": INT,
        "content_hash": STR,
        "record": RECORD_REF,
        "received_at": DATETIME,
        "device_id": NULLABLE_STR,
        "user": NULLABLE_STR,
        "resolution": NULLABLE_STR,
        "resolved_at": NULLABLE_DATETIME,
        "resolved_by": {"type": ["integer", "string", "null"]},
        "resolution_revision": {"type": ["integer", "null"]},
        "current": STORED_INTERVIEW,
    }
)
FEED_INSTRUMENT = _obj({"slug": STR, "version": INT, "content_hash": STR})


def _feed_change(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    # The object as it is now; null when it is gone or out of the caller's sight.
    return _obj(
        {
            "seq": INT,
            "kind": {"const": kind},
            "key": STR,
            "country": NULLABLE_STR,
            "at": DATETIME,
            "object": {"anyOf": [{"type": "null"}, obj]},
        }
    )


FEED_OBJECTS = {
    "interview": STORED_INTERVIEW,
    "participant": PARTICIPANT,
    "conflict": FEED_CONFLICT,
    "instrument": FEED_INSTRUMENT,
}
FEED_PAGE = _obj(
    {
        "study": STR,
        "cursor": INT,
        "next_cursor": INT,
        "has_more": BOOL,
        "changes": {
            "type": "array",
            "items": {
                "oneOf": [{"$ref": f"#/components/schemas/FeedChange{k.title()}"} for k in FEED_OBJECTS]
            },
        },
    }
)
CONFLICT = _obj({"id": INT, "uuid": STR, "study": STR, "country": STR, "status": STR})
CONFLICT_PAGE = _obj({"conflicts": {"type": "array", "items": CONFLICT}, "has_more": BOOL, "next_after": INT})
FIELD_CONFLICT = _obj(
    {"id": INT, "study": STR, "country": STR, "pid": STR, "field": STR, "status": STR},
    incoming={"type": ["string", "boolean", "null"]},
    registry={"type": ["string", "boolean", "null"]},
)
FIELD_CONFLICT_PAGE = _obj(
    {"field_conflicts": {"type": "array", "items": FIELD_CONFLICT}, "has_more": BOOL, "next_after": INT}
)


# -------------------------------------------------------------------------------- the operations


def _pull_query(settings: Any) -> colander.SchemaNode:
    return sync_schemas.pull_query_schema(settings["surveykit.sync_max_pull"])


def _no_settings(schema_class: type) -> Callable[[Any], colander.SchemaNode]:
    return lambda settings: schema_class()


NOT_MODIFIED = Reply("the client's copy (If-None-Match) is current", None, None, ("ETag",))
INSTRUMENT_DEFINITION_BODY = instrument_schemas.InstrumentDefinitionSchema
# The definition as JSON, or the instrument file itself (raw or as the multipart part `file`).
INSTRUMENT_FILE_TYPES = (
    JSON,
    "application/yaml",
    "text/yaml",
    "application/x-yaml",
    XLSX,
    "multipart/form-data",
)
INSTRUMENT_FILE_NOTE = (
    "The definition may be sent as JSON, as the YAML file itself (YAML 1.2), or as the multipart "
    "part `file` (its format chosen by the part's content type, else by its name: .yaml, .yml, "
    ".json, .xlsx), or as an XLSForm workbook (docs/xlsform.md). Problems carry `path` and, for a "
    "text file, `line` and `column` (1-based), for a workbook `sheet`, `row` and `column`; a file that "
    "cannot be read is 400 (with the line of a syntax error), an unsupported type 415, YAML over "
    "1 MiB 413."
)
TRANSLATION_ITEM = _obj({"path": STR, "source": STR}, translation=STR, translated_from=STR)
TRANSLATION_STATE = _obj(
    {
        "missing": {"type": "array", "items": TRANSLATION_ITEM},
        "stale": {"type": "array", "items": TRANSLATION_ITEM},
    }
)

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("openapi", "GET"): Operation(
        "This document", "meta", {200: Reply("the OpenAPI 3.1 document", {"type": "object"})}
    ),
    ("health", "GET"): Operation(
        "Whether this server can serve (for load balancers and probes)",
        "meta",
        {
            200: Reply(
                "the database answers and its schema is at the newest migration",
                _obj({"status": STR, "database": STR, "schema_revision": STR}),
            )
        },
        errors=(503,),
        description=(
            "Public and cheap: one query. 503 (`service_unavailable`) says why: the database does not "
            "answer, or its schema is behind this code's migrations."
        ),
    ),
    ("api_docs", "GET"): Operation(
        "Readable documentation of this API (Swagger UI)",
        "meta",
        {200: Reply("an HTML page showing this document", {"type": "string"}, "text/html")},
    ),
    ("api_docs_static", "GET"): Operation(
        "The files of the documentation page (the vendored Swagger UI and its start script)",
        "meta",
        {200: Reply("a file", {"type": "string"}, "application/octet-stream")},
        path_patterns={"subpath": "^[A-Za-z0-9._/-]+$"},
    ),
    # ------------------------------------------------------------------- accounts (docs/accounts.md)
    ("auth_token", "POST"): Operation(
        "Log in with a username and password",
        "auth",
        {200: Reply("an access token and a rotating refresh token", TOKEN_PAIR)},
        body=accounts_schemas.LoginSchema,
        errors=(429,),
        description=(
            "Attempts are counted per account and client address: too many wrong ones lock the account "
            "for that address (`account_locked`, Retry-After). Too many logins from one address answer "
            "429 (`too_many_requests`, Retry-After)."
        ),
    ),
    ("auth_refresh", "POST"): Operation(
        "Exchange a refresh token for a new pair",
        "auth",
        {200: Reply("a new access token and refresh token; the old refresh token is spent", TOKEN_PAIR)},
        body=accounts_schemas.RefreshSchema,
        description="Presenting a spent refresh token again ends its whole session (`refresh_refused`).",
    ),
    ("auth_logout", "POST"): Operation(
        "End a session",
        "auth",
        {204: Reply("the session is ended", None, None)},
        body=accounts_schemas.LogoutSchema,
        body_required=False,
        description="Send the refresh token in the body, or the access token in Authorization, or both.",
    ),
    ("me", "GET"): Operation(
        "Who the caller is",
        "auth",
        {
            200: Reply(
                "the caller's username, device and grants",
                _obj(
                    {
                        "username": STR,
                        "device_id": NULLABLE_STR,
                        "grants": {"type": "array", "items": GRANT},
                    }
                ),
            )
        },
    ),
    ("devices", "GET"): Operation(
        "List the devices the caller may see",
        "devices",
        {
            200: Reply(
                "the caller's own devices and those whose whole scope the caller manages",
                _list_of("devices", DEVICE),
            )
        },
        query=_no_settings(accounts_schemas.DeviceQuerySchema),
    ),
    ("devices", "POST"): Operation(
        "Enrol a tablet for a fieldworker",
        "devices",
        {
            201: Reply(
                "the pending device, its one-time enrolment code and a QR code carrying it",
                ENROLMENT,
                links={
                    "RevokeDevice": ("device_delete", {"device_id": "$response.body#/device/id"}),
                    "EnrolAgain": ("device_enrolment_post", {"device_id": "$response.body#/device/id"}),
                },
            )
        },
        body=accounts_schemas.EnrolSchema,
        errors=(404,),
        description=(
            "The device is bound to a scope: by default every study and country that both the "
            "owner's fieldworker grants and the caller's coordinator or admin grants cover; `study` "
            "(and `countries` of it) narrow it. Asking for more than the caller manages is `403` "
            "(`forbidden`), for more than the owner holds `422`, each with the field in `details`."
        ),
    ),
    ("device_activate", "POST"): Operation(
        "Exchange an enrolment code for the tablet's tokens",
        "devices",
        {
            200: Reply(
                "the device id and its token pair",
                {
                    **TOKEN_PAIR,
                    "required": [*TOKEN_PAIR["required"], "device_id"],
                    "properties": {**TOKEN_PAIR["properties"], "device_id": STR},
                },
            )
        },
        body=accounts_schemas.ActivateSchema,
        errors=(429,),
        description="Too many activations from one client address answer 429 (`too_many_requests`).",
    ),
    ("device", "DELETE"): Operation(
        "Revoke a device",
        "devices",
        {200: Reply("the revoked device; it is refused from its next request", DEVICE)},
        errors=(404,),
        description="The caller's grants must cover the device's whole scope.",
    ),
    ("device_enrolment", "POST"): Operation(
        "Re-enrol an existing device: a new one-time enrolment code for the same device id",
        "devices",
        {
            200: Reply(
                "the device, a new one-time enrolment code and a QR code carrying it",
                ENROLMENT,
            )
        },
        errors=(404, 409, 422),
        description=(
            "For a tablet whose session ended (a lost refresh answer, an expired refresh token). "
            "Activating the code (POST /api/v1/devices/activate) ends every earlier session of the "
            "device and starts a new one for the same device id, so its number blocks stay valid. "
            "A revoked device is refused (`device_revoked`). The caller's grants must cover the "
            "device's whole scope, which re-enrolment keeps."
        ),
    ),
    ("audit", "GET"): Operation(
        "Read the audit log, newest first",
        "audit",
        {
            200: Reply(
                "a page of events; when older ones match, `next_before` and `next` (this query's URL "
                "from there) lead on",
                _list_of("events", AUDIT_EVENT, next_before=INT, next=STR),
            )
        },
        query=_no_settings(AuditQuerySchema),
    ),
    # ------------------------------------------------------------ instruments (docs/instruments.md)
    ("instruments", "GET"): Operation(
        "List the instruments of the caller's studies",
        "instruments",
        {200: Reply("current versions", _list_of("instruments", INSTRUMENT_SUMMARY))},
    ),
    ("instruments", "POST"): Operation(
        "Publish an instrument definition as its next version",
        "instruments",
        {
            201: Reply(
                "a new version was published",
                _obj({"slug": STR, "version": INT, "content_hash": STR, "created": BOOL}),
                links={
                    "GetCurrent": ("instrument_get", {"slug": "$response.body#/slug"}),
                    "GetVersion": (
                        "instrument_version_get",
                        {"slug": "$response.body#/slug", "version": "$response.body#/version"},
                    ),
                    "Retire": ("instrument_retire_post", {"slug": "$response.body#/slug"}),
                },
            ),
            200: Reply(
                "the definition equals the current version: nothing was published",
                _obj({"slug": STR, "version": INT, "content_hash": STR, "created": BOOL}),
            ),
        },
        body=INSTRUMENT_DEFINITION_BODY,
        body_media_types=INSTRUMENT_FILE_TYPES,
        multipart_fields=(),
        errors=(409,),
        description="The body is an instrument definition (docs/instruments.md), validated in full. "
        + INSTRUMENT_FILE_NOTE,
    ),
    ("instruments_validate", "POST"): Operation(
        "Check an instrument definition without publishing it",
        "instruments",
        {
            200: Reply(
                "the definition is valid; its missing and stale translations per language",
                _obj(
                    {
                        "valid": {"const": True},
                        "slug": STR,
                        "content_hash": STR,
                        "translations": {"type": "object", "additionalProperties": TRANSLATION_STATE},
                    }
                ),
            )
        },
        body=INSTRUMENT_DEFINITION_BODY,
        body_media_types=INSTRUMENT_FILE_TYPES,
        multipart_fields=(),
        description=INSTRUMENT_FILE_NOTE,
    ),
    ("instrument", "GET"): Operation(
        "The current version of an instrument",
        "instruments",
        {
            200: Reply(
                "the current version (ETag; revalidate with If-None-Match)",
                INSTRUMENT_VERSION,
                JSON,
                ("ETag",),
            ),
            304: NOT_MODIFIED,
        },
        query=lambda settings: _lang_query(),
    ),
    ("instrument_version", "GET"): Operation(
        "One numbered version of an instrument (immutable)",
        "instruments",
        {
            200: Reply("that version; it never changes", INSTRUMENT_VERSION, JSON, ("ETag",)),
            304: NOT_MODIFIED,
        },
        query=lambda settings: _lang_query(),
    ),
    ("instrument_version_xlsx", "GET"): Operation(
        "One numbered version as an XLSForm workbook",
        "instruments",
        {
            200: Reply(
                "the workbook; it imports back to the same content hash",
                {"type": "string", "format": "binary"},
                XLSX,
            )
        },
        errors=(404,),
        description="Survey, choices and settings sheets in surveykit's XLSForm dialect (docs/xlsform.md).",
    ),
    ("instrument_record_schema", "GET"): Operation(
        "The JSON Schema of a record collected with one instrument version",
        "instruments",
        {
            200: Reply(
                "a JSON Schema (draft 2020-12) to check records before syncing; it never changes",
                {"type": "object"},
                JSON,
                ("ETag",),
            ),
            304: NOT_MODIFIED,
        },
        description=(
            "The answers typed question by question (choices as enums, number bounds, date window). "
            "What only the server can check is listed in docs/api.md."
        ),
    ),
    ("instrument_retire", "POST"): Operation(
        "Retire an instrument",
        "instruments",
        {200: Reply("retired", _obj({"slug": STR, "retired": {"const": True}, "retired_at": DATETIME}))},
        body=None,
        errors=(404,),
    ),
    # ------------------------------------------------------------------- studies (docs/participants.md)
    ("studies", "GET"): Operation(
        "List the studies the caller holds a grant in",
        "studies",
        {200: Reply("the studies", _list_of("studies", STUDY_SUMMARY))},
    ),
    ("studies", "POST"): Operation(
        "Create a study",
        "studies",
        {
            201: Reply(
                "the new study",
                STUDY,
                links={
                    "GetStudy": ("study_get", {"study": "$response.body#/slug"}),
                    "AddCountry": ("study_countries_post", {"study": "$response.body#/slug"}),
                    "AddActivity": ("study_activities_post", {"study": "$response.body#/slug"}),
                },
            )
        },
        body=study_schemas.StudyCreateSchema,
        errors=(409,),
    ),
    ("study", "GET"): Operation("A study's configuration", "studies", {200: Reply("the study", STUDY)}),
    ("study_countries", "POST"): Operation(
        "Add a country to a study",
        "studies",
        {
            201: Reply(
                "the new country",
                COUNTRY,
                links={
                    "ChangeCountry": (
                        "study_country_patch",
                        {"study": "$request.path.study", "cc": "$response.body#/code"},
                    ),
                    "Register": (
                        "participants_post",
                        {"study": "$request.path.study", "cc": "$response.body#/code"},
                    ),
                    "ListParticipants": (
                        "participants_get",
                        {"study": "$request.path.study", "cc": "$response.body#/code"},
                    ),
                },
            )
        },
        body=study_schemas.CountryCreateSchema,
        errors=(409,),
    ),
    ("study_country", "PATCH"): Operation(
        "Change a country of a study",
        "studies",
        {200: Reply("the country", COUNTRY)},
        body=study_schemas.CountryUpdateSchema,
        path_patterns={"cc": r"^[A-Z]{2}$"},
    ),
    ("study_activities", "POST"): Operation(
        "Add a research activity to a study",
        "studies",
        {
            201: Reply(
                "the new activity",
                ACTIVITY,
                links={
                    "RenameActivity": (
                        "study_activity_patch",
                        {"study": "$request.path.study", "code": "$response.body#/code"},
                    )
                },
            )
        },
        body=study_schemas.ActivityCreateSchema,
        errors=(409,),
    ),
    ("study_activity", "PATCH"): Operation(
        "Rename a research activity",
        "studies",
        {200: Reply("the activity", ACTIVITY)},
        body=study_schemas.ActivityUpdateSchema,
    ),
    # ----------------------------------------------------------- participants (docs/participants.md)
    ("participants", "GET"): Operation(
        "A page of the participants of one country of a study, in ID order, filtered",
        "participants",
        {
            200: Reply(
                "a page; when more match, `next_after` (the `after` of the next page) and `next` (this "
                "query's URL from there) lead on",
                _list_of("participants", PARTICIPANT, next_after=STR, next=STR),
            )
        },
        query=_no_settings(participant_schemas.ListQuerySchema),
    ),
    ("participants", "POST"): Operation(
        "Register one planned interview and its participants",
        "participants",
        {
            201: Reply(
                "the interview number and the new participants",
                _list_of("participants", PARTICIPANT, interview_number=INT),
                links={
                    "GetParticipant": (
                        "participant_get",
                        {"study": "$request.path.study", "pid": "$response.body#/participants/0/pid"},
                    ),
                    "ChangeParticipant": (
                        "participant_patch",
                        {"study": "$request.path.study", "pid": "$response.body#/participants/0/pid"},
                    ),
                },
            )
        },
        body=participant_schemas.RegisterSchema,
        errors=(409,),
    ),
    ("participants_import", "POST"): Operation(
        "Import a planned sample (CSV, XLSX or JSON rows): all rows or none",
        "participants",
        {
            200: Reply("a dry run: what would be imported", IMPORT_SUMMARY),
            201: Reply("imported", IMPORT_SUMMARY),
        },
        body=participant_schemas.ImportRowsSchema,
        body_media_types=(JSON, CSV, XLSX, "multipart/form-data"),
        query=_no_settings(participant_schemas.ImportQuerySchema),
        errors=(409,),
        description=(
            "A CSV or XLSX sheet (raw, or in the multipart form field `file`, with `activity` and "
            '`dry_run` as form fields or in the query string), or JSON `{"rows": [...]}`. Columns '
            "(or row keys): `agency`, `position`, `interview` (a grouping key) and `id` (an existing "
            "participant ID such as `RA1-KE-02-A`, kept as it is; an interview number already taken "
            "is refused on its row, and the counter continues after the largest one imported)."
        ),
    ),
    ("participant", "GET"): Operation(
        "One participant by ID", "participants", {200: Reply("the participant", PARTICIPANT)}
    ),
    ("participant", "PATCH"): Operation(
        "Change a participant's consent, status or details",
        "participants",
        {200: Reply("the participant", PARTICIPANT)},
        body=participant_schemas.ParticipantUpdateSchema,
        errors=(409,),
    ),
    ("blocks", "GET"): Operation(
        "The interview-number blocks reserved by this device",
        "participants",
        {200: Reply("the blocks", _list_of("blocks", BLOCK))},
        query=_no_settings(participant_schemas.BlockQuerySchema),
    ),
    ("blocks", "POST"): Operation(
        "Reserve a block of interview numbers for offline use (tablets only)",
        "participants",
        {201: Reply("the block", BLOCK)},
        body=participant_schemas.BlockRequestSchema,
        errors=(409,),
        description=(
            "409 `unused_numbers_limit` when the device would hold more unused numbers than "
            "`SURVEYKIT_MAX_UNUSED_NUMBERS`; 409 `interview_numbers_exhausted` past number 99999."
        ),
    ),
    ("country_blocks", "GET"): Operation(
        "The number blocks devices hold in one country, with used and unused counts",
        "participants",
        {200: Reply("the blocks", _list_of("blocks", HELD_BLOCK))},
        query=_no_settings(participant_schemas.CountryBlocksQuerySchema),
    ),
    ("country_blocks_release", "POST"): Operation(
        "Release a device's number blocks in one country",
        "participants",
        {
            200: Reply(
                "the blocks released and how many unused numbers became gaps",
                _obj(
                    {
                        "device_id": STR,
                        "released_numbers": INT,
                        "blocks": {"type": "array", "items": HELD_BLOCK},
                    }
                ),
            )
        },
        body=participant_schemas.BlockReleaseSchema,
        description=(
            "The device mints no more IDs from the released blocks: sync refuses a new record "
            "numbered from them. Numbers already used stay with their records; numbers are never reused."
        ),
    ),
    # ------------------------------------------------------------------------- sync (docs/sync.md)
    ("sync", "POST"): Operation(
        "Push a batch of interview records",
        "sync",
        {200: Reply("one result per change, in order", SYNC_OUTCOME)},
        body=SYNC_BATCH,
        errors=(409,),
        description=(
            "Each change is checked on its own: a bad change is answered `rejected`, the others are stored."
        ),
    ),
    ("sync_changes", "GET"): Operation(
        "Pull the change feed of a study after a cursor",
        "sync",
        {200: Reply("a page of changes", FEED_PAGE)},
        query=_pull_query,
        errors=(409,),
    ),
    ("conflicts", "GET"): Operation(
        "List sync conflicts",
        "sync",
        {200: Reply("a page of conflicts", CONFLICT_PAGE)},
        query=_no_settings(sync_schemas.ConflictsQuerySchema),
    ),
    ("conflict_resolve", "POST"): Operation(
        "Resolve a sync conflict",
        "sync",
        {
            200: Reply(
                "the resolved conflict and the record as it now is",
                _obj({"conflict": ANY_OBJECT, "current": ANY_OBJECT}),
            )
        },
        body=sync_schemas.ResolveSchema,
        errors=(409,),
    ),
    ("field_conflicts", "GET"): Operation(
        "List field conflicts: pushed registry values kept because a coordinator had changed the field",
        "sync",
        {200: Reply("a page of field conflicts", FIELD_CONFLICT_PAGE)},
        query=_no_settings(sync_schemas.ConflictsQuerySchema),
    ),
    ("field_conflict_resolve", "POST"): Operation(
        "Resolve a field conflict",
        "sync",
        {
            200: Reply(
                "the resolved field conflict and the participant as it now is",
                _obj({"field_conflict": FIELD_CONFLICT, "participant": PARTICIPANT}),
            )
        },
        body=sync_schemas.FieldResolveSchema,
        errors=(409,),
    ),
    # ----------------------------------------------------------------------- exports (docs/exports.md)
    ("export_country", "GET"): Operation(
        "The workbook of one country",
        "exports",
        {
            200: Reply("the workbook", {"type": "string", "format": "binary"}, XLSX, ("ETag",)),
            304: NOT_MODIFIED,
        },
        query=_no_settings(ExportQuerySchema),
    ),
    ("export_study", "GET"): Operation(
        "The workbook of the whole study",
        "exports",
        {
            200: Reply("the workbook", {"type": "string", "format": "binary"}, XLSX, ("ETag",)),
            304: NOT_MODIFIED,
        },
        query=_no_settings(ExportQuerySchema),
    ),
    # Export jobs (surveykit/openapi_jobs.py).
    **JOB_OPERATIONS,
    # The CSV for statistics and the SPSS/Stata syntax (surveykit/openapi_exports.py).
    **STATS_EXPORT_OPERATIONS,
    # Changing one's password, accounts, progress (surveykit/openapi_console.py).
    **CONSOLE_OPERATIONS,
    # Previewing and comparing instruments (surveykit/openapi_studio.py).
    **STUDIO_OPERATIONS,
    # Codings and agreement between coders (surveykit/openapi_coding.py).
    **CODING_OPERATIONS,
    # A study's codebook (surveykit/openapi_codebook.py).
    **CODEBOOK_OPERATIONS,
    # Personal access tokens (surveykit/openapi_tokens.py).
    **TOKEN_OPERATIONS,
    # REFI-QDA projects and codebooks (surveykit/openapi_refi.py).
    **REFI_OPERATIONS,
}


def _lang_query() -> colander.SchemaNode:
    # The views read ``lang`` themselves (instruments.views._language); this mirrors their check.
    schema = colander.MappingSchema()
    schema.add(
        colander.SchemaNode(
            instrument_schemas.StrictString(),
            name="lang",
            missing=None,
            validator=colander.Regex(instrument_schemas.LANGUAGE_PATTERN),
        )
    )
    return schema


# --------------------------------------------------------------------------------- the document

_PLACEHOLDER = re.compile(r"\{(\w+)(?::((?:[^{}]|\{[^{}]*\})+))?\}")


def split_pattern(pattern: str) -> tuple[str, dict[str, str | None]]:
    """``/x/{country:[A-Z]{2}}.xlsx`` -> (``/x/{country}.xlsx``, {"country": "[A-Z]{2}"})."""
    names: dict[str, str | None] = {}

    def replace(match: re.Match[str]) -> str:
        names[match.group(1)] = match.group(2)
        return "{" + match.group(1) + "}"

    return _PLACEHOLDER.sub(replace, pattern), names


def app_operations(registry: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """(route, method) -> {pattern, permission} for every routed API view (under /api/; the web
    console's pages and the field app's files are not API operations), from the introspector."""
    introspector = registry.introspector
    patterns = {
        item["introspectable"]["name"]: item["introspectable"]["pattern"]
        for item in introspector.get_category("routes") or []
    }
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for item in introspector.get_category("views") or []:
        view = item["introspectable"]
        route = view["route_name"]
        if route is None or not patterns[route].startswith("/api/"):
            continue
        methods = view["request_methods"]
        methods = ("*",) if methods is None else (methods,) if isinstance(methods, str) else methods
        permissions = [rel["value"] for rel in item["related"] if rel.category_name == "permissions"]
        for method in methods:
            if method == "HEAD":
                continue
            found[(route, method)] = {
                "pattern": patterns[route],
                "permission": permissions[0] if permissions else None,
            }
    return found


def _error_statuses(operation: Operation, public: bool, has_path_params: bool) -> list[int]:
    statuses = {400, 401}  # 400: a URL that is not UTF-8; 401: no or a bad token (public: refused)
    if not public:
        statuses.add(403)
    if has_path_params or operation.query is not None or operation.body is not None:
        statuses.add(404)
    if operation.body is not None:
        statuses |= {413, 415, 422}
    if operation.query is not None:
        statuses.add(422)
    statuses |= set(operation.errors)
    return sorted(statuses)


def _operation_object(
    key: tuple[str, str], operation: Operation, info: dict[str, Any], settings: Any
) -> tuple[str, dict[str, Any]]:
    route, method = key
    path, placeholders = split_pattern(info["pattern"])
    public = info["permission"] == Permission.PUBLIC
    parameters = []
    for name, regex in placeholders.items():
        schema: dict[str, Any] = {"type": "string"}
        pattern = operation.path_patterns.get(name) or (f"^{regex}$" if regex else None)
        if pattern:
            schema["pattern"] = pattern
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    if operation.query is not None:
        parameters += query_parameters(operation.query(settings))
    for reply in operation.success.values():
        if "ETag" in reply.headers:
            parameters.append(
                {
                    "name": "If-None-Match",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "an ETag from an earlier answer: 304 when it is still current",
                }
            )
            break
    out: dict[str, Any] = {
        "operationId": f"{route}_{method.lower()}",
        "summary": operation.summary,
        "tags": [operation.tag],
        "x-permission": str(info["permission"]),
    }
    if operation.description:
        out["description"] = operation.description
    if parameters:
        out["parameters"] = parameters
    if operation.body is not None:
        body_schema = (
            operation.body if isinstance(operation.body, dict) else colander_to_json_schema(operation.body())
        )
        content: dict[str, Any] = {}
        for media_type in operation.body_media_types:
            if media_type == JSON:
                content[media_type] = {"schema": body_schema}
            elif media_type == "multipart/form-data":
                content[media_type] = {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            **{name: {"type": "string"} for name in operation.multipart_fields},
                        },
                    }
                }
            else:
                content[media_type] = {"schema": {"type": "string", "format": "binary"}}
        out["requestBody"] = {"required": operation.body_required, "content": content}
    responses: dict[str, Any] = {}
    for status, reply in sorted(operation.success.items()):
        response: dict[str, Any] = {"description": reply.description}
        if reply.media_type is not None:
            response["content"] = {reply.media_type: {"schema": reply.schema or {}}}
        if reply.headers:
            response["headers"] = {name: {"schema": {"type": "string"}} for name in reply.headers}
        if reply.links:
            response["links"] = {
                name: {"operationId": operation_id, "parameters": parameters}
                for name, (operation_id, parameters) in sorted(reply.links.items())
            }
        responses[str(status)] = response
    for status in _error_statuses(operation, public, bool(placeholders)):
        responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    out["responses"] = responses
    if public:
        out["security"] = []
    elif access_token_may(method, info["permission"]):
        out["security"] = [{"bearerAuth": []}, {"accessToken": []}]
    else:
        out["security"] = [{"bearerAuth": []}]
    return path, out


ERROR_DESCRIPTIONS = {
    400: (
        "a malformed request: a URL that is not UTF-8 or holds text the text rule refuses (NUL, "
        "control characters), a body that is not JSON or repeats a key in an object"
    ),
    401: "no valid credentials (or, on the public endpoints, credentials refused)",
    403: "the caller's grants do not allow this here",
    404: "the target does not exist (or is not visible to the caller)",
    409: "a conflict with stored data",
    413: "the body (or the batch) is too large",
    415: "the body's media type is not accepted",
    422: (
        "the body or query string is invalid (including text with NUL, lone surrogates or control "
        "characters): `details` lists every problem with its path"
    ),
    429: "too many attempts from the client's address: try again after `Retry-After` seconds",
}
ERROR_HEADERS = {429: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}}}


class UndocumentedOperations(RuntimeError):
    """The app has operations ``OPERATIONS`` does not describe, or the other way round."""


def build_document(registry: Any) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the application behind ``registry``."""
    found = app_operations(registry)
    missing = sorted(set(found) - set(OPERATIONS))
    stale = sorted(set(OPERATIONS) - set(found))
    if missing or stale:
        raise UndocumentedOperations(
            f"surveykit.openapi.OPERATIONS is out of date: undocumented {missing}, stale {stale}"
        )
    settings = registry.settings
    paths: dict[str, dict[str, Any]] = {}
    for key in sorted(found, key=lambda k: (found[k]["pattern"], k[1])):
        path, operation = _operation_object(key, OPERATIONS[key], found[key], settings)
        paths.setdefault(path, {})[key[1].lower()] = operation
    error_statuses = sorted(
        {
            int(ref["$ref"].removeprefix("#/components/responses/Error"))
            for item in paths.values()
            for op in item.values()
            for ref in op["responses"].values()
            if "$ref" in ref
        }
    )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "surveykit API",
            "version": "1",
            "summary": "Server for offline field research: instruments, registry, sync and exports",
            "description": (
                "See docs/api.md for authentication, device enrolment, sync, exports and the error "
                "envelope. Every error is answered with the `Error` envelope."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "an access token from POST /api/v1/auth/token or /api/v1/devices/activate",
                },
                "accessToken": ACCESS_TOKEN_SCHEME,
            },
            "schemas": {
                "Error": ERROR_ENVELOPE,
                "Record": RECORD,
                "Change": CHANGE,
                **{f"SyncResult{kind.title()}": schema for kind, schema in SYNC_RESULTS.items()},
                **{
                    f"FeedChange{kind.title()}": _feed_change(kind, obj) for kind, obj in FEED_OBJECTS.items()
                },
            },
            "responses": {
                f"Error{status}": {
                    "description": ERROR_DESCRIPTIONS.get(status, "an error"),
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
                    **({"headers": ERROR_HEADERS[status]} if status in ERROR_HEADERS else {}),
                }
                for status in error_statuses
            },
        },
    }


def render(document: dict[str, Any]) -> str:
    """The document as written to docs/openapi.json (stable key order, trailing newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def default_settings() -> dict[str, Any]:
    """The settings the published docs/openapi.json is built with (no database is touched)."""
    from surveykit.config import load_settings

    return load_settings({}, {"SURVEYKIT_DATABASE_URL": "sqlite://", "SURVEYKIT_ENV": "development"})


def build_default_document() -> dict[str, Any]:
    from surveykit import make_app

    return build_document(make_app(default_settings()).registry)


# --------------------------------------------------------------------------------------- the view


class PublicDocument:
    __acl__ = [(Allow, Everyone, Permission.PUBLIC)]

    def __init__(self, request: Any) -> None:
        self.request = request


@view_config(route_name="openapi", request_method="GET", permission=Permission.PUBLIC)
def openapi_document(request: Request) -> Response:
    registry = request.registry
    body = registry.get("surveykit.openapi_body")
    if body is None:
        body = render(build_document(registry)).encode("utf-8")
        registry["surveykit.openapi_body"] = body
    response = Response(content_type=JSON, charset="utf-8")
    response.body = body
    response.cache_control = "public, max-age=300"
    return response


# The readable documentation: a vendored Swagger UI (surveykit/static/vendor/swagger-ui, see
# scripts/refetch-swagger-ui.sh) started by a small script of ours, everything from this origin.
DOCS_PAGE = (Path(__file__).parent / "api_docs.html").read_bytes()
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)


@view_config(route_name="api_docs", request_method="GET", permission=Permission.PUBLIC)
def api_docs_page(request: Request) -> Response:
    response = Response(body=DOCS_PAGE, content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.cache_control = "public, max-age=300"
    return response


def includeme(config: Any) -> None:
    config.add_route("openapi", "/api/v1/openapi.json", factory=PublicDocument)
    config.add_route("api_docs", "/api/v1/docs", factory=PublicDocument)
    config.add_route("api_docs_static", "/api/v1/docs/static/{subpath:.+}", factory=PublicDocument)
    config.add_view(
        static_view("surveykit:static", use_subpath=True, cache_max_age=3600),
        route_name="api_docs_static",
        request_method="GET",
        permission=Permission.PUBLIC,
    )
    config.scan("surveykit.openapi")


# ------------------------------------------------------------------------------------ the command


@click.command("openapi")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the document to this file (docs/openapi.json) instead of standard output.",
)
@click.option("--check", is_flag=True, help="Only compare with --out; exit 1 if it is out of date.")
def openapi_command(out: str | None, check: bool) -> None:
    """Print or write the OpenAPI 3.1 document of the API (built with the default settings)."""
    text = render(build_default_document())
    if out is None:
        click.echo(text, nl=False)
        return
    path = Path(out)
    if check:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            raise click.ClickException(f"{out} is out of date: run `surveykit openapi --out {out}`")
        click.echo(f"{out} is up to date")
        return
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out} ({len(OPERATIONS)} operations)")


COMMANDS = [openapi_command]
