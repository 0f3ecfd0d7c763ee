"""Codebook files: reading a CSV or XLSX codebook into rows, and writing one.

The first row names the columns: ``path`` (``Capacity/Training``: the code's name after the last
``/``, its ancestors before) or ``name`` with an optional ``parent`` (the parent's path), and
optionally ``definition``, ``colour`` (``#RRGGBB``) and ``guid``. CSV is UTF-8, with or without a
byte-order mark, separated by commas, semicolons or tabs; an XLSX codebook is its first sheet. A
cell that looks like a formula (``=...``) is read as the text it holds, never evaluated, and
written back as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from surveykit import spreadsheet_files

CSV = spreadsheet_files.CSV
XLSX = spreadsheet_files.XLSX
XLSX_CONTENT_TYPE = spreadsheet_files.XLSX_CONTENT_TYPE
CSV_CONTENT_TYPES = spreadsheet_files.CSV_CONTENT_TYPES

COLUMNS = ("path", "name", "parent", "definition", "colour", "guid")
EXPORT_COLUMNS = ("path", "definition", "colour", "guid")
MAX_FILE_BYTES = 5 * 1024 * 1024
# Codes in one file; and rows read from a sheet, blank ones included.
MAX_ROWS = 5_000
MAX_SHEET_ROWS = 20_000
MAX_COLUMNS = 30
MAX_ERRORS = 200


@dataclass(frozen=True)
class RowError:
    """A problem in the file; ``row`` is the sheet's row number (the headings are row 1)."""

    row: int | None
    column: str | None
    message: str

    @property
    def path(self) -> str:
        if self.row is None:
            return "file" + (f".{self.column}" if self.column else "")
        return f"file.row[{self.row}]" + (f".{self.column}" if self.column else "")

    def as_detail(self) -> dict[str, Any]:
        return {
            "location": "file",
            "path": self.path,
            "message": self.message,
            "row": self.row,
            "column": self.column,
        }


class FileRejected(ValueError):
    """The file cannot be imported; ``errors`` lists the problems found (up to ``MAX_ERRORS``)."""

    def __init__(self, errors: list[RowError], total: int | None = None) -> None:
        self.errors = errors[:MAX_ERRORS]
        self.total = total if total is not None else len(errors)
        more = f" (and {self.total - 1} more problem(s))" if self.total > 1 else ""
        super().__init__((errors[0].message if errors else "the file cannot be imported") + more)


class UnsupportedFile(FileRejected):
    """Not a CSV or XLSX file at all."""

    def __init__(self, message: str) -> None:
        super().__init__([RowError(None, None, message)])


@dataclass(frozen=True)
class FileRow:
    """One non-blank row: its number in the sheet and its cells by column name (blank cells omitted)."""

    row: int
    cells: dict[str, str]


@dataclass(frozen=True)
class CodebookFile:
    columns: tuple[str, ...]
    rows: list[FileRow]

    @property
    def by_path(self) -> bool:
        """Whether codes are named by a ``path`` column (else by ``name`` and ``parent``)."""
        return "path" in self.columns


def file_kind(data: bytes, content_type: str | None = None, filename: str | None = None) -> str:
    """CSV or XLSX, from the declared type or the file name, checked against the bytes."""
    try:
        return spreadsheet_files.file_kind(data, content_type, filename, noun="codebook")
    except spreadsheet_files.NotATable as exc:
        raise UnsupportedFile(str(exc)) from exc


cell_text = spreadsheet_files.cell_text


def _csv_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    if b"\x00" in data:
        raise UnsupportedFile("this is not a CSV text file (it contains NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRejected(
            [RowError(None, None, f"the file is not UTF-8 text (byte {exc.start}); save it as 'CSV UTF-8'")]
        ) from exc
    first_line = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first_line.count) if first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    number = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FileRejected([RowError(number + 1, None, f"not valid CSV: {exc}")]) from exc
        number += 1
        if number > MAX_SHEET_ROWS:
            raise FileRejected([RowError(number, None, f"the file has more than {MAX_SHEET_ROWS} rows")])
        if len(cells) > MAX_COLUMNS and any(cells[MAX_COLUMNS:]):
            raise FileRejected([RowError(number, None, f"the file is wider than {MAX_COLUMNS} columns")])
        yield number, cells[:MAX_COLUMNS]


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    try:
        yield from spreadsheet_files.first_sheet_rows(data, MAX_COLUMNS, MAX_SHEET_ROWS)
    except spreadsheet_files.NotATable as exc:
        raise UnsupportedFile(str(exc)) from exc
    except spreadsheet_files.RowRefused as exc:
        raise FileRejected([RowError(exc.row, None, str(exc))]) from exc


def _heading(value: Any) -> str:
    return " ".join(cell_text(value).strip().lower().split())


def _columns(cells: list[Any]) -> list[str | None]:
    headings = [_heading(cell) for cell in cells]
    while headings and not headings[-1]:
        headings.pop()
    errors: list[RowError] = []
    seen: set[str] = set()
    for heading in headings:
        if not heading:
            continue
        if heading not in COLUMNS:
            errors.append(
                RowError(1, None, f"unknown column {heading[:40]!r}; the columns are {', '.join(COLUMNS)}")
            )
        elif heading in seen:
            errors.append(RowError(1, heading, f"column {heading} appears twice"))
        seen.add(heading)
    if not seen & {"path", "name"}:
        errors.append(
            RowError(
                1,
                None,
                "the first row must name the columns: path (or name and parent), definition, colour, guid",
            )
        )
    elif "path" in seen and seen & {"name", "parent"}:
        errors.append(RowError(1, None, "give either a path column or name and parent columns, not both"))
    elif "parent" in seen and "name" not in seen:
        errors.append(RowError(1, "name", "a parent column needs a name column"))
    if errors:
        raise FileRejected(errors)
    return [heading if heading in COLUMNS else None for heading in headings]


def read_file(data: bytes, kind: str) -> CodebookFile:
    """The codebook's columns and non-blank rows, or ``FileRejected`` (file-level problems only: the
    rows' contents are checked by the import)."""
    if not data:
        raise FileRejected([RowError(None, None, "the file is empty")])
    if len(data) > MAX_FILE_BYTES:
        raise FileRejected(
            [RowError(None, None, f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")]
        )
    rows = _csv_rows(data) if kind == CSV else _xlsx_rows(data)
    header = next(rows, None)
    if header is None:
        raise FileRejected([RowError(None, None, "the file is empty")])
    columns = _columns(header[1])
    found: list[FileRow] = []
    errors: list[RowError] = []
    for number, cells in rows:
        values = [cell_text(cell).strip() for cell in cells]
        if not any(values):
            continue
        if len(found) >= MAX_ROWS:
            raise FileRejected([RowError(number, None, f"the file has more than {MAX_ROWS} codes; split it")])
        if any(
            value and (index >= len(columns) or columns[index] is None) for index, value in enumerate(values)
        ):
            errors.append(RowError(number, None, "a cell lies in a column without a known heading"))
        found.append(
            FileRow(
                number,
                {
                    name: values[index]
                    for index, name in enumerate(columns)
                    if name and index < len(values) and values[index]
                },
            )
        )
    if errors:
        raise FileRejected(errors)
    if not found:
        raise FileRejected([RowError(None, None, "the file has headings but no codes")])
    return CodebookFile(tuple(name for name in columns if name), found)


# ------------------------------------------------------------------------------------------ writing


def write_csv(rows: list[dict[str, str]]) -> bytes:
    """UTF-8 with a byte-order mark, so that Excel opens it as UTF-8."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([row.get(column, "") for column in EXPORT_COLUMNS])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def write_xlsx(rows: list[dict[str, str]]) -> bytes:
    """One sheet, every cell a text cell: a definition starting with ``=`` stays text, not a formula."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Codebook")

    def text_cells(values: list[str]) -> list[Any]:
        cells = []
        for value in values:
            cell = WriteOnlyCell(sheet, value=value)
            cell.data_type = "s"
            cells.append(cell)
        return cells

    sheet.append(text_cells(list(EXPORT_COLUMNS)))
    for row in rows:
        sheet.append(text_cells([row.get(column, "") for column in EXPORT_COLUMNS]))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
