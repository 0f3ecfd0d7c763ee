"""colander schemas of the codebook endpoints (docs/codebook.md). Strict: an unknown key is refused
at its path. The services check the same rules again (``surveykit.analysis.codebook``), for files
and the command line."""

from __future__ import annotations

from typing import Any

import colander

from surveykit.analysis.codebook import COLOUR, NAME_MAX
from surveykit.instruments.schemas import StrictString
from surveykit.participants.schemas import QueryBoolean, StrictInteger
from surveykit.studies.schemas import NullableText, Strict
from surveykit.sync.schemas import StrictInt

COLOUR_MESSAGE = "must be #RRGGBB, six hexadecimal digits such as #1F77B4"


class NullableId(StrictInt):
    """A code id, or null (``parent_id``: null places the code at the top of the codebook)."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is None:
            return None
        return super().deserialize(node, cstruct)


def _name(**kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(StrictString(), name="name", validator=colander.Length(max=NAME_MAX), **kw)


def _definition(**kw: Any) -> colander.SchemaNode:
    # Several lines allowed; null or blank for none.
    return colander.SchemaNode(NullableText(multiline=True), name="definition", **kw)


def _colour(**kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(
        StrictString(), name="colour", validator=colander.Regex(COLOUR.pattern, COLOUR_MESSAGE), **kw
    )


def _version(**kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(StrictInteger(), name="version", validator=colander.Range(min=1), **kw)


def _positive(node: colander.SchemaNode, value: int | None) -> None:
    if value is not None and value < 1:
        raise colander.Invalid(node, "must be a code id (1 or more)")


def _parent_id(**kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(NullableId(), name="parent_id", validator=_positive, **kw)


class CodeCreateSchema(Strict):
    name = _name()
    definition = _definition(missing=None)
    colour = _colour(missing=None)
    parent_id = _parent_id(missing=None)


class CodeUpdateSchema(Strict):
    """The fields to change, and the version of the code the change was made on (or ``If-Match``)."""

    name = _name(missing=colander.drop)
    definition = _definition(missing=colander.drop)
    colour = _colour(missing=colander.drop)
    parent_id = _parent_id(missing=colander.drop)
    version = _version(missing=None)

    def validator(self, node: colander.SchemaNode, value: dict[str, Any]) -> None:
        if not set(value) - {"version"}:
            raise colander.Invalid(node, "give at least one of name, definition, colour, parent_id to change")


class CodeActionSchema(Strict):
    """Retire or reactivate: optionally the version of the code the caller saw."""

    version = _version(missing=None)


class CodeMergeSchema(Strict):
    into = colander.SchemaNode(StrictInteger(), validator=colander.Range(min=1))
    version = _version(missing=None)


class ImportQuerySchema(Strict):
    dry_run = colander.SchemaNode(QueryBoolean(), missing=False)
