"""The workbook's Codes sheet: every coded passage of the scope with its code, coder and citation.

A coding (``surveykit.analysis.models.Coding``) belongs to one answer of an interview. It is cited
like a quote: a coded quote by the participant the quote is attributed to, any other passage by the
interviewed participants of its interview (one citation each, joined by ``; ``, since an answer of
a group interview belongs to all of them). Withdrawn participants are left out here as in every
sheet: a passage of an interview with nobody left, or of a quote attributed to a withdrawn
participant, has no row.

The codings stream from one Core query in a stable order (research activity, country, interview
number, question, start and end offset, coding id); the registry participants and the quotes of an
interview are read once, when its first coding goes past. The whole codebook of the study is read
first (a codebook is small), to give each coding its code's path (``Theme / Sub-theme``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.analysis.models import Code, Coding
from surveykit.exports.report_text import citation, short_citation
from surveykit.exports.workbook import LONG, NUMBER, TEXT, Column, SheetWriter, WorkbookWriter
from surveykit.participants.models import Participant
from surveykit.sync.models import Interview

PATH_SEPARATOR = " / "
YIELD_PER = 200


@dataclass(frozen=True)
class CodeRef:
    id: int
    parent_id: int | None
    name: str
    colour: str
    status: str
    version: int


def code_values(code: CodeRef) -> list[Any]:
    """What of a code the content hash covers (its place, name, colour and state)."""
    return [code.id, code.parent_id, code.name, code.colour, code.status, code.version]


def study_codes(session: Session, study_id: int) -> dict[int, CodeRef]:
    rows = session.execute(
        select(Code.id, Code.parent_id, Code.name, Code.colour, Code.status, Code.version)
        .where(Code.study_id == study_id)
        .order_by(Code.id)
    )
    return {row.id: CodeRef(*row) for row in rows}


def code_path(codes: dict[int, CodeRef], code_id: int) -> str:
    """``Theme / Sub-theme``: the names from the codebook's root down to the code."""
    names: list[str] = []
    seen: set[int] = set()
    current: int | None = code_id
    while current is not None and current in codes and current not in seen:
        seen.add(current)
        names.append(codes[current].name)
        current = codes[current].parent_id
    return PATH_SEPARATOR.join(reversed(names))


def coding_rows(session: Session, scope: Any) -> Iterator[Any]:
    """The codings of ``scope`` (an ``exports.services.Scope``), streamed in the sheet's order."""
    conditions = [Coding.study_id == scope.study_id]
    if not scope.all_countries:
        conditions.append(Coding.country_code == scope.countries[0].code)
    if scope.activity is not None:
        conditions.append(Interview.activity == scope.activity)
    statement = (
        select(
            Coding.id,
            Coding.guid,
            Coding.code_id,
            Coding.question_id,
            Coding.quote_id,
            Coding.start_offset,
            Coding.end_offset,
            Coding.text,
            Coding.memo,
            Coding.coder,
            Coding.anchor,
            Coding.anchored_revision,
            Coding.updated_at,
            Interview.uuid,
            Interview.activity,
            Interview.country_code,
            Interview.interview_number,
        )
        .join(Interview, Interview.uuid == Coding.interview_uuid)
        .where(*conditions)
        .order_by(
            Interview.activity,
            Interview.country_code,
            Interview.interview_number,
            Coding.question_id,
            Coding.start_offset,
            Coding.end_offset,
            Coding.id,
        )
        .execution_options(yield_per=YIELD_PER)
    )
    result = session.connection().execute(statement)
    try:
        yield from result
    finally:
        result.close()


def fingerprint_values(row: Any) -> list[Any]:
    """What of a coding the content hash covers: everything the sheet shows of it."""
    return [
        row.id,
        row.guid,
        row.code_id,
        row.uuid,
        row.question_id,
        row.quote_id,
        row.start_offset,
        row.end_offset,
        row.text,
        row.memo,
        row.coder,
        row.anchor,
        row.anchored_revision,
    ]


def create_sheet(book: WorkbookWriter, multi: bool) -> SheetWriter:
    country = [Column("Country", TEXT, 9, key=True)] if multi else []
    return book.sheet(
        "Codes",
        [
            Column("Participant", TEXT, 16, key=True),
            *country,
            Column("Question id", TEXT, 22, key=True),
            Column("Code", LONG, 36, key=True),
            Column("Colour", TEXT, 9),
            Column("Passage", LONG, 70),
            Column("Start", NUMBER, 8),
            Column("End", NUMBER, 8),
            Column("Anchor", TEXT, 10),
            Column("Coder", TEXT, 16, key=True),
            Column("Memo", LONG, 40),
            Column("Citation", LONG, 50, key=True),
            Column("Short citation", TEXT, 16, key=True),
        ],
        freeze_columns=1,
    )


class _InterviewPeople:
    """The interviewed participants and the quotes' letters of the interview being written."""

    def __init__(self, session: Session, study_id: int) -> None:
        self.session = session
        self.study_id = study_id
        self.uuid: str | None = None
        self.people: list[Any] = []
        self.quote_letters: dict[str, str] = {}

    def load(self, row: Any) -> None:
        if row.uuid == self.uuid:
            return
        self.uuid = row.uuid
        self.people = list(
            self.session.execute(
                select(Participant.letter, Participant.pid, Participant.agency, Participant.position)
                .where(
                    Participant.study_id == self.study_id,
                    Participant.activity == row.activity,
                    Participant.country_code == row.country_code,
                    Participant.interview_number == row.interview_number,
                    Participant.status == "interviewed",
                )
                .order_by(Participant.letter)
            )
        )
        record = self.session.scalar(select(Interview.record).where(Interview.uuid == row.uuid)) or {}
        self.quote_letters = {
            str(quote.get("id")): quote.get("participant", "A")
            for quote in record.get("quotes") or []
            if isinstance(quote, dict)
        }

    def cited(self, row: Any) -> list[Any]:
        """The participants a coding is cited by (none: it has no row)."""
        if row.quote_id is None:
            return self.people
        letter = self.quote_letters.get(row.quote_id, "A")
        return [person for person in self.people if person.letter == letter]


def write_codes(
    sheet: SheetWriter,
    session: Session,
    scope: Any,
    codes: dict[int, CodeRef],
    seen: Callable[[Any], None],
) -> int:
    """Write the scope's codings to ``sheet``, handing each to ``seen`` (the content hash); returns
    how many rows were written."""
    people = _InterviewPeople(session, scope.study_id)
    country_column = scope.all_countries
    written = 0
    for row in coding_rows(session, scope):
        seen(row)
        people.load(row)
        cited = people.cited(row)
        if not cited:
            continue
        code = codes.get(row.code_id)
        sheet.append(
            [
                "; ".join(person.pid for person in cited),
                *([row.country_code] if country_column else []),
                row.question_id,
                code_path(codes, row.code_id),
                code.colour if code is not None else None,
                row.text,
                row.start_offset,
                row.end_offset,
                row.anchor,
                row.coder,
                row.memo or None,
                "; ".join(citation(person.pid, person.agency, person.position) for person in cited),
                "; ".join(short_citation(person.pid) for person in cited),
            ]
        )
        written += 1
    return written
