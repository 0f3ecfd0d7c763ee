"""OpenAPI operations of a study's codebook (docs/codebook.md).

``surveykit.openapi`` merges ``CODEBOOK_OPERATIONS`` into its table.
"""

from __future__ import annotations

from typing import Any

from surveykit.analysis import codebook_schemas
from surveykit.openapi_shapes import INT, STR, Operation, Reply, obj

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
NULLABLE_INT = {"type": ["integer", "null"]}
CODE = obj(
    {
        "id": INT,
        "guid": STR,
        "name": STR,
        "definition": STR,
        "colour": {"type": "string", "pattern": "^#[0-9A-F]{6}$"},
        "status": {"enum": ["active", "retired", "merged"]},
        "parent": NULLABLE_INT,
        "merged_into": NULLABLE_INT,
        "version": INT,
        "path": {**STR, "description": "the names from the top of the tree, joined by ` / `"},
        "codings": {**INT, "description": "how many passages are coded with it"},
        "created_by": STR,
        "created_at": STR,
        "updated_at": STR,
    }
)
TREE_CODE = {
    **CODE,
    "properties": {**CODE["properties"], "children": {"type": "array", "items": {"type": "object"}}},
}
CODEBOOK = obj({"study": STR, "codes": {"type": "array", "items": TREE_CODE}})
CODE_REPLY = Reply("the code; its ETag is its version, for If-Match", CODE, headers=("ETag",))
HISTORY_EVENT = obj({"at": STR, "action": STR, "actor": STR, "details": {"type": "object"}})
IMPORTED_CODE = obj(
    {
        "row": INT,
        "action": {"enum": ["created", "updated", "unchanged"]},
        "path": STR,
        "code": {**NULLABLE_INT, "description": "null for a code a dry run would create"},
        "fields": {"type": "array", "items": STR},
    }
)
IMPORT_RESULT = obj(
    {
        "file_type": {"enum": ["csv", "xlsx"]},
        "dry_run": {"type": "boolean"},
        "rows": INT,
        "created": INT,
        "updated": INT,
        "unchanged": INT,
        "codes": {"type": "array", "items": IMPORTED_CODE},
    }
)
VERSION_NOTE = (
    'Name the version of the code you saw, in the body\'s `version` or as `If-Match: "N"`: a stale one '
    "is answered 409 `stale_version` and nothing changes."
)


def _query(build: Any) -> Any:
    return lambda settings: build()


CODEBOOK_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("codebook", "GET"): Operation(
        "The study's codebook as a tree",
        "codebook",
        {
            200: Reply(
                "every code, nested under its parent (ETag; revalidate with If-None-Match)",
                CODEBOOK,
                headers=("ETag",),
            ),
            304: Reply("the client's copy (If-None-Match) is current", None, None, ("ETag",)),
        },
    ),
    ("codebook_codes", "POST"): Operation(
        "Create a code",
        "codebook",
        {201: Reply("the new code", CODE, headers=("ETag", "Location"))},
        body=codebook_schemas.CodeCreateSchema,
        errors=(409,),
        description="A name is unique among its siblings (ignoring case) and holds no `/`; 409 when taken.",
    ),
    ("codebook_code", "GET"): Operation("One code", "codebook", {200: CODE_REPLY}),
    ("codebook_code", "PATCH"): Operation(
        "Rename, redefine, recolour or move a code",
        "codebook",
        {200: CODE_REPLY},
        body=codebook_schemas.CodeUpdateSchema,
        errors=(409,),
        description=VERSION_NOTE + " A code cannot move under itself or one of its sub-codes.",
    ),
    ("codebook_code_retire", "POST"): Operation(
        "Retire a code (kept, with its codings)",
        "codebook",
        {200: CODE_REPLY},
        body=codebook_schemas.CodeActionSchema,
        body_required=False,
        errors=(409,),
        description="The body is optional. " + VERSION_NOTE,
    ),
    ("codebook_code_reactivate", "POST"): Operation(
        "Reactivate a retired code",
        "codebook",
        {200: CODE_REPLY},
        body=codebook_schemas.CodeActionSchema,
        body_required=False,
        errors=(409,),
        description="The body is optional. " + VERSION_NOTE,
    ),
    ("codebook_code_merge", "POST"): Operation(
        "Merge a code into another",
        "codebook",
        {
            200: Reply(
                "both codes after the merge",
                obj({"merged": CODE, "into": CODE, "codings_moved": INT}),
            )
        },
        body=codebook_schemas.CodeMergeSchema,
        errors=(409,),
        description=(
            "The code's codings and sub-codes move to `into`; each coding remembers the code it was made "
            "with. The code stays, `merged`, pointing at `into`. " + VERSION_NOTE
        ),
    ),
    ("codebook_code_history", "GET"): Operation(
        "The history of a code, from the audit log",
        "codebook",
        {
            200: Reply(
                "its changes, oldest first, with before and after values",
                obj({"code": INT, "history": {"type": "array", "items": HISTORY_EVENT}}),
            )
        },
    ),
    ("codebook_import", "POST"): Operation(
        "Import a CSV or XLSX codebook: all rows or none",
        "codebook",
        {200: Reply("what was imported (or, in a dry run, would be)", IMPORT_RESULT)},
        body={"type": "string", "format": "binary"},
        body_media_types=("text/csv", XLSX, "multipart/form-data"),
        multipart_fields=("dry_run",),
        query=_query(codebook_schemas.ImportQuerySchema),
        errors=(409,),
        description=(
            "Columns: `path` (`Capacity/Training`; missing parents are created) or `name` and `parent`, "
            "and `definition`, `colour`, `guid`. Rows match stored codes by guid, else by path, so "
            "re-importing a file changes nothing. Errors name the row and column (`file.row[3].colour`)."
        ),
    ),
}
