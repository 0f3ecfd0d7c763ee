"""OpenAPI operations of the files for statistics programs: the CSV of the Answers sheet, SPSS
syntax and a Stata do-file (docs/exports.md).

``surveykit.openapi`` merges ``STATS_EXPORT_OPERATIONS`` into its table, beside the workbook's.
"""

from __future__ import annotations

from typing import Any

import colander

from surveykit.exports.views import ExportQuerySchema
from surveykit.openapi_shapes import Operation, Reply

BINARY = {"type": "string", "format": "binary"}
TEXT = {"type": "string"}
NOT_MODIFIED = Reply("the client's copy (If-None-Match) is current", None, None, ("ETag",))
FILES = {
    "csv": (
        "The Answers sheet as UTF-8 CSV",
        Reply(
            "the CSV (a text a spreadsheet would run as a formula has one ' in front)",
            BINARY,
            "text/csv",
            ("ETag",),
        ),
    ),
    "sps": (
        "SPSS syntax that reads the CSV, with variable and value labels",
        Reply("the SPSS syntax", TEXT, "text/plain", ("ETag",)),
    ),
    "do": (
        "A Stata do-file that reads the CSV, with variable and value labels",
        Reply("the Stata do-file", TEXT, "text/plain", ("ETag",)),
    ),
}


def _query(settings: Any) -> colander.SchemaNode:
    return ExportQuerySchema()


def _operations() -> dict[tuple[str, str], Operation]:
    operations = {}
    for extension, (summary, reply) in FILES.items():
        for route, place in (
            (f"export_country_{extension}", "one country"),
            (f"export_study_{extension}", "the whole study"),
        ):
            operations[(route, "GET")] = Operation(
                f"{summary}: {place}",
                "exports",
                {200: reply, 304: NOT_MODIFIED},
                query=_query,
            )
    return operations


STATS_EXPORT_OPERATIONS = _operations()
