"""Uploaded tables (the registry import, the codebook import): telling CSV from XLSX by what was
declared and by the bytes themselves, and reading a cell as the text a person typed."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import Any

CSV = "csv"
XLSX = "xlsx"
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_CONTENT_TYPES = {"text/csv", "application/csv", "text/comma-separated-values"}


class NotATable(ValueError):
    """Neither a CSV file nor an XLSX workbook (or not what it claims to be)."""


class RowRefused(ValueError):
    """A row beyond a limit (too many rows, too wide); ``row`` is its 1-based number."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row


def file_kind(
    data: bytes, content_type: str | None = None, filename: str | None = None, *, noun: str = "file"
) -> str:
    """CSV or XLSX, from the declared type or the file name, checked against the bytes; ``noun``
    names the upload in the messages ("codebook")."""
    declared = (content_type or "").split(";")[0].strip().lower()
    suffix = filename.rsplit(".", 1)[-1].lower() if filename and "." in filename else ""
    is_zip = data[:4] == b"PK\x03\x04"
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" or suffix == "xls":
        raise NotATable(f"old Excel .xls files are not supported: save the {noun} as .xlsx or CSV")
    if declared == XLSX_CONTENT_TYPE or suffix == "xlsx":
        kind = XLSX
    elif declared in CSV_CONTENT_TYPES or suffix == "csv":
        kind = CSV
    elif declared in ("", "application/octet-stream", "text/plain"):
        kind = XLSX if is_zip else CSV
    else:
        raise NotATable(f"expected a CSV or XLSX {noun}, got {declared}")
    if kind == CSV and is_zip:
        raise NotATable("this is a zip archive (perhaps an XLSX workbook), not a CSV file")
    if kind == XLSX and not is_zip:
        raise NotATable("this is not an XLSX workbook")
    return kind


def cell_text(value: Any) -> str:
    """A cell as text: numbers without a spurious ``.0``, dates in ISO form, formulas as typed."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    text = getattr(value, "text", None)  # openpyxl's ArrayFormula and DataTableFormula
    return text if isinstance(text, str) else str(value)


def first_sheet_rows(data: bytes, max_columns: int, max_rows: int) -> Iterator[tuple[int, list[Any]]]:
    """The rows of an XLSX workbook's first sheet, numbered from 1, at most ``max_columns`` cells
    each. Raises ``NotATable`` (unreadable) or ``RowRefused`` (more rows, or a wider row, than
    allowed)."""
    import openpyxl  # imported when needed: it takes a while to import

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False, keep_links=False)
    except Exception as exc:  # zipfile, XML and openpyxl's own errors for malformed parts
        raise NotATable("this is not a readable XLSX workbook") from exc
    try:
        if not workbook.worksheets:
            return
        sheet = workbook.worksheets[0]
        # The declared dimensions are not trusted: a sheet claiming A1:XFD1048576 would otherwise
        # have every row padded to 16,384 cells. One column beyond the limit is read to notice it.
        sheet.reset_dimensions()
        rows = sheet.iter_rows(values_only=True, max_col=max_columns + 1)
        number = 0
        while True:
            try:
                cells = next(rows)
            except StopIteration:
                return
            except Exception as exc:
                raise NotATable("the workbook's first sheet cannot be read") from exc
            number += 1
            if number > max_rows:
                raise RowRefused(number, f"the sheet has more than {max_rows} rows")
            if len(cells) > max_columns and cells[max_columns] not in (None, ""):
                raise RowRefused(number, f"the sheet is wider than {max_columns} columns")
            yield number, list(cells[:max_columns])
    finally:
        workbook.close()
