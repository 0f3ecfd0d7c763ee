"""A checked import as a person reads it before storing it: every row of the sheet with the
participant ID it would get, or every problem with the row it lies in.

The IDs of new interviews are a forecast from the counter as it is now: another import or a tablet's
block reservation in between takes numbers too, and the import itself hands them out when stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.participants import ids
from surveykit.participants.importer import ImportPlan, RowError
from surveykit.participants.models import InterviewNumberCounter
from surveykit.studies.models import Study


@dataclass(frozen=True)
class PreviewRow:
    row: int
    # 1, 2, ... in the order of the file: rows sharing one are one group interview.
    interview: int
    letter: str
    agency: str
    position: str | None
    pid: str
    # Whether the file gave the ID (kept as it is) rather than the counter (forecast).
    known: bool


def preview_plan(
    session: Session, study: Study, country: str, activity: str, plan: ImportPlan
) -> list[PreviewRow]:
    """Each participant row of a checked plan (``importer.parse`` + ``services.check_import``), in
    sheet order, with the ID it gets when the import is stored now."""
    next_number = session.scalar(
        select(InterviewNumberCounter.next_number).where(
            InterviewNumberCounter.study_id == study.id,
            InterviewNumberCounter.activity == activity,
            InterviewNumberCounter.country_code == country,
        )
    )
    next_number = next_number or 1
    known = plan.known_numbers
    if known:
        next_number = max(next_number, max(known) + 1)
    rows: list[PreviewRow] = []
    for position, interview in enumerate(plan.interviews, start=1):
        number = interview[0].number
        given = number is not None
        if number is None:
            number = next_number
            next_number += 1
        for index, person in enumerate(interview):
            letter = person.letter or ids.letter_for(index)
            rows.append(
                PreviewRow(
                    row=person.row,
                    interview=position,
                    letter=letter,
                    agency=person.agency,
                    position=person.position,
                    pid=ids.format_pid(activity, country, number, letter),
                    known=given,
                )
            )
    rows.sort(key=lambda row: row.row)
    return rows


@dataclass(frozen=True)
class ProblemRow:
    row: int | None
    problems: tuple[tuple[str | None, str], ...]  # (column, message)


def problems_by_row(errors: Sequence[RowError]) -> list[ProblemRow]:
    """The problems of a refused file grouped by sheet row (problems of the whole file first)."""
    grouped: dict[int | None, list[tuple[str | None, str]]] = {}
    for error in errors:
        grouped.setdefault(error.row, []).append((error.column, error.message))
    order = sorted(grouped, key=lambda row: -1 if row is None else row)
    return [ProblemRow(row, tuple(grouped[row])) for row in order]
