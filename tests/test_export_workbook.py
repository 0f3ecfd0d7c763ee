"""The safe writer under the exports: formulas, control characters, Excel's cell and row limits."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest
from test_export_support import joined

from surveykit.exports.workbook import (
    CONTROL_MARKER,
    EXCEL_MAX_CELL_UNITS,
    LONG,
    NUMBER,
    TEXT,
    Column,
    WorkbookWriter,
    join_parts,
    needs_care,
    split_units,
    utf16_units,
)

DANGEROUS = [
    "=1+1",
    '=HYPERLINK("http://example.org","click")',
    "+254 700 000000",
    "-5 officers",
    "@SUM(A1:A2)",
    "\tindented",
    "\rcarriage return first",
    "a line\r\nand a Windows line",
    "=cmd|' /C calc'!A0",
    " leading and trailing spaces ",
    "#N/A",
    "0123",
]


def _write(rows: list[list[object]], **kw: object) -> tuple[bytes, WorkbookWriter]:
    book = WorkbookWriter(**kw)  # type: ignore[arg-type]
    sheet = book.sheet("Data", [Column("ID", TEXT, key=True), Column("Text", LONG), Column("N", NUMBER)])
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue(), book


def _data(content: bytes, title: str = "Data") -> list[list[object]]:
    sheet = openpyxl.load_workbook(io.BytesIO(content))[title]
    return [list(row) for row in sheet.iter_rows(min_row=2, values_only=True)]


def test_text_that_looks_like_a_formula_is_stored_as_text_and_reads_back_exactly() -> None:
    content, _ = _write([["x", text, None] for text in DANGEROUS])
    sheet = openpyxl.load_workbook(io.BytesIO(content))["Data"]
    cells = [row[1] for row in sheet.iter_rows(min_row=2)]
    assert [cell.value for cell in cells] == DANGEROUS
    assert {cell.data_type for cell in cells} == {"s"}
    xml = zipfile.ZipFile(io.BytesIO(content)).read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in xml and "<f " not in xml
    # A carriage return survives only as a character reference.
    assert "&#13;" in xml and "\r" not in xml


def test_control_characters_become_a_visible_marker_and_are_counted() -> None:
    texts = ["bell\x07here", "nul\x00 and esc\x1b", "lone surrogate \ud800 end", "fine\ttab\nnewline"]
    content, book = _write([["x", text, None] for text in texts])
    values = [row[1] for row in _data(content)]
    assert values == [
        f"bell{CONTROL_MARKER}here",
        f"nul{CONTROL_MARKER} and esc{CONTROL_MARKER}",
        f"lone surrogate {CONTROL_MARKER} end",
        "fine\ttab\nnewline",
    ]
    assert book.stats.control_characters == 4
    assert book.stats.cells_with_control_characters == 3


def test_a_40000_character_answer_continues_on_the_next_row_marked() -> None:
    answer = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 800)[:40_000]
    content, book = _write([["RA1-KE-01-A", answer, 7], ["RA1-KE-02-A", "short", 8]])
    data = _data(content)
    assert len(data) == 3
    first, second, after = data
    assert first[0] == second[0] == "RA1-KE-01-A"  # the key column repeats
    assert first[1].startswith("[part 1/2] ") and second[1].startswith("[part 2/2] ")
    assert first[2] == 7 and second[2] is None
    assert all(utf16_units(value) <= EXCEL_MAX_CELL_UNITS for value in (first[1], second[1]))
    assert join_parts([first[1], second[1]]) == answer
    assert joined(data) == [["RA1-KE-01-A", answer, 7], ["RA1-KE-02-A", "short", 8]]
    assert after == ["RA1-KE-02-A", "short", 8]
    assert (book.stats.split_texts, book.stats.continuation_rows) == (1, 1)


def test_the_cell_limit_counts_utf16_units_not_python_characters() -> None:
    # 20,000 emoji are 20,000 Python characters but 40,000 UTF-16 units: over Excel's limit.
    answer = "\U0001f600" * 20_000
    assert len(answer) < EXCEL_MAX_CELL_UNITS < utf16_units(answer)
    content, _ = _write([["x", answer, None]])
    parts = [row[1] for row in _data(content)]
    assert len(parts) == 2
    assert all(utf16_units(part) <= EXCEL_MAX_CELL_UNITS for part in parts)
    assert join_parts(parts) == answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text\twith a tab\nand a new line", False),
        ("bell \x07", True),
        ("carriage \r return", True),
        ("Português, ação \x1b", True),
        ("Português, ação", False),
        ("ការយល់ដឹង", False),
        ("ការយល់ដឹង\x00", True),
        ("ការយល់ដឹង \ud800", True),
        ("\ufffe", True),
        ("emoji \U0001f600\r", True),
        ("emoji \U0001f600", False),
        ("\x7f\x85\u2028 are allowed", False),
    ],
)
def test_needs_care(text: str, expected: bool) -> None:
    assert needs_care(text) is expected


def test_split_units_never_loses_a_character() -> None:
    text = ("ab\U0001f600 c " * 5000) + "ការយល់ដឹង" * 300
    for limit in (64, 100, 1000, 32_000):
        pieces = split_units(text, limit)
        assert "".join(pieces) == text
        assert all(utf16_units(piece) <= limit for piece in pieces)


def test_a_sheet_past_the_row_limit_continues_on_a_new_sheet_with_the_header() -> None:
    book = WorkbookWriter(max_rows=4)
    sheet = book.sheet("Answers", [Column("ID", TEXT, key=True), Column("Text", LONG)])
    book.sheet("Readme", [Column("Topic", TEXT)]).append(["after"])
    for number in range(1, 8):
        sheet.append([f"RA1-KE-{number:02d}-A", f"answer {number}"])
    out = io.BytesIO()
    book.save(out)
    workbook = openpyxl.load_workbook(out)
    assert workbook.sheetnames == ["Answers", "Answers (2)", "Answers (3)", "Readme"]
    seen = []
    for title in ["Answers", "Answers (2)", "Answers (3)"]:
        rows = [list(row) for row in workbook[title].iter_rows(values_only=True)]
        assert rows[0] == ["ID", "Text"] and len(rows) <= 4
        assert workbook[title].freeze_panes == "A2"
        seen += rows[1:]
    assert seen == [[f"RA1-KE-{n:02d}-A", f"answer {n}"] for n in range(1, 8)]
    assert book.stats.continuation_sheets == ["Answers (2)", "Answers (3)"]


def test_the_parts_of_a_split_text_stay_on_one_sheet() -> None:
    book = WorkbookWriter(max_rows=4, max_cell_units=100)
    sheet = book.sheet("Answers", [Column("ID", TEXT, key=True), Column("Text", LONG)])
    sheet.append(["RA1-KE-01-A", "short"])
    sheet.append(["RA1-KE-02-A", "word " * 50])  # three parts: does not fit after row 2
    out = io.BytesIO()
    book.save(out)
    workbook = openpyxl.load_workbook(out)
    assert workbook.sheetnames == ["Answers", "Answers (2)"]
    second = [list(row) for row in workbook["Answers (2)"].iter_rows(min_row=2, values_only=True)]
    assert [row[0] for row in second] == ["RA1-KE-02-A"] * 3
    assert join_parts([row[1] for row in second]) == "word " * 50


def test_dates_numbers_and_polish() -> None:
    book = WorkbookWriter()
    sheet = book.sheet(
        "Data",
        [
            Column("ID", TEXT, 16, key=True),
            Column("When", TEXT),
            Column("N", NUMBER),
            Column("Long", LONG, 70),
        ],
        freeze_columns=1,
    )
    sheet.append(["a", date(2020, 5, 4), 3, "wrapped"])
    sheet.append(["b", datetime(2020, 5, 4, 10, 30), 2.5, True])
    out = io.BytesIO()
    book.save(out)
    workbook = openpyxl.load_workbook(out)
    data = workbook["Data"]
    assert data["B2"].is_date and data["B2"].value == datetime(2020, 5, 4)
    assert data["B2"].number_format == "yyyy-mm-dd"
    assert data["B3"].value == datetime(2020, 5, 4, 10, 30)
    assert (data["C2"].value, data["C3"].value) == (3, 2.5)
    assert data["D3"].value == "Yes"
    assert data.freeze_panes == "B2"
    assert data.auto_filter.ref == "A1:D3"
    assert data.column_dimensions["A"].width == 16 and data.column_dimensions["D"].width == 70
    assert data["D2"].alignment.wrap_text and data["A1"].font.b
    assert not data.merged_cells.ranges


def test_other_values() -> None:
    class Text(str):
        pass

    content, _ = _write([["x", Text("=subclassed"), 1.5], ["y", True, 2], ["z", "", -3]])
    assert _data(content) == [["x", "=subclassed", 1.5], ["y", "Yes", 2], ["z", None, -3]]
    book = WorkbookWriter()
    sheet = book.sheet("Data", [Column("ID"), Column("Text")])
    sheet.append(["a", "b"])
    with pytest.raises(TypeError):
        sheet.append(["x", object()])
    # A workbook given up on is closed and its spool files removed, without noise at collection.
    spools = [ws._writer.out for ws in sheet.worksheets]
    book.discard()
    assert not any(Path(path).exists() for path in spools)


def test_timezone_aware_datetimes_are_refused() -> None:
    book = WorkbookWriter()
    sheet = book.sheet("Data", [Column("When")])
    with pytest.raises(ValueError):
        sheet.append([datetime.fromisoformat("2020-05-04T10:00:00+03:00")])
    book.discard()


# ------------------------------------------------------------------------------- streamed sheet


def _streaming_book(target: object, **kw: object) -> tuple[WorkbookWriter, list]:
    book = WorkbookWriter(target=target, **kw)  # type: ignore[arg-type]
    sheets = [
        book.sheet("Participants", [Column("ID", TEXT, key=True)]),
        book.sheet("Answers", [Column("ID", TEXT, key=True), Column("Text", LONG)], stream=True),
        book.sheet("Readme", [Column("Topic", TEXT)]),
    ]
    return book, sheets


def test_a_streamed_sheet_goes_into_the_file_as_it_is_written_and_reads_back_like_the_others(
    tmp_path: Path,
) -> None:
    target = tmp_path / "book.xlsx"
    book, (participants, answers, readme) = _streaming_book(str(target))
    # Several MiB of XML, so that many pieces pass through the worker, interleaved with a spooled sheet.
    written = []
    for number in range(1, 3001):
        text = DANGEROUS[number % len(DANGEROUS)] + f" answer {number} " + "word " * 300
        answers.append([f"RA1-KE-{number:02d}-A", text])
        participants.append([f"RA1-KE-{number:02d}-A"])
        written.append([f"RA1-KE-{number:02d}-A", text])
    readme.append(["after"])
    book.save()
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        assert "xl/worksheets/streamed1.xml" in names
        assert archive.testzip() is None  # every entry's CRC matches its content
    workbook = openpyxl.load_workbook(target)
    assert workbook.sheetnames == ["Participants", "Answers", "Readme"]
    assert [list(row) for row in workbook["Answers"].iter_rows(min_row=2, values_only=True)] == written
    assert workbook["Answers"].freeze_panes == "A2"
    assert workbook["Answers"].auto_filter.ref == "A1:B3001"
    assert [row[0] for row in workbook["Participants"].iter_rows(min_row=2, values_only=True)] == [
        row[0] for row in written
    ]
    assert workbook["Readme"]["A2"].value == "after"


def test_a_streamed_sheet_past_the_row_limit_continues_in_a_new_entry() -> None:
    out = io.BytesIO()
    book, (participants, answers, readme) = _streaming_book(out, max_rows=4)
    for number in range(1, 8):
        answers.append([f"RA1-KE-{number:02d}-A", f"answer {number}"])
    participants.append(["RA1-KE-01-A"])
    book.save()
    workbook = openpyxl.load_workbook(out)
    assert workbook.sheetnames == ["Participants", "Answers", "Answers (2)", "Answers (3)", "Readme"]
    seen = []
    for title in ["Answers", "Answers (2)", "Answers (3)"]:
        rows = [list(row) for row in workbook[title].iter_rows(values_only=True)]
        assert rows[0] == ["ID", "Text"]
        seen += rows[1:]
    assert seen == [[f"RA1-KE-{n:02d}-A", f"answer {n}"] for n in range(1, 8)]
    assert workbook["Answers (3)"].auto_filter.ref == "A1:B2"
    names = zipfile.ZipFile(out).namelist()
    assert {
        "xl/worksheets/streamed1.xml",
        "xl/worksheets/streamed2.xml",
        "xl/worksheets/streamed3.xml",
    } <= set(names)


def test_streaming_needs_the_target_up_front_and_one_sheet_at_most() -> None:
    with pytest.raises(ValueError, match="target up front"):
        WorkbookWriter().sheet("Answers", [Column("ID")], stream=True)
    out = io.BytesIO()
    book = WorkbookWriter(target=out)
    book.sheet("Answers", [Column("ID")], stream=True).append(["a"])
    with pytest.raises(ValueError, match="only one sheet"):
        book.sheet("Quotes", [Column("ID")], stream=True)
    with pytest.raises(ValueError, match="given to the constructor"):
        book.save(io.BytesIO())
    book.save()
    assert openpyxl.load_workbook(out)["Answers"]["A2"].value == "a"


class _FullDisk(io.BytesIO):
    """A file that refuses writes past 200 KB, as a full disk would."""

    def write(self, data: object) -> int:
        if self.tell() + len(data) > 200_000:  # type: ignore[arg-type]
            raise OSError(28, "No space left on device")
        return super().write(data)  # type: ignore[arg-type]


def test_a_failure_in_the_streaming_worker_reaches_the_writer_and_giving_up_does_not_hang() -> None:
    import random

    rng = random.Random(5)
    book, (_, answers, _) = _streaming_book(_FullDisk())
    with pytest.raises(OSError, match="No space left"):
        # Text that does not compress, so the entry outgrows the "disk" long before the end.
        for number in range(20_000):
            answers.append([f"RA1-KE-{number:02d}-A", "".join(rng.choices("abcdefghij0123456789", k=1000))])
        book.save()
    book.discard()
    assert answers.entry is None or answers.entry._done
