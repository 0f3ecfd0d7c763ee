"""Reading a planned sample from a CSV or XLSX sheet, all or nothing.

The sheet's first row names the columns: ``agency`` (required), ``position`` (optional),
``interview`` (optional: rows sharing a value become one group interview, lettered A, B, ... in row
order; a row with no value is an interview of its own) and ``id`` (optional: the participant's
existing ID, such as ``RA1-KE-02-A``, for a study that began on paper or in another tool; rows
sharing an interview number form one interview and keep their numbers and letters). Any problem with
any row rejects the whole file with a report of every bad row, so a half-imported sample never has
to be untangled.

A column that looks like it holds people's names is refused before any row is read: the registry
stores no names, and the error report never repeats what a cell contains.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from surveykit import spreadsheet_files
from surveykit import text as text_rule
from surveykit.participants.ids import (
    MAX_INTERVIEW_NUMBER,
    InterviewNumberTooLarge,
    InvalidParticipantId,
    parse_pid,
)

CSV = spreadsheet_files.CSV
XLSX = spreadsheet_files.XLSX
XLSX_CONTENT_TYPE = spreadsheet_files.XLSX_CONTENT_TYPE
CSV_CONTENT_TYPES = spreadsheet_files.CSV_CONTENT_TYPES

COLUMNS = ("agency", "position", "interview", "id")
REQUIRED_COLUMNS = ("agency",)
AGENCY_MAX = 500
POSITION_MAX = 300
INTERVIEW_KEY_MAX = 100
MAX_PARTICIPANTS_PER_INTERVIEW = 26
MAX_ROWS = 10_000
# Blank rows included; and columns read from a workbook (a planned sample needs three).
MAX_SHEET_ROWS = 50_000
MAX_COLUMNS = 50
MAX_ERRORS = 200

# A heading made of any of these words is taken for a column of people's names.
NAME_WORDS = {
    "name",
    "names",
    "surname",
    "surnames",
    "firstname",
    "lastname",
    "fullname",
    "forename",
    "forenames",
    "givenname",
    "familyname",
    "nom",
    "nombre",
    "nome",
    "prenom",
    "jina",
}


@dataclass(frozen=True)
class RowError:
    """A problem in the file: ``row`` is the sheet's row number (the headings are row 1)."""

    row: int | None
    column: str | None
    message: str

    def as_detail(self) -> dict[str, Any]:
        """A detail of the error envelope; ``rows[N]`` names sheet row N (or list index N for JSON)."""
        if self.row is None:
            path = self.column or ""
        else:
            path = f"rows[{self.row}]" + (f".{self.column}" if self.column else "")
        return {
            "location": "file",
            "path": path,
            "message": self.message,
            "row": self.row,
            "column": self.column,
        }


class ImportRejected(ValueError):
    """The file cannot be imported; ``errors`` lists every problem found (up to ``MAX_ERRORS``)."""

    def __init__(self, errors: list[RowError], total: int | None = None) -> None:
        self.errors = errors[:MAX_ERRORS]
        self.total = total if total is not None else len(errors)
        first = errors[0].message if errors else "the file cannot be imported"
        more = f" (and {self.total - 1} more problem(s))" if self.total > 1 else ""
        super().__init__(first + more)


class UnsupportedFile(ImportRejected):
    """Not a CSV or XLSX file at all (answered with 415 over HTTP)."""

    def __init__(self, message: str) -> None:
        super().__init__([RowError(None, None, message)])


@dataclass(frozen=True)
class PlannedParticipant:
    row: int
    agency: str
    position: str | None
    # Set for a row with a known ID (``id`` column): its interview number and letter are kept.
    number: int | None = None
    letter: str | None = None


@dataclass
class ImportPlan:
    """The interviews the file describes, each a list of participants in letter order."""

    interviews: list[list[PlannedParticipant]] = field(default_factory=list)
    rows: int = 0

    @property
    def participants(self) -> int:
        return sum(len(interview) for interview in self.interviews)

    @property
    def known_numbers(self) -> list[int]:
        """The interview numbers the file gives (``id`` column), in file order."""
        return [interview[0].number for interview in self.interviews if interview[0].number is not None]


# ------------------------------------------------------------------------------------- file types


def file_kind(data: bytes, content_type: str | None = None, filename: str | None = None) -> str:
    """CSV or XLSX, from the declared type or the file name, checked against the bytes."""
    try:
        return spreadsheet_files.file_kind(data, content_type, filename, noun="file")
    except spreadsheet_files.NotATable as exc:
        raise UnsupportedFile(str(exc)) from exc


# ------------------------------------------------------------------------------------------ cells


cell_text = spreadsheet_files.cell_text


def normalise_text(text: str) -> str:
    """Runs of whitespace (including line breaks inside a cell) become one space."""
    return " ".join(text.split())


def text_problem(text: str, max_length: int) -> str | None:
    """Registry text is one line (``surveykit.text``), at most ``max_length`` characters."""
    if message := text_rule.text_problem(text):
        return message
    if len(text) > max_length:
        return f"is longer than {max_length} characters ({len(text)})"
    return None


def column_letter(index: int) -> str:
    """1 -> A, 27 -> AA, as spreadsheets name columns."""
    letters = ""
    while index > 0:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _heading(value: Any) -> str:
    return " ".join(cell_text(value).strip().lower().replace("_", " ").split())


def looks_like_names(heading: str) -> bool:
    words = re.split(r"[^a-z]+", heading)
    joined = "".join(words)
    return any(word in NAME_WORDS for word in words) or joined in NAME_WORDS


# ------------------------------------------------------------------------------------------- rows


def _csv_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    if b"\x00" in data:
        raise UnsupportedFile("this is not a CSV text file (it contains NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRejected(
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
            raise ImportRejected([RowError(number + 1, None, f"not valid CSV: {exc}")]) from exc
        number += 1
        yield number, cells


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    try:
        yield from spreadsheet_files.first_sheet_rows(data, MAX_COLUMNS, MAX_SHEET_ROWS)
    except spreadsheet_files.NotATable as exc:
        raise UnsupportedFile(str(exc)) from exc
    except spreadsheet_files.RowRefused as exc:
        raise ImportRejected([RowError(exc.row, None, str(exc))]) from exc


def iter_rows(data: bytes, kind: str) -> Iterator[tuple[int, list[Any]]]:
    return _csv_rows(data) if kind == CSV else _xlsx_rows(data)


# ---------------------------------------------------------------------------------------- parsing


class _Planner:
    """Checks rows one by one, grouping them into interviews; collects every problem."""

    def __init__(self, source: str, scope: tuple[str, str] | None = None) -> None:
        self.source = source
        # (activity, country) of the import: a known ID must belong to them.
        self.scope = scope
        self.errors: list[RowError] = []
        self.total_errors = 0
        self.groups: dict[str, list[PlannedParticipant]] = {}
        self.numbered: dict[int, list[PlannedParticipant]] = {}
        self.seen_ids: dict[str, int] = {}
        self.interviews: list[list[PlannedParticipant]] = []
        self.rows = 0

    def problem(self, row: int | None, column: str | None, message: str) -> None:
        self.total_errors += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError(row, column, message))

    def too_many(self, number: int) -> bool:
        self.rows += 1
        if self.rows > MAX_ROWS:
            self.problem(number, None, f"the {self.source} has more than {MAX_ROWS} rows; split it")
            return True
        return False

    def add(self, number: int, row: dict[str, str]) -> None:
        agency = row.get("agency", "")
        position = row.get("position", "") or None
        key = row.get("interview", "")
        known = row.get("id", "")
        if known:
            self.add_known(number, agency, position, key, known)
            return
        bad = not self._texts_ok(number, agency, position)
        if key and (message := text_problem(key, INTERVIEW_KEY_MAX)):
            self.problem(number, "interview", f"interview {message}")
            bad = True
        if key and len(self.groups.get(key, ())) >= MAX_PARTICIPANTS_PER_INTERVIEW:
            self.problem(
                number,
                "interview",
                f"an interview has at most {MAX_PARTICIPANTS_PER_INTERVIEW} participants (letters A to Z); "
                f"this row would be the {len(self.groups[key]) + 1}th of its interview",
            )
            bad = True
        if bad:
            return
        participant = PlannedParticipant(number, agency, position)
        if not key:
            self.interviews.append([participant])
        elif key in self.groups:
            self.groups[key].append(participant)
        else:
            self.groups[key] = [participant]
            self.interviews.append(self.groups[key])

    def add_known(self, number: int, agency: str, position: str | None, key: str, known: str) -> None:
        """A row with an existing participant ID: checked here; collisions with the registry, the
        number blocks and the counter are checked when it is stored (``services.import_plan``)."""
        bad = not self._texts_ok(number, agency, position)
        if key:
            self.problem(number, "interview", "give either an id or an interview key, not both")
            bad = True
        try:
            pid = parse_pid(known)
        except InterviewNumberTooLarge:
            self.problem(number, "id", f"id {known}: interview numbers go up to {MAX_INTERVIEW_NUMBER}")
            return
        except InvalidParticipantId:
            # Not echoed: a cell that is not an ID may hold anything, a name included.
            self.problem(number, "id", "id is not a participant ID like RA1-KE-04-B")
            return
        if self.scope is not None and (pid.activity, pid.country) != self.scope:
            activity, country = self.scope
            self.problem(
                number, "id", f"id {pid} is not of {activity} in {country}, the import's activity and country"
            )
            bad = True
        first = self.seen_ids.setdefault(str(pid), number)
        if first != number:
            self.problem(number, "id", f"id {pid} is given twice (first in row {first})")
            bad = True
        if bad:
            return
        participant = PlannedParticipant(number, agency, position, pid.interview_number, pid.letter)
        group = self.numbered.get(pid.interview_number)
        if group is None:
            self.numbered[pid.interview_number] = group = []
            self.interviews.append(group)
        group.append(participant)
        group.sort(key=lambda person: person.letter or "")

    def _texts_ok(self, number: int, agency: str, position: str | None) -> bool:
        ok = True
        if not agency:
            self.problem(number, "agency", "agency is required")
            ok = False
        elif message := text_problem(agency, AGENCY_MAX):
            self.problem(number, "agency", f"agency {message}")
            ok = False
        if position and (message := text_problem(position, POSITION_MAX)):
            self.problem(number, "position", f"position {message}")
            ok = False
        return ok

    def plan(self, empty_message: str) -> ImportPlan:
        if self.total_errors:
            raise ImportRejected(self.errors, self.total_errors)
        if self.rows == 0:
            raise ImportRejected([RowError(None, None, empty_message)])
        return ImportPlan(interviews=self.interviews, rows=self.rows)


def parse(
    data: bytes,
    kind: str,
    progress: Callable[[int], None] | None = None,
    scope: tuple[str, str] | None = None,
) -> ImportPlan:
    """The interviews a sheet describes, or ``ImportRejected`` listing every problem.

    ``scope`` is the import's (activity, country): an ``id`` of another one is a problem of its row.
    """
    if not data:
        raise ImportRejected([RowError(None, None, "the file is empty")])
    rows = iter_rows(data, kind)
    header = next(rows, None)
    if header is None:
        raise ImportRejected([RowError(None, None, "the file is empty")])
    columns = _columns(header[1])
    planner = _Planner("file", scope)
    for number, cells in rows:
        if progress is not None:
            progress(1)
        values = [normalise_text(cell_text(cell)) for cell in cells]
        if not any(values):
            continue
        if planner.too_many(number):
            break
        if any(
            value and (index >= len(columns) or columns[index] is None) for index, value in enumerate(values)
        ):
            planner.problem(number, None, "a cell lies in a column without a heading")
        planner.add(
            number,
            {
                name: values[index] if index < len(values) else ""
                for index, name in enumerate(columns)
                if name
            },
        )
    return planner.plan("the file has headings but no participant rows")


def parse_records(records: Any, scope: tuple[str, str] | None = None) -> ImportPlan:
    """The same import from JSON: ``[{"agency": ..., "position": ..., "interview": ..., "id": ...}]``.

    Problems are reported by index into the list (``rows[0]`` is the first record).
    """
    if not isinstance(records, list):
        raise ImportRejected([RowError(None, "rows", "rows must be a list of objects")])
    planner = _Planner("list", scope)
    for index, record in enumerate(records):
        if planner.too_many(index):
            break
        if not isinstance(record, dict):
            planner.problem(index, None, "must be an object with agency, position, interview, id")
            continue
        row: dict[str, str] = {}
        for key, value in record.items():
            heading = _heading(key)
            if looks_like_names(heading):
                # Refused at once, and not echoed: the value may well be a person's name.
                raise ImportRejected(
                    [RowError(index, str(key), "unknown field: surveykit stores no names of participants")]
                )
            if heading not in COLUMNS:
                planner.problem(
                    index, str(key), "unknown field; the fields are agency, position, interview, id"
                )
            elif heading in row:
                planner.problem(index, heading, f"{heading} is given twice")
            elif value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
                planner.problem(index, heading, f"{heading} must be text")
            else:
                row[heading] = normalise_text(cell_text(value))
        planner.add(index, row)
    return planner.plan("rows is empty: nothing to import")


def _columns(cells: list[Any]) -> list[str | None]:
    """Column names by position (None for a blank heading); refuses unknown and name-like headings."""
    headings = [_heading(cell) for cell in cells]
    while headings and not headings[-1]:
        headings.pop()
    if not headings:
        raise ImportRejected(
            [RowError(1, None, "the first row must name the columns: agency, position, interview, id")]
        )
    name_like = [heading for heading in headings if heading and looks_like_names(heading)]
    if name_like:
        raise ImportRejected(
            [
                RowError(
                    1,
                    None,
                    "the file has a column that looks like people's names; surveykit stores no names of "
                    "participants: delete that column (and keep names out of the file) before importing",
                )
            ]
        )
    errors: list[RowError] = []
    seen: set[str] = set()
    columns: list[str | None] = []
    for index, heading in enumerate(headings, start=1):
        if not heading:
            columns.append(None)
            continue
        if heading not in COLUMNS:
            errors.append(
                RowError(
                    1,
                    None,
                    f"column {column_letter(index)} has an unknown heading; "
                    f"the columns are {', '.join(COLUMNS)}",
                )
            )
        elif heading in seen:
            errors.append(RowError(1, heading, f"column {heading} appears twice"))
        seen.add(heading)
        columns.append(heading if heading in COLUMNS else None)
    for required in REQUIRED_COLUMNS:
        if required not in seen:
            errors.append(RowError(1, required, f"the {required} column is missing"))
    if errors:
        raise ImportRejected(errors)
    return columns
