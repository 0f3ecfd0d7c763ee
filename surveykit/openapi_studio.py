"""OpenAPI operations of the instrument studio: previewing a version or a draft as the interviewer
will see it, and comparing versions (docs/instrument-studio.md).

``surveykit.openapi`` merges ``STUDIO_OPERATIONS`` into its table.
"""

from __future__ import annotations

from typing import Any

from surveykit.instruments.compare import CHANGE_KINDS
from surveykit.instruments.schemas import InstrumentDefinitionSchema
from surveykit.instruments.studio_views import (
    compare_draft_query_schema,
    compare_query_schema,
    preview_query_schema,
)
from surveykit.openapi_shapes import BOOL, INT, NULLABLE_STR, STR, Operation, Reply, obj

NULLABLE_INT = {"type": ["integer", "null"]}
STRINGS = {"type": "array", "items": STR}
LOCALISED_TEXT = {
    **obj({"text": STR, "lang": STR, "fallback": BOOL}),
    "description": "a text in the language asked for; `fallback` true where it is the default "
    "language's text standing in for a missing translation",
}
NULLABLE_TEXT = {"anyOf": [LOCALISED_TEXT, {"type": "null"}]}
PREVIEW_QUESTION = obj(
    {
        "id": STR,
        "number": INT,
        "path": STR,
        "type": STR,
        "required": BOOL,
        "prompt": LOCALISED_TEXT,
        "choices": {"type": "array", "items": obj({"value": STR, "label": LOCALISED_TEXT})},
        "probes": {"type": "array", "items": LOCALISED_TEXT},
        "notes": NULLABLE_TEXT,
        "relevance": NULLABLE_STR,
        "depends_on": {
            **STRINGS,
            "description": "the question ids the relevance rule reads, in asking order",
        },
        "binds": NULLABLE_STR,
        "min": {"type": ["number", "null"]},
        "max": {"type": ["number", "null"]},
    }
)
PREVIEW_SECTION = obj(
    {
        "id": STR,
        "path": STR,
        "depth": INT,
        "title": LOCALISED_TEXT,
        "intro": NULLABLE_TEXT,
        "questions": {"type": "array", "items": PREVIEW_QUESTION},
        "sections": {"type": "array", "items": {"type": "object"}, "description": "sub-sections, alike"},
    }
)
PREVIEW = obj(
    {
        "version": {**NULLABLE_INT, "description": "null for a draft"},
        "content_hash": STR,
        "draft": BOOL,
        "slug": STR,
        "activity": STR,
        "study": NULLABLE_STR,
        "language": STR,
        "default_language": STR,
        "languages": STRINGS,
        "title": LOCALISED_TEXT,
        "description": NULLABLE_TEXT,
        "metadata": {"type": "array", "items": PREVIEW_QUESTION},
        "sections": {"type": "array", "items": PREVIEW_SECTION},
        "fallbacks": {**INT, "description": "how many texts fell back to the default language"},
    }
)
CHANGE = obj(
    {"question": STR, "kind": {"type": "string", "enum": list(CHANGE_KINDS)}},
    refused={**BOOL, "description": "on `type_changed` and `added`: the type-change guard refuses it"},
    refusal=NULLABLE_STR,
)
COMPARISON = obj(
    {
        "from": obj({"version": INT, "draft": BOOL}),
        "to": obj({"version": NULLABLE_INT, "draft": BOOL}),
        "slug": STR,
        "identical": BOOL,
        "from_content_hash": STR,
        "to_content_hash": STR,
        "changes": {"type": "array", "items": CHANGE},
        "counts": {"type": "object", "additionalProperties": INT},
        "refused": {"type": "array", "items": obj({"path": STR, "message": STR, "question": NULLABLE_STR})},
        "publishable": BOOL,
    }
)


def _query(build: Any) -> Any:
    return lambda settings: build()


STUDIO_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("instrument_preview", "GET"): Operation(
        "Preview a published version as the interviewer will see it",
        "instruments",
        {200: Reply("the outline in the language asked for (default: the instrument's own)", PREVIEW)},
        query=_query(preview_query_schema),
        description="A language the instrument does not offer is a 400 whose `details` list its languages.",
    ),
    ("instruments_preview", "POST"): Operation(
        "Preview a draft definition (not stored) as the interviewer will see it",
        "instruments",
        {200: Reply("the outline of the draft", PREVIEW)},
        body=InstrumentDefinitionSchema,
        query=_query(preview_query_schema),
        description="The body is validated as by POST /api/v1/instruments/validate, with the same errors.",
    ),
    ("instrument_compare", "GET"): Operation(
        "Compare two published versions of an instrument",
        "instruments",
        {200: Reply("the changes from `from` to `to`", COMPARISON)},
        query=_query(compare_query_schema),
        description=(
            "`to` defaults to the current version, `from` to the one before it. `refused` is what the "
            "type-change guard would refuse if `to` were published now."
        ),
    ),
    ("instrument_compare", "POST"): Operation(
        "Compare a published version with a draft definition",
        "instruments",
        {200: Reply("the changes from version `from` to the draft", COMPARISON)},
        body=InstrumentDefinitionSchema,
        query=_query(compare_draft_query_schema),
        description=(
            "`from` defaults to the current version. The draft must be of this instrument (its `slug`). "
            "`refused` is what publishing the draft would be refused for."
        ),
    ),
}
