"""colander schemas for the sync endpoints (strict: unknown keys are errors).

A batch's changes are not validated here: each is checked on its own by the services, so one bad
change is answered ``rejected`` while the others are stored.
"""

from __future__ import annotations

from typing import Any

import colander

from surveykit.instruments.schemas import StrictString
from surveykit.sync.models import FIELD_RESOLUTIONS, RESOLUTIONS

MAX_INT = 2**31 - 1
SLUG = r"^[a-z0-9][a-z0-9-]{1,63}$"
COUNTRY = r"^[A-Z]{2}$"
DEFAULT_PULL_LIMIT = 500
CONFLICT_PAGE_MAX = 500


class JSONArray(colander.SchemaType):
    """A JSON list, passed on as it is."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null:
            return colander.null
        if not isinstance(cstruct, list):
            raise colander.Invalid(node, "must be a list")
        return cstruct


class JSONObject(colander.SchemaType):
    """A JSON object, or null, passed on as it is."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null or cstruct is None:
            return colander.null
        if not isinstance(cstruct, dict):
            raise colander.Invalid(node, "must be an object")
        return cstruct


class StrictInt(colander.SchemaType):
    """A JSON integer: neither true/false nor 1.5 nor "1"."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null or cstruct is None:
            return colander.null
        if isinstance(cstruct, bool) or not isinstance(cstruct, int):
            raise colander.Invalid(node, "must be a whole number")
        return cstruct


class RegistryValue(colander.SchemaType):
    """A registry field's value as JSON: text (at most 500 characters), true/false, or null."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null:
            return colander.null
        if cstruct is None or isinstance(cstruct, bool):
            return cstruct
        if not isinstance(cstruct, str) or len(cstruct) > 500:
            raise colander.Invalid(node, "must be text (at most 500 characters), true, false or null")
        return cstruct


def _regex(pattern: str, message: str) -> colander.Regex:
    return colander.Regex(pattern, message)


class _Strict(colander.MappingSchema):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, typ=colander.Mapping(unknown="raise"), **kw)


class SyncBatchSchema(_Strict):
    changes = colander.SchemaNode(JSONArray())


def _query_int(name: str, default: int, minimum: int, maximum: int) -> colander.SchemaNode:
    return colander.SchemaNode(
        colander.Integer(), name=name, missing=default, validator=colander.Range(min=minimum, max=maximum)
    )


def pull_query_schema(max_limit: int) -> colander.SchemaNode:
    schema = _Strict()
    schema.add(colander.SchemaNode(StrictString(), name="study", validator=_regex(SLUG, "not a study slug")))
    schema.add(
        colander.SchemaNode(
            StrictString(), name="country", missing=None, validator=_regex(COUNTRY, "two capital letters")
        )
    )
    schema.add(_query_int("cursor", 0, 0, MAX_INT))
    schema.add(_query_int("limit", min(DEFAULT_PULL_LIMIT, max_limit), 1, max_limit))
    return schema


class ConflictsQuerySchema(_Strict):
    study = colander.SchemaNode(StrictString(), validator=_regex(SLUG, "not a study slug"))
    country = colander.SchemaNode(
        StrictString(), missing=None, validator=_regex(COUNTRY, "two capital letters")
    )
    status = colander.SchemaNode(
        StrictString(), missing="open", validator=colander.OneOf(["open", "resolved", "all"])
    )
    after = _query_int("after", 0, 0, MAX_INT)
    limit = _query_int("limit", 100, 1, CONFLICT_PAGE_MAX)


class ResolveSchema(_Strict):
    resolution = colander.SchemaNode(StrictString(), validator=colander.OneOf(list(RESOLUTIONS)))
    record = colander.SchemaNode(JSONObject(), missing=None)
    base_revision = colander.SchemaNode(
        StrictInt(), missing=None, validator=colander.Range(min=1, max=MAX_INT)
    )


class FieldResolveSchema(_Strict):
    resolution = colander.SchemaNode(StrictString(), validator=colander.OneOf(list(FIELD_RESOLUTIONS)))
    # The registry's value the coordinator decided on (optional): a 409 if it has changed since.
    registry = colander.SchemaNode(RegistryValue(), missing=colander.drop)
