"""OpenAPI operations of export jobs: a workbook built in the background (docs/export-jobs.md).

``surveykit.openapi`` merges ``JOB_OPERATIONS`` into its table.
"""

from __future__ import annotations

from typing import Any

from surveykit.exports.models import JOB_STATES
from surveykit.exports.views import ExportQuerySchema
from surveykit.openapi_shapes import (
    DATETIME,
    INT,
    NULLABLE_DATETIME,
    NULLABLE_STR,
    STR,
    Operation,
    Reply,
    obj,
)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
NULLABLE_INT = {"type": ["integer", "null"]}
EXPORT_JOB = obj(
    {
        "id": {**STR, "description": "a random UUID; the job's URL is its only name"},
        "state": {"type": "string", "enum": list(JOB_STATES)},
        "format": {"type": "string", "enum": ["xlsx"]},
        "study": STR,
        "country": {**STR, "description": "the country code, or `ALL`"},
        "activity": NULLABLE_STR,
        "lang": NULLABLE_STR,
        "progress": obj(
            {
                "step": STR,
                "done": {**INT, "description": "interviews written"},
                "total": {**NULLABLE_INT, "description": "interviews in the scope, once counted"},
                "percent": {**INT, "description": "100 only when the file is ready"},
            }
        ),
        "error": {**NULLABLE_STR, "description": "why it failed, or why it was started again"},
        "attempts": INT,
        "created_at": DATETIME,
        "started_at": NULLABLE_DATETIME,
        "finished_at": NULLABLE_DATETIME,
        "expires_at": {**NULLABLE_DATETIME, "description": "when the job and its file are deleted"},
        "file": {
            "anyOf": [obj({"name": STR, "size": INT, "etag": STR}), {"type": "null"}],
            "description": "once done: the download's file name, size in bytes and ETag",
        },
        "links": obj({"self": STR}, file=STR),
    }
)
_LINKS = {
    "ExportJob": ("export_job_get", {"job": "$response.body#/id"}),
    "ExportJobFile": ("export_job_file_get", {"job": "$response.body#/id"}),
}


def _query(settings: Any) -> Any:
    return ExportQuerySchema()


def _start(scope: str) -> Operation:
    return Operation(
        f"Start building the workbook of {scope} in the background",
        "exports",
        {
            202: Reply(
                "the queued job; `Location` is its URL", EXPORT_JOB, headers=("Location",), links=_LINKS
            )
        },
        query=_query,
        body_required=False,
        description=(
            "The same grants and query as the synchronous download. Watch the job, then download "
            "its file: the same bytes the synchronous route gives for the same data."
        ),
    )


JOB_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("export_country_jobs", "POST"): _start("one country"),
    ("export_study_jobs", "POST"): _start("the whole study"),
    ("export_job", "GET"): Operation(
        "An export job of the caller: state and progress",
        "exports",
        {200: Reply("the job", EXPORT_JOB)},
        description="Only the caller who started it sees a job; for anyone else it is a 404.",
    ),
    ("export_job", "DELETE"): Operation(
        "Cancel an export job, or delete its file",
        "exports",
        {204: Reply("deleted", None, None)},
    ),
    ("export_job_file", "GET"): Operation(
        "The workbook of a finished export job",
        "exports",
        {
            200: Reply("the workbook", {"type": "string", "format": "binary"}, XLSX, ("ETag",)),
            304: Reply("the client's copy (If-None-Match) is current", None, None, ("ETag",)),
        },
        errors=(409,),
        description="`409` (`conflict`) while the job is queued or running, or when it failed.",
    ),
}
