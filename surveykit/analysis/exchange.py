"""A study's analysis data as a REFI-QDA project or codebook (``refi_model``), built from the database.

What goes where in the project (``docs/refi-qda.md`` tells analysts the same):
- every text answer of an interview is a text source named ``<interview> <question id>``
  (``RA1-KE-04 laws_main``), its guid derived from (interview uuid, question id) so a re-export keeps
  it, its description the question's section and prompt;
- the record's quotes are selections on their answer (guid: the quote's id), coded or not; their tags
  are a note the selection refers to;
- codings are selections with one coding each (the coding's guid, its code's guid, the coder as the
  creating user), the memo as the selection's description; a coding whose text is no longer at its
  offsets in the current answer is left out and counted in the project's description;
- the codebook is the project's codes (``Code.guid``; retired and merged codes are not codable);
- each interviewed participant is a case named by its anonymised ID, with the variables agency and
  position, referring to its interview's sources and its own quotes;
- users are usernames. No personal name exists in surveykit, so none can appear.

Offsets are Unicode code points, as in surveykit and as REFI-QDA counts characters of plain text.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from surveykit.analysis import refi_model as refi
from surveykit.analysis import refi_write
from surveykit.analysis.models import Code, Coding
from surveykit.instruments.models import Instrument, InstrumentVersion
from surveykit.participants.models import Participant
from surveykit.studies import services as studies
from surveykit.sync.models import Interview

TEXT_TYPES = ("long_text", "short_text")
# Interviews read at a time by the streamed export.
BATCH = 200
_RGB = re.compile(r"#[0-9A-Fa-f]{6}")

AGENCY_VARIABLE = refi.Variable(
    refi.derived_guid("variable", "agency"), "agency", "Ministry or government agency of the participant"
)
POSITION_VARIABLE = refi.Variable(
    refi.derived_guid("variable", "position"), "position", "Position of the participant (often left blank)"
)


@dataclass(frozen=True)
class ExchangeScope:
    """A study and the countries an exchange covers (one, or all of the study's for ``country`` None)."""

    study_id: int
    study_slug: str
    study_name: str
    countries: tuple[str, ...]
    country: str | None

    @property
    def target(self) -> str:
        return f"{self.study_slug}/{self.country or 'ALL'}"


def resolve_scope(session: Session, study_slug: str, country: str | None) -> ExchangeScope:
    """Raises ``studies.StudyNotFound`` or ``studies.CountryNotFound``."""
    study = studies.get_study(session, study_slug)
    if country is None:
        codes = tuple(sorted(studies.country_codes(session, study)))
    else:
        codes = (studies.get_country(session, study, country).code,)
    return ExchangeScope(study.id, study.slug, study.name, codes, country)


def source_guid(interview_uuid: str, question_id: str) -> str:
    return refi.derived_guid("source", interview_uuid, question_id)


def user_guid(username: str) -> str:
    return refi.derived_guid("user", username)


def case_guid(study_slug: str, pid: str) -> str:
    return refi.derived_guid("case", study_slug, pid)


def interview_label(activity: str, country: str, number: int) -> str:
    """``RA1-KE-04``: the participant IDs of the interview without their letter."""
    return f"{activity}-{country}-{number:02d}"


# ------------------------------------------------------------------------------------------- codes


def study_codes(session: Session, study_id: int) -> list[Code]:
    return list(session.scalars(select(Code).where(Code.study_id == study_id).order_by(Code.id)))


def code_tree(codes: list[Code]) -> list[refi.Code]:
    """The codebook as REFI-QDA codes, parents before children, in creation order."""
    children: dict[int | None, list[Code]] = defaultdict(list)
    for code in codes:
        children[code.parent_id].append(code)

    def convert(code: Code) -> refi.Code:
        return refi.Code(
            guid=code.guid,
            name=code.name,
            color=code.colour if _RGB.fullmatch(code.colour or "") else None,
            description=code.definition or "",
            codable=code.status == "active",
            children=[convert(child) for child in children.get(code.id, [])],
        )

    return [convert(code) for code in children.get(None, [])]


def build_codebook(session: Session, study_id: int) -> refi.Codebook:
    return refi.Codebook(codes=code_tree(study_codes(session, study_id)))


# ----------------------------------------------------------------------------------------- project


@dataclass
class _Quote:
    id: str
    letter: str
    start: int
    end: int
    tags: list[str]


def _quotes_on(record: dict[str, Any], question_id: str, text: str) -> tuple[list[_Quote], int]:
    """The record's quotes of one answer with their offsets; and how many could not be placed."""
    placed, unplaced = [], 0
    for quote in record.get("quotes") or []:
        if not isinstance(quote, dict) or quote.get("question_id") != question_id:
            continue
        quote_text = quote.get("text") if isinstance(quote.get("text"), str) else ""
        start, end = quote.get("start"), quote.get("end")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            # A quote without offsets (or with stale ones) is placed where its text first occurs.
            start = text.find(quote_text) if quote_text else -1
            end = start + len(quote_text)
        if start < 0 or not isinstance(quote.get("id"), str):
            unplaced += 1
            continue
        tags = [str(tag) for tag in quote.get("tags") or []]
        placed.append(_Quote(quote["id"].lower(), str(quote.get("participant") or "A"), start, end, tags))
    return placed, unplaced


@dataclass
class ProjectStats:
    sources: int = 0
    selections: int = 0
    codings: int = 0
    codings_left_out: int = 0
    quotes_not_placed: int = 0
    cases: int = 0

    def sentence(self) -> str:
        return (
            f"{self.sources} sources, {self.selections} selections, {self.codings} codings, "
            f"{self.cases} cases. Codings left out because their text moved or vanished from the "
            f"current answer: {self.codings_left_out}. Quotes whose text is not in their answer: "
            f"{self.quotes_not_placed}."
        )


@dataclass
class _Built:
    project: refi.Project
    stats: ProjectStats
    users: dict[str, refi.User] = field(default_factory=dict)

    def user(self, username: str) -> str:
        if username not in self.users:
            self.users[username] = refi.User(user_guid(username), username)
        return self.users[username].guid


def _in_language(value: Any, language: str) -> str:
    if isinstance(value, dict):
        return str(value.get(language) or next(iter(value.values()), ""))
    return "" if value is None else str(value)


def text_questions(definition: dict[str, Any]) -> list[tuple[str, str]]:
    """(question id, "section > subsection: prompt") of an instrument's free-text questions, in its
    order; questions bound to a registry fact (``binds``) are the registry's, not answers."""
    language = definition.get("default_language", "en")
    found: list[tuple[str, str]] = []

    def walk(sections: list[dict[str, Any]], titles: tuple[str, ...]) -> None:
        for section in sections:
            here = (*titles, _in_language(section.get("title"), language) or section["id"])
            for question in section.get("questions", []):
                if question.get("type") in TEXT_TYPES and not question.get("binds"):
                    prompt = _in_language(question.get("prompt"), language)
                    found.append((question["id"], f"{' > '.join(here)}: {prompt}"))
            walk(section.get("sections", []), here)

    walk(definition.get("sections", []), ())
    return found


def _instrument_questions(
    session: Session, refs: set[tuple[str, int]]
) -> dict[tuple[str, int], list[tuple[str, str]]]:
    if not refs:
        return {}
    rows = session.execute(
        select(Instrument.slug, InstrumentVersion.version, InstrumentVersion.definition)
        .join(Instrument, Instrument.id == InstrumentVersion.instrument_id)
        .where(Instrument.slug.in_(sorted({slug for slug, _ in refs})))
    )
    return {
        (slug, version): text_questions(definition)
        for slug, version, definition in rows
        if (slug, version) in refs
    }


def _answer_questions(answers: dict[str, Any], known: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    if known is None:
        # An instrument version surveykit no longer has: every text answer, by question id.
        return [(qid, "") for qid in sorted(answers) if isinstance(answers[qid], str)]
    return known


def _interviews_in_batches(session: Session, scope: ExchangeScope) -> Iterator[list[Interview]]:
    """The scope's interviews by country, activity and number, a batch at a time.

    One query per country and activity: with the study, the country and the activity fixed by
    equalities, the unique index (study, activity, country, number) gives the rows in order and the
    database streams them without sorting every record first."""
    groups = session.execute(
        select(Interview.country_code, Interview.activity)
        .where(Interview.study_id == scope.study_id, Interview.country_code.in_(scope.countries))
        .distinct()
        .order_by(Interview.country_code, Interview.activity)
    ).all()
    for country, activity in groups:
        # yield_per gives a server-side cursor on PostgreSQL and fetches in batches everywhere.
        result = session.scalars(
            select(Interview)
            .where(
                Interview.study_id == scope.study_id,
                Interview.country_code == country,
                Interview.activity == activity,
            )
            .order_by(Interview.interview_number)
            .execution_options(yield_per=BATCH)
        )
        try:
            yield from result.partitions()
        finally:
            result.close()


def _interviewed(
    session: Session, scope: ExchangeScope, interviews: list[Interview]
) -> dict[tuple[str, str, int], list[Participant]]:
    people: dict[tuple[str, str, int], list[Participant]] = defaultdict(list)
    keys = [(i.activity, i.country_code, i.interview_number) for i in interviews]
    for person in session.scalars(
        select(Participant)
        .where(
            Participant.study_id == scope.study_id,
            Participant.status == "interviewed",
            tuple_(Participant.activity, Participant.country_code, Participant.interview_number).in_(keys),
        )
        .order_by(Participant.pid)
    ):
        people[(person.activity, person.country_code, person.interview_number)].append(person)
    return people


def _codings_of(
    session: Session, scope: ExchangeScope, interviews: list[Interview]
) -> dict[tuple[str, str], list[Coding]]:
    codings: dict[tuple[str, str], list[Coding]] = defaultdict(list)
    for coding in session.scalars(
        select(Coding)
        .where(
            Coding.study_id == scope.study_id,
            Coding.country_code.in_(scope.countries),
            Coding.interview_uuid.in_([interview.uuid for interview in interviews]),
        )
        .order_by(Coding.start_offset, Coding.end_offset, Coding.id)
    ):
        codings[(coding.interview_uuid, coding.question_id)].append(coding)
    return codings


def _instrument_refs(session: Session, scope: ExchangeScope) -> set[tuple[str, int]]:
    rows = session.execute(
        select(Interview.instrument_slug, Interview.instrument_version)
        .where(Interview.study_id == scope.study_id, Interview.country_code.in_(scope.countries))
        .distinct()
    )
    return {(slug, version) for slug, version in rows}


def _project_parts(
    session: Session, scope: ExchangeScope, built: _Built, code_guids: dict[int, str]
) -> Iterator[refi_write.ProjectPart]:
    """The project one interview at a time (its cases, sources and notes), reading the interviews
    in batches; ``built`` gathers the users and the counts as they go."""
    versions = _instrument_questions(session, _instrument_refs(session, scope))
    for batch in _interviews_in_batches(session, scope):
        people = _interviewed(session, scope, batch)
        codings = _codings_of(session, scope, batch)
        for interview in batch:
            included = people.get((interview.activity, interview.country_code, interview.interview_number))
            if included:
                yield _interview_part(scope, built, code_guids, versions, interview, included, codings)


def _interview_part(
    scope: ExchangeScope,
    built: _Built,
    code_guids: dict[int, str],
    versions: dict[tuple[str, int], list[tuple[str, str]]],
    interview: Interview,
    included: list[Participant],
    codings: dict[tuple[str, str], list[Coding]],
) -> refi_write.ProjectPart:
    part = refi_write.ProjectPart()
    record = interview.record or {}
    answers = record.get("answers") or {}
    known = versions.get((interview.instrument_slug, interview.instrument_version))
    named = interview_label(interview.activity, interview.country_code, interview.interview_number)
    cases = {
        person.letter: refi.Case(
            case_guid(scope.study_slug, person.pid),
            person.pid,
            values={
                AGENCY_VARIABLE.guid: person.agency,
                **({POSITION_VARIABLE.guid: person.position} if person.position else {}),
            },
        )
        for person in included
    }
    pids = {person.letter: person.pid for person in included}
    for question_id, description in _answer_questions(answers, known):
        text = answers.get(question_id)
        if not isinstance(text, str) or not text:
            continue
        source = refi.Source(
            source_guid(interview.uuid, question_id), f"{named} {question_id}", text, description
        )
        on_answer = codings.get((interview.uuid, question_id), [])
        quotes, unplaced = _quotes_on(record, question_id, text)
        built.stats.quotes_not_placed += unplaced
        attached: set[int] = set()
        for quote in quotes:
            pid = pids.get(quote.letter, named)
            selection = refi.Selection(quote.id, quote.start, quote.end, name=f"Quote {pid}")
            if quote.tags:
                note = refi.Note(
                    refi.derived_guid("quote-tags", quote.id),
                    f"Tags of the quote {pid} {question_id}",
                    ", ".join(quote.tags),
                )
                part.notes.append(note)
                selection.note_guids.append(note.guid)
            for coding in on_answer:
                if (
                    coding.quote_id is not None
                    and coding.quote_id.lower() == quote.id
                    and (coding.start_offset, coding.end_offset) == (quote.start, quote.end)
                    and not coding.memo
                    and coding.code_id in code_guids
                ):
                    selection.codings.append(_coding(built, coding, code_guids))
                    attached.add(coding.id)
            source.selections.append(selection)
            if quote.letter in cases:
                cases[quote.letter].selection_guids.append(selection.guid)
        for coding in on_answer:
            if coding.id in attached or coding.code_id not in code_guids:
                continue
            if text[coding.start_offset : coding.end_offset] != coding.text:
                built.stats.codings_left_out += 1
                continue
            source.selections.append(
                refi.Selection(
                    refi.derived_guid("coding-selection", coding.guid),
                    coding.start_offset,
                    coding.end_offset,
                    description=coding.memo or "",
                    creating_user=built.user(coding.coder),
                    created_at=coding.created_at,
                    codings=[_coding(built, coding, code_guids)],
                )
            )
        built.stats.selections += len(source.selections)
        built.stats.codings += sum(len(selection.codings) for selection in source.selections)
        built.stats.sources += 1
        part.sources.append(source)
        for case in cases.values():
            case.source_guids.append(source.guid)
    part.cases = list(cases.values())
    built.stats.cases += len(part.cases)
    return part


def _start(session: Session, scope: ExchangeScope) -> tuple[_Built, dict[int, str]]:
    label = scope.country or "all countries"
    built = _Built(refi.Project(name=f"{scope.study_name} ({scope.study_slug}, {label})"), ProjectStats())
    codes = study_codes(session, scope.study_id)
    built.project.codes = code_tree(codes)
    built.project.variables = [AGENCY_VARIABLE, POSITION_VARIABLE]
    return built, {code.id: code.guid for code in codes}


def _head(built: _Built, scope: ExchangeScope) -> refi.Project:
    project = built.project
    project.users = sorted(built.users.values(), key=lambda user: user.name)
    project.description = project_description(scope, built.stats)
    return project


def project_description(scope: ExchangeScope, stats: ProjectStats) -> str:
    return f"Exported by surveykit from the study {scope.study_slug}. {stats.sentence()}"


def build_project(session: Session, scope: ExchangeScope) -> refi.Project:
    """The analysis project of the scope's countries, in memory: see the module's docstring."""
    built, code_guids = _start(session, scope)
    parts = list(_project_parts(session, scope, built, code_guids))
    project = _head(built, scope)
    for part in parts:
        project.cases += part.cases
        project.sources += part.sources
        project.notes += part.notes
    return project


def write_project_qdpx(session: Session, scope: ExchangeScope, out: IO[bytes]) -> ProjectStats:
    """Write the scope's project as a .qdpx to ``out`` (seekable), the same bytes as
    ``refi_write.write_qdpx(build_project(...))``, holding one batch of interviews at a time."""
    built, code_guids = _start(session, scope)
    refi_write.write_qdpx_streamed(
        out, _project_parts(session, scope, built, code_guids), lambda: _head(built, scope)
    )
    return built.stats


def file_tag(file: IO[bytes]) -> str:
    """``content_tag`` of a written file, read back in chunks."""
    file.seek(0)
    return hashlib.file_digest(file, "sha256").hexdigest()


def _coding(built: _Built, coding: Coding, code_guids: dict[int, str]) -> refi.Coding:
    return refi.Coding(coding.guid, code_guids[coding.code_id], built.user(coding.coder), coding.created_at)


def content_tag(data: bytes) -> str:
    """The ETag of a written file: its SHA-256 (the writer is deterministic)."""
    return hashlib.sha256(data).hexdigest()
