"""The building blocks of the OpenAPI operation tables (``surveykit.openapi`` and the modules that
describe a group of operations for it): response shapes and what the views do not expose."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import colander

JSON = "application/json"


def obj(required: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """An object with these keys always present (and maybe more: clients must ignore unknown keys)."""
    return {"type": "object", "required": list(required), "properties": {**required, **optional}}


def list_of(key: str, item: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return obj({key: {"type": "array", "items": item}}, **optional)


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
DATETIME = {"type": "string", "format": "date-time"}
NULLABLE_STR = {"type": ["string", "null"]}
NULLABLE_DATETIME = {"type": ["string", "null"], "format": "date-time"}
ANY_OBJECT = {"type": "object"}


@dataclass(frozen=True)
class Reply:
    description: str
    schema: dict[str, Any] | None = None
    media_type: str | None = JSON
    headers: tuple[str, ...] = ()
    # OpenAPI links: name -> (operationId, parameters as runtime expressions). They tell clients,
    # and the stateful fuzzing of tests/test_schemathesis.py, where a created thing can be used next.
    links: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """What the views do not expose about one (route, method)."""

    summary: str
    tag: str
    success: dict[int, Reply]
    body: Callable[[], colander.SchemaNode] | dict[str, Any] | None = None
    body_media_types: tuple[str, ...] = (JSON,)
    # Text fields of a multipart/form-data body besides its `file` part.
    multipart_fields: tuple[str, ...] = ("activity", "dry_run")
    body_required: bool = True
    query: Callable[[Any], colander.SchemaNode] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""
    path_patterns: dict[str, str] = field(default_factory=dict)
