"""Importing a codebook file into a study's codebook, all or nothing, and exporting one.

Each row names one code, by ``path`` or by ``name`` and ``parent``; ancestors a path names that do
not exist yet are created. A row is matched to a stored code by its ``guid`` when it has one that is
stored, else by its path (case-insensitively, among codes that are not merged); a matched code takes
the row's name, place, definition and colour, an unmatched row becomes a new code. A blank cell
leaves its field as it is (a new code gets the default). Codes the file does not name are left alone:
an import never retires or merges anything. So importing the same file twice changes nothing the
second time, and an exported codebook imports back unchanged.

The rows are applied in a savepoint with the same checks as the API's; any problem in any row rolls
all of them back and is reported with its row and column. A dry run rolls back even a clean import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.analysis import codebook
from surveykit.analysis.codebook_files import CodebookFile, FileRejected, FileRow, RowError
from surveykit.analysis.models import Code
from surveykit.studies.models import Study

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
FILE_PATH_SEPARATOR = "/"


@dataclass(frozen=True)
class ImportedCode:
    """What the import did (or, in a dry run, would do) to one code."""

    row: int
    action: str  # created, updated or unchanged
    path: str
    code: int | None  # None for a code a dry run would create
    fields: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "action": self.action,
            "path": self.path,
            "code": self.code,
            "fields": list(self.fields),
        }


@dataclass
class ImportResult:
    rows: int
    dry_run: bool
    codes: list[ImportedCode] = field(default_factory=list)
    changes: list[codebook.Change] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for code in self.codes if code.action == action)

    def summary(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "rows": self.rows,
            "created": self.count("created"),
            "updated": self.count("updated"),
            "unchanged": self.count("unchanged"),
        }


class _Importer:
    def __init__(self, session: Session, study: Study, actor: str, by_path: bool) -> None:
        self.session = session
        self.study = study
        self.actor = actor
        # Which column a problem with the code's name or place belongs to.
        self.name_column = "path" if by_path else "name"
        self.parent_column = "path" if by_path else "parent"
        self.codes: dict[int, Code] = {code.id: code for code in codebook.study_codes(session, study)}
        self.children: dict[tuple[int | None, str], Code] = {}
        for code in self.codes.values():
            if code.status != "merged":
                self.children[(code.parent_id, codebook.name_key(code.name))] = code
        self.described: dict[int, int] = {}  # code id -> the row that described it
        self.errors: list[RowError] = []
        self.result_codes: list[ImportedCode] = []
        self.changes: list[codebook.Change] = []

    # -------------------------------------------------------------------------------- the tree

    def path_of(self, code: Code) -> str:
        names = [code.name]
        while code.parent_id is not None:
            code = self.codes[code.parent_id]
            names.append(code.name)
        return f" {codebook.PATH_SEPARATOR} ".join(reversed(names))

    def _forget(self, code: Code) -> None:
        key = (code.parent_id, codebook.name_key(code.name))
        if self.children.get(key) is code:
            del self.children[key]

    def _remember(self, code: Code) -> None:
        self.codes[code.id] = code
        if code.status != "merged":
            self.children[(code.parent_id, codebook.name_key(code.name))] = code

    def _create(self, row: int, name: str, parent: Code | None, **values: Any) -> Code:
        code, change = codebook.create_code(
            self.session, self.study, self.actor, name=name, parent_id=parent.id if parent else None, **values
        )
        self._remember(code)
        self.changes.append(change)
        self.result_codes.append(ImportedCode(row, "created", self.path_of(code), code.id))
        return code

    def _ancestors(self, row: int, names: list[str]) -> Code | None:
        """The code at the path ``names``, created (with its own ancestors) where it is missing."""
        parent: Code | None = None
        for name in names:
            found = self.children.get((parent.id if parent else None, codebook.name_key(name)))
            parent = found if found is not None else self._create(row, name, parent)
        return parent

    # ---------------------------------------------------------------------------------- a row

    def problem(self, row: int, column: str | None, message: str) -> None:
        self.errors.append(RowError(row, column, message))

    def _names(self, row: FileRow) -> tuple[list[str], str] | None:
        """(the parent's path as names, the code's name), cleaned, or None after reporting a problem."""
        if self.name_column == "path":
            if "path" not in row.cells:
                self.problem(row.row, "path", "path is required")
                return None
            segments, column = row.cells["path"].split(FILE_PATH_SEPARATOR), "path"
        else:
            if "name" not in row.cells:
                self.problem(row.row, "name", "name is required")
                return None
            parent_text = row.cells.get("parent", "")
            segments = [*(parent_text.split(FILE_PATH_SEPARATOR) if parent_text else []), row.cells["name"]]
            column = "parent"
        if len(segments) > codebook.MAX_DEPTH:
            self.problem(row.row, column, f"a path has at most {codebook.MAX_DEPTH} levels")
            return None
        cleaned = []
        for index, segment in enumerate(segments):
            own = index == len(segments) - 1
            where = self.name_column if own else column
            if not segment.strip():
                self.problem(row.row, where, f"the path {'/'.join(segments)[:200]!r} has an empty level")
                return None
            try:
                cleaned.append(codebook.clean_name(segment, where))
            except codebook.CodebookError as exc:
                self.problem(row.row, exc.field, str(exc))
                return None
        return cleaned[:-1], cleaned[-1]

    def _values(self, row: FileRow) -> dict[str, Any] | None:
        values: dict[str, Any] = {}
        try:
            if "definition" in row.cells:
                values["definition"] = codebook.check_definition(row.cells["definition"])
            if "colour" in row.cells:
                values["colour"] = codebook.check_colour(row.cells["colour"])
        except codebook.CodebookError as exc:
            self.problem(row.row, exc.field, str(exc))
            return None
        if "guid" in row.cells:
            guid = row.cells["guid"]
            if not GUID.match(guid):
                self.problem(row.row, "guid", "guid must be a UUID like 3f2b8c1e-5d4a-4e7b-9c2d-1a2b3c4d5e6f")
                return None
            values["guid"] = guid.lower()
        return values

    def add(self, row: FileRow) -> None:
        names = self._names(row)
        values = self._values(row)
        if names is None or values is None:
            return
        parents, name = names
        code = self._match(row, parents, name, values.get("guid"))
        if code is False:
            return
        try:
            if code is None:
                parent = self._ancestors(row.row, parents)
                code = self._create(row.row, name, parent, **values)
            else:
                self._update(row, code, parents, name, values)
        except codebook.CodebookError as exc:
            column = {"name": self.name_column, "parent_id": self.parent_column}.get(
                exc.field or "", exc.field
            )
            self.problem(row.row, column, str(exc))
            return
        self.described[code.id] = row.row

    def _match(self, row: FileRow, parents: list[str], name: str, guid: str | None) -> Code | None | bool:
        """The stored code the row describes, None for a new one, False after reporting a problem."""
        code: Code | None = None
        if guid is not None:
            code = self.session.scalar(select(Code).where(Code.guid == guid))
            if code is not None and code.study_id != self.study.id:
                self.problem(row.row, "guid", "guid belongs to a code of another study")
                return False
            if code is not None and code.status == "merged":
                self.problem(
                    row.row,
                    "guid",
                    f"code {code.id} was merged into code {code.merged_into_id}: use that one's guid",
                )
                return False
        if code is None:
            parent: Code | None = None
            for segment in [*parents, name]:
                parent = self.children.get((parent.id if parent else None, codebook.name_key(segment)))
                if parent is None:
                    break
            code = parent
            if code is not None and guid is not None and code.guid != guid:
                self.problem(row.row, "guid", f"the code at this path (code {code.id}) has another guid")
                return False
        if code is not None and code.id in self.described:
            self.problem(
                row.row,
                self.name_column,
                f"row {self.described[code.id]} already describes this code (code {code.id})",
            )
            return False
        return code

    def _update(
        self, row: FileRow, code: Code, parents: list[str], name: str, values: dict[str, Any]
    ) -> None:
        wanted: dict[str, Any] = {key: value for key, value in values.items() if key != "guid"}
        wanted["name"] = name
        parent = self._ancestors(row.row, parents)
        wanted["parent_id"] = parent.id if parent is not None else None
        self._forget(code)
        try:
            change = codebook.update_code(self.session, self.study, code, None, wanted)
        finally:
            self._remember(code)
        if change is None:
            self.result_codes.append(ImportedCode(row.row, "unchanged", self.path_of(code), code.id))
            return
        self.changes.append(change)
        fields = tuple(sorted(change.details["after"]))
        self.result_codes.append(ImportedCode(row.row, "updated", self.path_of(code), code.id, fields))


def import_file(
    session: Session, study: Study, file: CodebookFile, actor: str, *, dry_run: bool = False
) -> ImportResult:
    """Apply the file's rows, all or none; ``FileRejected`` lists every problem found."""
    rows = file.rows
    savepoint = session.begin_nested()
    try:
        importer = _Importer(session, study, actor, file.by_path)
        for row in rows:
            importer.add(row)
        if importer.errors:
            raise FileRejected(importer.errors)
    except BaseException:
        savepoint.rollback()
        raise
    if dry_run:
        savepoint.rollback()
        codes = [
            ImportedCode(
                code.row, code.action, code.path, None if code.action == "created" else code.code, code.fields
            )
            for code in importer.result_codes
        ]
        return ImportResult(len(rows), True, codes)
    savepoint.commit()
    return ImportResult(len(rows), False, importer.result_codes, importer.changes)


def export_rows(session: Session, study: Study) -> list[dict[str, str]]:
    """The codes that are not merged, parents before their children, siblings by name, as file rows."""
    codes = [code for code in codebook.study_codes(session, study) if code.status != "merged"]
    children: dict[int | None, list[Code]] = {}
    for code in codes:
        children.setdefault(code.parent_id, []).append(code)
    rows: list[dict[str, str]] = []

    def walk(parent_id: int | None, prefix: str) -> None:
        for code in sorted(children.get(parent_id, []), key=lambda c: (codebook.name_key(c.name), c.id)):
            path = f"{prefix}{FILE_PATH_SEPARATOR}{code.name}" if prefix else code.name
            rows.append(
                {"path": path, "definition": code.definition, "colour": code.colour, "guid": code.guid}
            )
            walk(code.id, path)

    walk(None, "")
    return rows
