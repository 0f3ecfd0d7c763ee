"""OpenAPI operations of coding: codings of a country's answers and agreement between two coders
(docs/coding.md).

``surveykit.openapi`` merges ``CODING_OPERATIONS`` into its table.
"""

from __future__ import annotations

from typing import Any

import colander

from surveykit.analysis.coding_views import CodingChangeSchema, ListQuerySchema, NewCodingSchema
from surveykit.analysis.models import ANCHORS
from surveykit.openapi_shapes import DATETIME, INT, NULLABLE_STR, STR, Operation, Reply, list_of, obj

NULLABLE_INT = {"type": ["integer", "null"]}
NULLABLE_NUMBER = {"type": ["number", "null"]}
CODING = obj(
    {
        "id": INT,
        "guid": STR,
        "interview_uuid": STR,
        "question_id": STR,
        "quote_id": NULLABLE_STR,
        "start": {**INT, "description": "offset in Unicode code points into the answer"},
        "end": {**INT, "description": "offset after the passage's last code point"},
        "text": {**STR, "description": "the passage as the answer held it when it was anchored"},
        "code_id": INT,
        "original_code_id": NULLABLE_INT,
        "memo": STR,
        "coder": STR,
        "anchor": {"type": "string", "enum": list(ANCHORS)},
        "anchored_revision": {**INT, "description": "the revision whose answer the offsets point into"},
        "created_at": DATETIME,
        "updated_at": DATETIME,
    }
)
CODINGS = list_of("codings", CODING, next_after=INT, next=STR)
CODE_FIGURES = obj(
    {
        "code_id": INT,
        "units": INT,
        "table": obj({"both": INT, "first_only": INT, "second_only": INT, "neither": INT}),
        "percent_agreement": {**NULLABLE_NUMBER, "description": "0 to 100; null when there is no unit"},
        "kappa": {**NULLABLE_NUMBER, "description": "Cohen's kappa; null when undefined (see note)"},
        "note": NULLABLE_STR,
    }
)
AGREEMENT = obj(
    {
        "coders": {"type": "array", "items": STR},
        "unit": STR,
        "units": INT,
        "codes": {"type": "array", "items": CODE_FIGURES},
    }
)
NOT_FOUND = (
    "An interview, coding or country that is not in the study and country of the URL is a 404 "
    "(`interview_not_found`, `coding_not_found`, `country_not_found`)."
)


def _agreement_query() -> colander.SchemaNode:
    # The view reads ``coder`` twice itself (query_params refuses repeated keys); this mirrors it.
    schema = colander.MappingSchema()
    schema.add(colander.SchemaNode(colander.String(), name="coder", validator=colander.Length(1, 64)))
    schema.add(colander.SchemaNode(colander.Integer(), name="code", missing=None))
    return schema


def _query(build: Any) -> Any:
    return lambda settings: build()


CODING_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("codings", "GET"): Operation(
        "List the codings of a country",
        "analysis",
        {200: Reply("a page of codings, oldest first", CODINGS)},
        query=_query(ListQuerySchema),
        description="`next_after` and `next` are present when there is a further page.",
    ),
    ("codings", "POST"): Operation(
        "Code a passage of an answer, or a quote",
        "analysis",
        {201: Reply("the coding", CODING)},
        body=NewCodingSchema,
        description=(
            "The passage is `question_id`, `start` and `end` (code points) in the interview's current "
            "revision, or `quote_id`, a quote of that revision whose offsets are used. Only text answers "
            "can be coded; `code_id` must be an active code of the study. " + NOT_FOUND
        ),
    ),
    ("coding", "GET"): Operation("One coding", "analysis", {200: Reply("the coding", CODING)}),
    ("coding", "PATCH"): Operation(
        "Change a coding's memo or code, confirm a moved coding, or re-place it",
        "analysis",
        {200: Reply("the coding", CODING)},
        body=CodingChangeSchema,
        description=(
            "Only the coding's coder, or an admin of the study, may change it (else 403). `start` and "
            "`end` re-place it in the current revision's answer (anchor `current`); `confirm` accepts "
            'a `moved` coding where it now is; `memo: ""` clears the memo.'
        ),
    ),
    ("coding", "DELETE"): Operation(
        "Delete a coding",
        "analysis",
        {200: Reply("what was deleted", obj({"deleted": CODING}))},
        description="Only the coding's coder, or an admin of the study, may delete it (else 403).",
    ),
    ("coding_agreement", "GET"): Operation(
        "Agreement between two coders, per code",
        "analysis",
        {200: Reply("percent agreement and Cohen's kappa per code, with each code's 2×2 table", AGREEMENT)},
        query=_query(_agreement_query),
        description=(
            "Give `coder` twice (`?coder=a&coder=b`), and `code` to report one code only. The units are "
            "the answers (interview and question) either coder coded; see docs/coding.md."
        ),
    ),
}
