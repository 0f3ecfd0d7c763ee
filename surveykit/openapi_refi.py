"""OpenAPI operations of the REFI-QDA exchange: .qdpx projects and .qdc codebooks, downloaded and
imported (docs/refi-qda.md).

``surveykit.openapi`` merges ``REFI_OPERATIONS`` into its table.
"""

from __future__ import annotations

from typing import Any

from surveykit.analysis.exchange_views import (
    QDC_MEDIA_TYPE,
    QDC_UPLOAD_TYPES,
    QDPX_MEDIA_TYPE,
    QDPX_UPLOAD_TYPES,
    DownloadQuerySchema,
    ImportQuerySchema,
)
from surveykit.openapi_shapes import INT, STR, Operation, Reply, obj

BINARY = {"type": "string", "format": "binary"}
NOT_MODIFIED = Reply("the client's copy (If-None-Match) is current", None, None, ("ETag",))
CODEBOOK_CHANGES = obj(
    {
        "dry_run": {"type": "boolean"},
        "created": {
            "type": "array",
            "items": obj({"guid": STR, "name": STR, "parent": {"type": ["string", "null"]}}),
        },
        "updated": {
            "type": "array",
            "items": obj({"guid": STR, "name": STR, "fields": {"type": "array", "items": STR}}),
        },
        "unchanged": INT,
    }
)
CODING_CHANGES = obj(
    {
        "dry_run": {"type": "boolean"},
        "created": {
            "type": "array",
            "items": obj({"guid": STR, "code": STR, "source": STR, "start": INT, "end": INT}),
        },
        "already_there": {**INT, "description": "codings of the file surveykit already holds"},
        "sources_ignored": {**INT, "description": "sources surveykit did not export, without codings"},
    }
)


def _query(schema_class: type) -> Any:
    return lambda settings: schema_class()


def _download(summary: str, what: str, media_type: str) -> Operation:
    return Operation(
        summary,
        "analysis",
        {200: Reply(what, BINARY, media_type, ("ETag",)), 304: NOT_MODIFIED},
        query=_query(DownloadQuerySchema),
    )


REFI_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("analysis_country_qdpx", "GET"): _download(
        "A country's interviews, quotes, codings and codebook as a REFI-QDA project (.qdpx)",
        "the project",
        QDPX_MEDIA_TYPE,
    ),
    ("analysis_study_qdpx", "GET"): _download(
        "The whole study as a REFI-QDA project (.qdpx)", "the project", QDPX_MEDIA_TYPE
    ),
    ("analysis_codebook_qdc", "GET"): _download(
        "The study's codebook as a REFI-QDA codebook (.qdc)", "the codebook", QDC_MEDIA_TYPE
    ),
    ("analysis_codebook_qdc", "POST"): Operation(
        "Import a REFI-QDA codebook (.qdc): codes matched by guid, new ones created, none deleted",
        "analysis",
        {200: Reply("what changed (or would change, on a dry run)", CODEBOOK_CHANGES)},
        body=BINARY,
        body_media_types=QDC_UPLOAD_TYPES,
        query=_query(ImportQuerySchema),
        description=(
            "All or nothing. A file that is not valid against the standard's Codebook.xsd, or a code "
            "that would clash, is a 422 whose `details` name each element (path and line)."
        ),
    ),
    ("analysis_country_qdpx", "POST"): Operation(
        "Import the codings of a .qdpx that surveykit exported and a QDA tool changed",
        "analysis",
        {200: Reply("the codings created (or that would be, on a dry run)", CODING_CHANGES)},
        body=BINARY,
        body_media_types=QDPX_UPLOAD_TYPES,
        query=_query(ImportQuerySchema),
        description=(
            "Selections with codings on sources surveykit exported become codings of the caller, "
            "matched by the source's guid, their text checked against the current answer. Codings "
            "already held are not created twice. All or nothing: an unknown source or code, a changed "
            "answer, or a file that is not a valid .qdpx is a 422 listing every problem."
        ),
    ),
}
