"""What the analysis pages read: the study's codebook as a tree, a country's interviews with their
participant IDs and numbers of codings, an interview's text answers with their prompts and quotes, and
an answer cut into segments by the codings over it (to highlight them).

Reads only; every change goes through ``surveykit.analysis.coding``. The codebook is read from the
``Code`` model directly until the codebook service exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from surveykit.analysis import coding as coding_services
from surveykit.analysis.models import Code, Coding
from surveykit.instruments import services as instruments
from surveykit.participants.models import Participant
from surveykit.studies.models import Study
from surveykit.sync.models import Interview, Quote

TEXT_TYPES = frozenset({"long_text", "short_text"})


# -------------------------------------------------------------------------------------- codebook


@dataclass(frozen=True)
class CodeRow:
    id: int
    name: str
    path: str  # "Capacity / Training"
    depth: int
    colour: str
    definition: str
    status: str
    merged_into: str | None  # the path of the code a merged code went into
    codings: int


def codebook(session: Session, study: Study) -> list[CodeRow]:
    """The study's codes in tree order (each parent before its children, siblings by name)."""
    codes = list(session.scalars(select(Code).where(Code.study_id == study.id)))
    counts = dict(
        session.execute(
            select(Coding.code_id, func.count()).where(Coding.study_id == study.id).group_by(Coding.code_id)
        ).all()
    )
    by_id = {code.id: code for code in codes}
    children: dict[int | None, list[Code]] = {}
    for code in codes:
        parent = code.parent_id if code.parent_id in by_id else None
        children.setdefault(parent, []).append(code)

    def path_of(code: Code) -> str:
        names, seen = [code.name], {code.id}
        while code.parent_id in by_id and code.parent_id not in seen:
            code = by_id[code.parent_id]
            seen.add(code.id)
            names.append(code.name)
        return " / ".join(reversed(names))

    rows: list[CodeRow] = []

    def walk(parent: int | None, depth: int) -> None:
        for code in sorted(children.get(parent, []), key=lambda c: (c.name.casefold(), c.id)):
            target = by_id.get(code.merged_into_id) if code.merged_into_id is not None else None
            rows.append(
                CodeRow(
                    code.id,
                    code.name,
                    path_of(code),
                    depth,
                    code.colour,
                    code.definition or "",
                    code.status,
                    path_of(target) if target is not None else None,
                    counts.get(code.id, 0),
                )
            )
            if depth < 50:
                walk(code.id, depth + 1)

    walk(None, 0)
    return rows


# ------------------------------------------------------------------------------------ interviews


@dataclass(frozen=True)
class InterviewRow:
    uuid: str
    label: str  # RA1-KE-04
    pids: list[str]
    status: str
    revision: int
    codings: int


def _label(activity: str, country: str, number: int) -> str:
    return f"{activity}-{country}-{number:02d}"


def _pids(
    session: Session, study: Study, interviews: Iterable[Interview]
) -> dict[tuple[str, int], list[str]]:
    """The participant IDs of each (activity, interview number), from the registry."""
    wanted = {(i.activity, i.country_code, i.interview_number) for i in interviews}
    if not wanted:
        return {}
    countries = {country for _, country, _ in wanted}
    rows = session.execute(
        select(Participant.activity, Participant.country_code, Participant.interview_number, Participant.pid)
        .where(Participant.study_id == study.id, Participant.country_code.in_(sorted(countries)))
        .order_by(Participant.pid)
    ).all()
    found: dict[tuple[str, int], list[str]] = {}
    for activity, country, number, pid in rows:
        if (activity, country, number) in wanted:
            found.setdefault((activity, number), []).append(pid)
    return found


def interview_pids(session: Session, study: Study, interview: Interview) -> list[str]:
    """The interview's participant IDs: the registry's, or those its record names."""
    registered = _pids(session, study, [interview]).get((interview.activity, interview.interview_number))
    if registered:
        return registered
    label = _label(interview.activity, interview.country_code, interview.interview_number)
    people = interview.record.get("participants")
    letters = [p.get("letter") for p in people if isinstance(p, dict)] if isinstance(people, list) else []
    return [f"{label}-{letter}" for letter in letters if isinstance(letter, str)]


def country_interviews(session: Session, study: Study, country: str) -> list[InterviewRow]:
    interviews = list(
        session.scalars(
            select(Interview)
            .where(Interview.study_id == study.id, Interview.country_code == country)
            .order_by(Interview.activity, Interview.interview_number)
        )
    )
    counts = dict(
        session.execute(
            select(Coding.interview_uuid, func.count())
            .where(Coding.study_id == study.id, Coding.country_code == country)
            .group_by(Coding.interview_uuid)
        ).all()
    )
    pids = _pids(session, study, interviews)
    rows = []
    for interview in interviews:
        label = _label(interview.activity, interview.country_code, interview.interview_number)
        people = pids.get((interview.activity, interview.interview_number)) or interview_pids(
            session, study, interview
        )
        rows.append(
            InterviewRow(
                interview.uuid,
                label,
                people,
                interview.status,
                interview.revision,
                counts.get(interview.uuid, 0),
            )
        )
    return rows


def get_interview(session: Session, study: Study, country: str, uuid: str) -> Interview:
    """The interview of ``study``/``country`` (``coding.InterviewNotFound`` otherwise)."""
    interview = session.scalar(
        select(Interview).where(
            Interview.uuid == uuid, Interview.study_id == study.id, Interview.country_code == country
        )
    )
    if interview is None:
        raise coding_services.InterviewNotFound(f"no interview {uuid} in {study.slug}/{country}")
    return interview


def interview_label(interview: Interview) -> str:
    return _label(interview.activity, interview.country_code, interview.interview_number)


# --------------------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Segment:
    text: str
    codings: tuple[int, ...]  # ids of the codings over this piece, first-made first

    def markup(self) -> Markup:
        """The text for the page. A carriage return is written as a character reference: a literal
        one would be dropped by the browser's HTML parser (CR LF becomes LF), and every offset the
        page computes after it would be one short."""
        return Markup(str(escape(self.text)).replace("\r", "&#13;"))


@dataclass
class AnswerView:
    question_id: str
    prompt: str
    text: str
    segments: list[Segment] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)


def _text(value: Any, language: str) -> str:
    if isinstance(value, dict):
        return str(value.get(language) or next(iter(value.values()), ""))
    return "" if value is None else str(value)


def _prompts(session: Session, interview: Interview) -> tuple[dict[str, str], list[str], set[str]]:
    """Prompts by question id, the asking order, and the ids of text questions (from the instrument
    version the interview was made with; empty when it is not on this server)."""
    definition = instruments.load_definition(session, interview.instrument_slug, interview.instrument_version)
    if not isinstance(definition, dict):
        return {}, [], set()
    language = str(definition.get("default_language", "en"))
    prompts, order, text_ids = {}, [], set()
    for _, question in instruments.iter_questions(definition):
        prompts[question["id"]] = _text(question.get("prompt"), language)
        order.append(question["id"])
        if question.get("type") in TEXT_TYPES:
            text_ids.add(question["id"])
    return prompts, order, text_ids


def segments(text: str, codings: Iterable[Coding]) -> list[Segment]:
    """``text`` cut at every start and end of the codings placed on it (not the vanished ones)."""
    placed = [
        c for c in codings if c.anchor != "vanished" and 0 <= c.start_offset < c.end_offset <= len(text)
    ]
    cuts = sorted({0, len(text), *(c.start_offset for c in placed), *(c.end_offset for c in placed)})
    pieces = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        over = tuple(
            c.id for c in sorted(placed, key=lambda c: c.id) if c.start_offset <= start < c.end_offset
        )
        pieces.append(Segment(text[start:end], over))
    return pieces


def interview_answers(session: Session, interview: Interview, codings: list[Coding]) -> list[AnswerView]:
    """The interview's text answers in asking order, each with its prompt, its pieces and quotes."""
    answers = interview.record.get("answers")
    answers = answers if isinstance(answers, dict) else {}
    prompts, order, text_ids = _prompts(session, interview)
    ids = [q for q in order if q in answers] + sorted(q for q in answers if q not in prompts)
    quotes = list(
        session.scalars(select(Quote).where(Quote.interview_uuid == interview.uuid).order_by(Quote.id))
    )
    views = []
    for question_id in ids:
        text = answers[question_id]
        if (
            not isinstance(text, str)
            or not text
            or (text_ids and question_id in prompts and question_id not in text_ids)
        ):
            continue
        mine = [c for c in codings if c.question_id == question_id]
        views.append(
            AnswerView(
                question_id,
                prompts.get(question_id, question_id),
                text,
                segments(text, mine),
                [q for q in quotes if q.question_id == question_id],
            )
        )
    return views


def country_coders(session: Session, study: Study, country: str) -> list[str]:
    """Everyone who has coded in the country, by username."""
    return list(
        session.scalars(
            select(Coding.coder)
            .where(Coding.study_id == study.id, Coding.country_code == country)
            .distinct()
            .order_by(Coding.coder)
        )
    )
