"""A safe, streaming layer over openpyxl's write-only workbooks.

openpyxl alone is not safe for interview text: a text starting with ``=``
becomes a formula, a control character raises, text over Excel's cell limit is cut silently (counting
Python characters, not Excel's UTF-16 units) and row 1,048,577 makes the sheet invalid. Everything
written through ``SheetWriter.append`` is therefore checked here:

- every text is a string cell (``t="inlineStr"``), never a formula, whatever it starts with;
- characters XML cannot hold become ``CONTROL_MARKER`` and are counted (``Stats``);
- a carriage return is written as ``&#13;`` (a raw one reads back as a line feed in every reader);
- a text over ``max_cell_units`` UTF-16 code units is split; the parts are marked ``[part k/n] ``
  and continue in the same column on the next row(s), which repeat the row's key columns;
- a sheet that reaches ``max_rows`` continues on a new sheet ``Title (2)`` with the same headers;
- a number Excel cannot hold exactly (beyond 10^15 in size, a decimal too small to keep, not finite)
  and a date before Excel's calendar (1900-01-01) are written as text marked ``[number as text] ``
  or ``[date as text] `` and counted, so no stored value can make the writer fail or mislead.

Cells are reused per column and handed to openpyxl ready-made (value, type and style set), so the
writer does no per-cell work that openpyxl would not do anyway.

openpyxl spools each sheet's XML to a temporary file and deflates them all when the workbook is
saved: on this data, deflating is about a third of the whole time, all of it after the last row.
A workbook given its target up front can instead stream one sheet (the largest) straight into its
zip entry: the XML is handed in 1 MiB pieces to a worker thread that deflates and writes them
(``DeflatingEntry``; zlib lets go of the GIL), so on a machine with a second core that sheet is
compressed while the rows are still being generated, and at save time only the others remain.
"""

from __future__ import annotations

import io
import os
import queue
import re
import shutil
import threading
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.cell import Cell
from openpyxl.drawing.spreadsheet_drawing import SpreadsheetDrawing
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet._writer import WorksheetWriter
from openpyxl.writer.excel import ExcelWriter

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_CELL_UNITS = 32_767
SHEET_TITLE_MAX = 31

# What replaces a character that XML 1.0 cannot hold (NUL, most C0 controls, lone surrogates,
# U+FFFE, U+FFFF): the Unicode replacement character, visible in every spreadsheet program.
CONTROL_MARKER = "\ufffd"
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# What makes a text need care: the characters above, or a carriage return (see _CarriageReturnText).
SPECIAL = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]")
_C0_BYTES = bytes(code for code in range(32) if code not in (9, 10))
PART_MARKER = "[part {k}/{n}] "
PART_PATTERN = re.compile(r"\[part (\d+)/(\d+)\] ")

# The numbers written as numbers: the bound sync validation applies to number answers
# (``surveykit.instruments.schemas.NUMBER_LIMIT``); anything else becomes marked text.
NUMBER_LIMIT = 10**15
SMALLEST_DECIMAL = 1e-300
NUMBER_AS_TEXT = "[number as text] "
# Excel's calendar starts on 1900-01-01: an earlier date would be a serial of 0 or below.
EXCEL_FIRST_DATE = date(1900, 1, 1)
DATE_AS_TEXT = "[date as text] "

CHECKED_MAX = 4096
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"

# Column kinds: how wide a column is by default and whether its text wraps.
TEXT = "text"  # short text: IDs, codes, names
LONG = "long"  # long text: answers, quotes, prompts (wrapped)
NUMBER = "number"
DATE = "date"


def needs_care(text: str) -> bool:
    """Whether ``text`` holds a character XML cannot hold, or a carriage return.

    The check runs on every answer, so it avoids ``re`` (about 13 ns a character): text that fits
    Latin-1 (most interview text) is checked by ``bytes.translate`` at C speed, and only wider text
    (Khmer, Amharic, Thai...), which may also hold surrogates, goes through the regular expression.
    """
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        return SPECIAL.search(text) is not None
    return len(raw.translate(None, _C0_BYTES)) != len(raw)


def utf16_units(text: str) -> int:
    """The length Excel counts: UTF-16 code units (a character beyond U+FFFF counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def split_units(text: str, limit: int) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` UTF-16 units, preferring to cut after a space.

    Cutting is by whole characters, so a surrogate pair is never separated; joining the pieces gives
    ``text`` back exactly.
    """
    pieces: list[str] = []
    start = 0
    length = len(text)
    while start < length:
        # Characters beyond the BMP take two units: walk forward until the budget is spent.
        end = min(length, start + limit)
        while utf16_units(text[start:end]) > limit:
            over = utf16_units(text[start:end]) - limit
            end -= max(1, over // 2)
        if end < length:
            space = text.rfind(" ", start + limit // 2, end)
            if space != -1:
                end = space + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def join_parts(parts: Sequence[str]) -> str:
    """Undo the split of one text written as marked parts (for readers of the workbook)."""
    out = []
    for part in parts:
        match = PART_PATTERN.match(part)
        out.append(part[match.end() :] if match else part)
    return "".join(out)


class _CarriageReturnText(str):
    """Text holding a carriage return, written as the character reference ``&#13;``.

    ElementTree writes ``\\r`` raw, and XML parsers turn every raw CR (and CR LF) into LF, so the
    text would not read back as entered. openpyxl (without lxml) escapes cell text with
    ``xml.etree.ElementTree._escape_cdata``, which asks ``"&" in text`` and then calls
    ``text.replace("&", "&amp;")``; this subclass answers yes and escapes the CRs in that call.
    """

    __slots__ = ()

    def __contains__(self, item: object) -> bool:
        return item == "&" or str.__contains__(self, item)  # type: ignore[operator]

    def replace(self, old: str, new: str, count: int = -1) -> str:  # type: ignore[override]
        if old == "&":
            return str.replace(self, "&", "&amp;").replace("\r", "&#13;")
        return str.replace(self, old, new, count)


@dataclass(frozen=True)
class Column:
    header: str
    kind: str = TEXT
    width: float | None = None
    # Key columns are repeated on the continuation rows of a split text.
    key: bool = False


DEFAULT_WIDTHS = {TEXT: 18.0, LONG: 60.0, NUMBER: 12.0, DATE: 12.0}


@dataclass
class Stats:
    """What the writer had to change or arrange, reported in the Readme."""

    control_characters: int = 0
    cells_with_control_characters: int = 0
    split_texts: int = 0
    continuation_rows: int = 0
    continuation_sheets: list[str] = field(default_factory=list)
    numbers_as_text: int = 0
    dates_as_text: int = 0


class WorkbookWriter:
    """A write-only workbook whose sheets are written through ``SheetWriter``."""

    def __init__(
        self,
        max_rows: int = EXCEL_MAX_ROWS,
        max_cell_units: int = EXCEL_MAX_CELL_UNITS,
        target: str | IO[bytes] | None = None,
        dated: datetime | None = None,
    ) -> None:
        """``target``, given here, opens the .xlsx at once so that a sheet can stream into it
        (``sheet(..., stream=True)``); ``save()`` then completes that same file.

        ``dated``: the time every zip entry of that file carries (else each entry's own writing
        time), so that the same content written at the same ``dated`` gives the same bytes."""
        if max_rows < 2:
            raise ValueError("max_rows must leave room for a header and a row")
        if max_cell_units < 64:
            raise ValueError("max_cell_units is too small to hold a part marker")
        self.max_rows = max_rows
        self.max_cell_units = max_cell_units
        self.workbook = Workbook(write_only=True)
        self._target = target
        self._archive: zipfile.ZipFile | None = None
        if target is not None:
            # As openpyxl opens it when saving.
            self._archive = (
                zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
                if dated is None
                else DatedZipFile(target, dated)
            )
        self._streaming: SheetWriter | None = None
        self.stats = Stats()
        self.sheets: list[SheetWriter] = []
        # Texts already found clean and short enough, by identity: a workbook writes the same text
        # objects many times (an answer in Responses and in Answers, a prompt on every row), and
        # need not scan them again. Holding the object keeps its id from being reused; bounded.
        self._checked: dict[int, str] = {}
        # Styles are registered with the workbook through a cell's parent sheet; this stands in for one.
        self._style_host = SimpleNamespace(parent=self.workbook)
        header = Cell(self._style_host, row=1, column=1)
        header.font = Font(bold=True)
        header.fill = PatternFill("solid", fgColor="DDE4EE")
        header.alignment = Alignment(wrap_text=True, vertical="top")
        self._styles = {
            "header": header._style,
            TEXT: self._style(Alignment(vertical="top")),
            LONG: self._style(Alignment(wrap_text=True, vertical="top")),
            NUMBER: self._style(Alignment(vertical="top")),
            DATE: self._style(Alignment(vertical="top"), DATE_FORMAT),
            "datetime": self._style(Alignment(vertical="top"), DATETIME_FORMAT),
        }

    def _style(self, alignment: Alignment, number_format: str | None = None) -> Any:
        cell = Cell(self._style_host, row=1, column=1)
        cell.alignment = alignment
        if number_format:
            cell.number_format = number_format
        return cell._style

    def sheet(
        self,
        title: str,
        columns: Sequence[Column],
        header_rows: Sequence[Sequence[str | None]] | None = None,
        freeze_columns: int = 0,
        autofilter: bool = True,
        stream: bool = False,
    ) -> SheetWriter:
        """A new sheet, placed after the sheets created before it.

        ``header_rows`` default to one row of the column headers; the last header row carries the
        filter buttons and the panes are frozen below it (and right of ``freeze_columns``).
        ``stream``: write this sheet straight into the file (see the module docstring); one sheet
        of a workbook at most, and only when the target was given to the constructor.
        """
        if stream:
            if self._archive is None:
                raise ValueError("a sheet can only stream into a workbook given its target up front")
            if self._streaming is not None:
                raise ValueError("only one sheet of a workbook can stream into the file")
        sheet = SheetWriter(self, title, list(columns), header_rows, freeze_columns, autofilter, stream)
        if stream:
            self._streaming = sheet
        self.sheets.append(sheet)
        return sheet

    def save(self, target: str | IO[bytes] | None = None) -> None:
        """Write the workbook to ``target``, or complete the file given to the constructor."""
        if self._archive is not None and target is not None and target is not self._target:
            raise ValueError("this workbook is being written to the target given to the constructor")
        if self._archive is None and target is None:
            raise ValueError("no target to save the workbook to")
        for sheet in self.sheets:
            sheet.finish()
        # Continuation sheets were created late; place each after the sheet it continues.
        order: list[WriteOnlyWorksheet] = []
        for sheet in self.sheets:
            order.extend(sheet.worksheets)
        self.workbook._sheets = order
        if self._archive is None:
            self.workbook.save(target)
            return
        _StreamAwareExcelWriter(self.workbook, self._archive).save()

    def discard(self) -> None:
        """Give up a workbook that will not be saved: close its sheets, remove their spool files,
        stop a streaming sheet's worker and close the file."""
        for sheet in self.sheets:
            for ws in sheet.worksheets:
                writer = ws._writer
                if writer is None or ws.closed:
                    continue
                try:
                    ws.close()
                except Exception:  # noqa: BLE001 - best effort on the way out of a failure
                    pass
                try:
                    writer.cleanup()
                except OSError:
                    pass
            if sheet.entry is not None:
                sheet.entry.abandon()
        if self._archive is not None:
            try:
                self._archive.close()
            except Exception:  # noqa: BLE001 - the file is being given up
                pass


class SheetWriter:
    def __init__(
        self,
        book: WorkbookWriter,
        title: str,
        columns: list[Column],
        header_rows: Sequence[Sequence[str | None]] | None,
        freeze_columns: int,
        autofilter: bool,
        stream: bool = False,
    ) -> None:
        if len(title) > SHEET_TITLE_MAX - 5:
            raise ValueError(f"sheet title {title!r} leaves no room for a continuation number")
        self.book = book
        self.title = title
        self.columns = columns
        if header_rows is None:
            header_rows = [[column.header for column in columns]]
        self.header_rows = [list(row) for row in header_rows]
        self.freeze_columns = freeze_columns
        self.autofilter = autofilter
        self.stream = stream
        self.entry: DeflatingEntry | None = None  # the zip entry a streaming sheet is writing
        self.worksheets: list[WriteOnlyWorksheet] = []
        self.rows_written = 0  # data rows over all parts, continuation rows included
        self._key_indexes = [i for i, column in enumerate(columns) if column.key]
        self._limit = book.max_cell_units
        self._half_limit = book.max_cell_units // 2
        # One reusable cell per column and kind of value. A cell only reaches its workbook through
        # its sheet (styles, date epoch), so the cells serve every continuation sheet too.
        self._cells: dict[tuple[int, str], Cell] = {}
        self._text_cells = [
            self._new_cell(i, LONG if c.kind == LONG else TEXT) for i, c in enumerate(columns)
        ]
        self._number_cells = [self._new_cell(i, NUMBER) for i in range(len(columns))]
        self._open_worksheet()

    # ----------------------------------------------------------------------------------- layout

    def _open_worksheet(self) -> None:
        number = len(self.worksheets) + 1
        title = self.title if number == 1 else f"{self.title} ({number})"
        if self.worksheets:
            self._close_worksheet()
            self.book.stats.continuation_sheets.append(title)
        ws = self.book.workbook.create_sheet(title)
        # Column widths and panes precede the rows in the sheet XML: set them before any row.
        for index, column in enumerate(self.columns, 1):
            ws.column_dimensions[get_column_letter(index)].width = column.width or DEFAULT_WIDTHS[column.kind]
        if self.header_rows:
            ws.freeze_panes = f"{get_column_letter(self.freeze_columns + 1)}{len(self.header_rows) + 1}"
        if self.stream:
            self._stream_into_entry(ws, number)
        # openpyxl would first try each ready-made cell as a value and catch the ValueError; the
        # cells here are complete, so they go to the sheet writer as they are.
        ws._values_to_row = _cells_to_row
        self._ws = ws
        self.worksheets.append(ws)
        self._row = 0
        for header in self.header_rows:
            self._write([self._cell(i, "header", self._text(value)) for i, value in enumerate(header)])

    def _stream_into_entry(self, ws: WriteOnlyWorksheet, number: int) -> None:
        """Give ``ws`` a writer whose XML goes into its own zip entry as it is produced.

        The entry's name is fixed now (openpyxl would number sheets at save time); the workbook's
        relationships and content types name the sheet by this path, whatever it is.
        """
        archive = self.book._archive
        assert archive is not None
        ws._path = f"/xl/worksheets/streamed{number}.xml"
        self.entry = DeflatingEntry(archive, ws._path[1:])
        # What WriteOnlyWorksheet would do on its first row, with the entry instead of a spool file.
        ws._writer = _StreamedSheetWriter(ws, out=self.entry)
        ws._writer.write_top()

    def _close_worksheet(self) -> None:
        if self.autofilter and self.header_rows:
            last = get_column_letter(max(1, len(self.columns)))
            first_row = len(self.header_rows)
            self._ws.auto_filter.ref = f"A{first_row}:{last}{max(first_row, self._row)}"
        if self.entry is not None:
            # The zip takes one entry at a time: this one is complete before the next one starts.
            self._ws.close()
            self.entry.finish()
            self.entry = None

    def finish(self) -> None:
        self._close_worksheet()

    @property
    def row(self) -> int:
        """The number of the last row written on the sheet being written (headers included)."""
        return self._row

    # ------------------------------------------------------------------------------------ cells

    def _new_cell(self, index: int, style: str) -> Cell:
        cell = Cell(self.book._style_host, row=1, column=index + 1)
        cell._style = self.book._styles[style]
        cell.data_type = "n" if style == NUMBER else "d" if style in (DATE, "datetime") else "s"
        self._cells[(index, style)] = cell
        return cell

    def _cell(self, index: int, style: str, value: Any) -> Cell | None:
        if value is None or value == "":
            return None
        cell = self._cells.get((index, style)) or self._new_cell(index, style)
        cell._value = value
        if isinstance(value, str):
            cell.data_type = "s"
        elif isinstance(value, date):
            cell.data_type = "d"
        else:
            cell.data_type = "n"
        return cell

    def _text(self, value: Any) -> str | None:
        """Clean text for one cell (no splitting: headers are short)."""
        if value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        return self._clean(text) if needs_care(text) else text

    def _clean(self, text: str) -> str:
        """Replace what XML cannot hold (counted), and protect carriage returns."""
        if XML_ILLEGAL.search(text):
            text, count = XML_ILLEGAL.subn(CONTROL_MARKER, text)
            self.book.stats.control_characters += count
            self.book.stats.cells_with_control_characters += 1
        return _CarriageReturnText(text) if "\r" in text else text

    def _write(self, cells: list[Cell | None]) -> None:
        self._ws.append(cells)
        self._row += 1

    # ------------------------------------------------------------------------------------- rows

    def append(self, values: Sequence[Any]) -> None:
        """Write one row of values (str, int, float, date, datetime or None), column by column.

        This runs for every row of every sheet: one pass, no per-value allocation but the row.
        """
        row: list[Cell | None] = [None] * len(values)
        parts: dict[int, list[str]] | None = None
        text_cells, number_cells = self._text_cells, self._number_cells
        checked = self.book._checked
        for index, value in enumerate(values):
            if value is None:
                continue
            kind = type(value)
            if kind is str or (kind is not int and kind is not float and isinstance(value, str)):
                if checked.get(id(value)) is not value:
                    if not value:
                        continue
                    if kind is not str:
                        value = str(value)
                    if needs_care(value):
                        value = self._clean(value)
                    if len(value) > self._half_limit and utf16_units(value) > self._limit:
                        pieces = self._split(value)
                        if parts is None:
                            parts = {}
                        parts[index] = pieces[1:]
                        value = pieces[0]
                    elif type(value) is str:
                        if len(checked) >= CHECKED_MAX:
                            checked.clear()
                        checked[id(value)] = value
                # The column's text cell is always a string cell ("s"), its number cell a number.
                cell = text_cells[index]
                cell._value = value
            elif kind is int or kind is float:
                # NaN fails every comparison, so it takes the text path too.
                if -NUMBER_LIMIT <= value <= NUMBER_LIMIT and (
                    kind is int or value == 0 or abs(value) >= SMALLEST_DECIMAL
                ):
                    cell = number_cells[index]
                    cell._value = value
                else:
                    cell = self._number_as_text(index, value)
            else:
                cell = self._other(index, value)
            row[index] = cell
        extra = max(len(pieces) for pieces in parts.values()) if parts else 0
        if self._row + 1 + extra > self.book.max_rows and self._row > len(self.header_rows):
            # Keep a split text's rows together: the whole logical row moves to the next sheet.
            self._open_worksheet()
        self._write(row)
        self.rows_written += 1
        if parts:
            self._continuation_rows(row, parts, extra)

    def _other(self, index: int, value: Any) -> Cell:
        """Values other than str, int and float: the rare path."""
        if isinstance(value, bool):
            return self._cell(index, TEXT, "Yes" if value else "No")
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                raise ValueError("datetimes must be naive (UTC) for Excel")
            if value.date() < EXCEL_FIRST_DATE:
                return self._date_as_text(index, value.isoformat(sep=" "))
            return self._cell(index, "datetime", value)
        if isinstance(value, date):
            if value < EXCEL_FIRST_DATE:
                return self._date_as_text(index, value.isoformat())
            return self._cell(index, DATE, value)
        if isinstance(value, int | float):
            return self.number_cell(index, value)
        raise TypeError(f"cannot write {type(value).__name__} to a cell")

    def number_cell(self, index: int, value: int | float) -> Cell:
        """A number cell, or marked text for a number Excel cannot hold exactly."""
        if -NUMBER_LIMIT <= value <= NUMBER_LIMIT and (
            isinstance(value, int) or value == 0 or abs(value) >= SMALLEST_DECIMAL
        ):
            return self._cell(index, NUMBER, value)
        return self._number_as_text(index, value)

    def _number_as_text(self, index: int, value: int | float) -> Cell:
        try:
            digits = repr(value) if isinstance(value, float) else str(int(value))
        except ValueError:  # more digits than Python converts to text (sys.get_int_max_str_digits)
            digits = f"a whole number of about {int(value).bit_length() * 0.30103:.0f} digits"
        self.book.stats.numbers_as_text += 1
        text = NUMBER_AS_TEXT + digits
        if len(text) > self._limit:
            text = text[: self._limit - 20] + " [cut]"
        return self._cell(index, TEXT, text)

    def _date_as_text(self, index: int, text: str) -> Cell:
        self.book.stats.dates_as_text += 1
        return self._cell(index, TEXT, DATE_AS_TEXT + text)

    def _split(self, text: str) -> list[str]:
        budget = self._limit - len(PART_MARKER.format(k=999, n=999))
        pieces = split_units(text, budget)
        self.book.stats.split_texts += 1
        total = len(pieces)
        return [PART_MARKER.format(k=k, n=total) + piece for k, piece in enumerate(pieces, 1)]

    def _continuation_rows(self, first: list[Cell | None], parts: dict[int, list[str]], extra: int) -> None:
        keys = [(i, first[i]._value) for i in self._key_indexes if i < len(first) and first[i] is not None]
        for step in range(extra):
            if self._row + 1 > self.book.max_rows:
                self._open_worksheet()
            row: list[Cell | None] = [None] * len(self.columns)
            for index, value in keys:
                row[index] = self._cell(index, self._style_of(index, value), value)
            for index, pieces in parts.items():
                if step < len(pieces):
                    piece = pieces[step]
                    if "\r" in piece:
                        piece = _CarriageReturnText(piece)
                    row[index] = self._cell(index, LONG if self.columns[index].kind == LONG else TEXT, piece)
            self._write(row)
            self.rows_written += 1
            self.book.stats.continuation_rows += 1

    def _style_of(self, index: int, value: Any) -> str:
        if isinstance(value, str):
            return LONG if self.columns[index].kind == LONG else TEXT
        if isinstance(value, datetime):
            return "datetime"
        if isinstance(value, date):
            return DATE
        return NUMBER


def _cells_to_row(cells: Iterable[Cell | None], row_index: int) -> Iterable[Cell]:
    for column_index, cell in enumerate(cells, 1):
        if cell is None:
            continue
        cell.row = row_index
        cell.column = column_index
        yield cell


class DatedZipFile(zipfile.ZipFile):
    """A zip being written whose entries all carry one date, whatever the clock says while they are
    written: a file built twice from the same content at the same ``dated`` is the same bytes
    (an export job's file and the synchronous download of the same data)."""

    def __init__(self, target: str | IO[bytes], dated: datetime) -> None:
        super().__init__(target, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
        # Zip times have no zone and two-second steps; the earliest a zip can hold is 1980.
        moment = dated.astimezone(UTC).replace(tzinfo=None) if dated.tzinfo else dated
        moment = max(moment, datetime(1980, 1, 1))
        self.date_time = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)

    def _entry(self, name: str, size: int = 0) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, self.date_time)
        info.compress_type = self.compression
        info.external_attr = 0o600 << 16
        info.file_size = size
        return info

    def writestr(self, zinfo_or_arcname: Any, data: Any, *args: Any, **kw: Any) -> None:
        if isinstance(zinfo_or_arcname, str):
            zinfo_or_arcname = self._entry(zinfo_or_arcname)
        super().writestr(zinfo_or_arcname, data, *args, **kw)

    def write(self, filename: Any, arcname: Any = None, *args: Any, **kw: Any) -> None:
        info = self._entry(arcname or os.path.basename(filename), os.path.getsize(filename))
        with open(filename, "rb") as source, self.open(info, "w") as entry:
            shutil.copyfileobj(source, entry, 1 << 20)

    def open(self, name: Any, mode: str = "r", pwd: Any = None, *, force_zip64: bool = False) -> Any:
        if mode == "w" and isinstance(name, str):
            name = self._entry(name)
        return super().open(name, mode, pwd, force_zip64=force_zip64)


class DeflatingEntry(io.BufferedIOBase):
    """One zip entry, written by a worker thread from the bytes handed to ``write``.

    ``write`` only collects bytes; every ``CHUNK`` of them goes through a bounded queue (memory
    stays at a few MiB) to the worker, which passes it to the entry's own writer in ``zipfile``:
    CRC, deflate and file write, the first two with the GIL released. The archive must not be
    used otherwise until ``finish`` returns. A failure in the worker is raised in the writing
    thread, at its next ``write`` or at ``finish``; the worker keeps taking pieces until told to
    stop, so the writing thread never waits on a full queue for a worker that is gone.
    """

    CHUNK = 1 << 20
    DEPTH = 4

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        super().__init__()
        # The size is not known in advance and a large sheet passes 4 GiB: Zip64 from the start.
        self._handle = archive.open(name, mode="w", force_zip64=True)
        self._pending = bytearray()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=self.DEPTH)
        self._error: BaseException | None = None
        self._done = False
        self._worker = threading.Thread(target=self._run, name=f"deflate {name}", daemon=True)
        self._worker.start()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._error is not None:
            raise self._error
        if self._done:
            raise ValueError("the entry is already complete")
        self._pending += data
        if len(self._pending) >= self.CHUNK:
            self._queue.put(bytes(self._pending))
            self._pending.clear()
        return len(data)

    def finish(self) -> None:
        """Hand over the rest, wait for the worker and complete the entry."""
        if self._done:
            return
        if self._pending and self._error is None:
            self._queue.put(bytes(self._pending))
        self._pending.clear()
        self._stop()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop the worker without caring whether the entry is complete (the file is given up)."""
        if not self._done:
            self._pending.clear()
            self._stop()

    def _stop(self) -> None:
        self._done = True
        self._queue.put(None)
        self._worker.join()

    def _run(self) -> None:
        while True:
            piece = self._queue.get()
            if piece is None:
                break
            if self._error is None:
                try:
                    self._handle.write(piece)
                except BaseException as error:  # noqa: BLE001 - raised in the writing thread
                    self._error = error
        try:
            self._handle.close()
        except BaseException as error:  # noqa: BLE001
            if self._error is None:
                self._error = error


class _StreamedSheetWriter(WorksheetWriter):
    """A write-only sheet's writer whose output is a ``DeflatingEntry``, not a spool file."""

    def cleanup(self) -> None:
        # Nothing to remove: the XML went into the archive.
        pass


class _StreamAwareExcelWriter(ExcelWriter):
    """openpyxl's package writer, which leaves out the sheets already streamed into the archive."""

    def write_worksheet(self, ws: Any) -> None:
        writer = ws._writer
        if not isinstance(writer, _StreamedSheetWriter):
            super().write_worksheet(ws)
            return
        # What the base class does for a write-only sheet, except copying its spool file in.
        ws._drawing = SpreadsheetDrawing()
        ws._drawing.charts = ws._charts
        ws._drawing.images = ws._images
        ws._rels = writer._rels
        self.manifest.append(ws)
