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
- a sheet that reaches ``max_rows`` continues on a new sheet ``Title (2)`` with the same headers.

Cells are reused per column and handed to openpyxl ready-made (value, type and style set), so the
writer does no per-cell work that openpyxl would not do anyway: exports run close to the speed of
writing the same cells from memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import SimpleNamespace
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.cell import Cell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

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


class WorkbookWriter:
    """A write-only workbook whose sheets are written through ``SheetWriter``."""

    def __init__(self, max_rows: int = EXCEL_MAX_ROWS, max_cell_units: int = EXCEL_MAX_CELL_UNITS) -> None:
        if max_rows < 2:
            raise ValueError("max_rows must leave room for a header and a row")
        if max_cell_units < 64:
            raise ValueError("max_cell_units is too small to hold a part marker")
        self.max_rows = max_rows
        self.max_cell_units = max_cell_units
        self.workbook = Workbook(write_only=True)
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
    ) -> SheetWriter:
        """A new sheet, placed after the sheets created before it.

        ``header_rows`` default to one row of the column headers; the last header row carries the
        filter buttons and the panes are frozen below it (and right of ``freeze_columns``).
        """
        sheet = SheetWriter(self, title, list(columns), header_rows, freeze_columns, autofilter)
        self.sheets.append(sheet)
        return sheet

    def save(self, target: str | IO[bytes]) -> None:
        for sheet in self.sheets:
            sheet.finish()
        # Continuation sheets were created late; place each after the sheet it continues.
        order: list[WriteOnlyWorksheet] = []
        for sheet in self.sheets:
            order.extend(sheet.worksheets)
        self.workbook._sheets = order
        self.workbook.save(target)

    def discard(self) -> None:
        """Give up a workbook that will not be saved: close its sheets and remove their spool files."""
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


class SheetWriter:
    def __init__(
        self,
        book: WorkbookWriter,
        title: str,
        columns: list[Column],
        header_rows: Sequence[Sequence[str | None]] | None,
        freeze_columns: int,
        autofilter: bool,
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
        # openpyxl would first try each ready-made cell as a value and catch the ValueError; the
        # cells here are complete, so they go to the sheet writer as they are.
        ws._values_to_row = _cells_to_row
        self._ws = ws
        self.worksheets.append(ws)
        self._row = 0
        for header in self.header_rows:
            self._write([self._cell(i, "header", self._text(value)) for i, value in enumerate(header)])

    def _close_worksheet(self) -> None:
        if self.autofilter and self.header_rows:
            last = get_column_letter(max(1, len(self.columns)))
            first_row = len(self.header_rows)
            self._ws.auto_filter.ref = f"A{first_row}:{last}{max(first_row, self._row)}"

    def finish(self) -> None:
        self._close_worksheet()

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
                cell = number_cells[index]
                cell._value = value
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
            return self._cell(index, "datetime", value)
        if isinstance(value, date):
            return self._cell(index, DATE, value)
        if isinstance(value, int | float):
            return self._cell(index, NUMBER, value)
        raise TypeError(f"cannot write {type(value).__name__} to a cell")

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
