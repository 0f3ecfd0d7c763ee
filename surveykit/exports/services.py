"""Consolidated Excel workbooks per country (or per study) built from the one registry.

Plain functions over a SQLAlchemy session; the API view and the CLI are thin shells over
``resolve_scope``, ``content_tag`` and ``write_workbook``.

What goes in (see docs/exports.md for the sheets):

- the interviews of the scope that have a record (``interviews``), with their current revision;
- their participants from the registry, in ID order; a participant whose status is ``withdrawn``
  is left out of every data sheet (and counted in the Summary), and so are the quotes attributed to
  them; a registry letter the record does not list (status ``planned``) was not interviewed;
- the instrument versions those interviews were recorded with.

Reading streams: per research activity, two Core queries ordered alike (interviews with their
record JSON, and the participants joined to them) are merged in Python, through server-side cursors
on PostgreSQL (``yield_per``); the unique indexes give the rows in order, so the database does not
sort them either, and memory stays flat however large the country is (``rows_in_order``). Rows,
not ORM objects: loading objects costs several times as much as the rows themselves.

The content hash (the API's strong ETag) covers the data that goes in, never the xlsx bytes (which
hold a timestamp): the interviews' current revisions and content hashes, the registry fields of
their participants, the instrument versions' content hashes, the study and country names, the filter
and ``EXPORT_FORMAT``. ``content_tag`` computes it with the same merge over light queries (no record
JSON), so a client holding the current workbook is answered 304 without anything being built.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from surveykit.db import utcnow
from surveykit.exports import codes_sheet, summary_chart
from surveykit.exports.questions import METADATA_SECTION as METADATA_SECTION
from surveykit.exports.questions import SECTION_SEPARATOR as SECTION_SEPARATOR
from surveykit.exports.questions import Question as Question
from surveykit.exports.questions import ResponseColumn as ResponseColumn
from surveykit.exports.questions import VersionInfo as VersionInfo
from surveykit.exports.questions import load_versions as load_versions
from surveykit.exports.questions import response_columns as response_columns
from surveykit.exports.questions import version_info as version_info
from surveykit.exports.report_text import MONTHS as MONTHS
from surveykit.exports.report_text import citation as citation
from surveykit.exports.report_text import methods_sentence as methods_sentence
from surveykit.exports.report_text import month_year as month_year
from surveykit.exports.report_text import short_citation as short_citation
from surveykit.exports.workbook import (
    DATE,
    EXCEL_MAX_CELL_UNITS,
    EXCEL_MAX_ROWS,
    LONG,
    NUMBER,
    TEXT,
    Column,
    Stats,
    WorkbookWriter,
)
from surveykit.instruments.models import Instrument, InstrumentVersion
from surveykit.participants.models import Participant
from surveykit.studies import services as studies
from surveykit.sync.models import Interview
from surveykit.sync.validation import CLOCK_SKEW, EARLIEST_TIME, plausible_time

# Part of the content hash: bump it when the workbook's layout or rules change, so clients holding a
# workbook of the old layout fetch the new one.
EXPORT_FORMAT = "surveykit-export/4"
ALL_COUNTRIES = "ALL"
ACTIVITY = re.compile(r"^RA[1-9]$")
YIELD_PER = 100
MAX_ATTEMPTS = 3

MODE_LABELS = {"in_person": "In person", "virtual": "Virtual", "phone": "Phone"}
MODES = tuple(MODE_LABELS)
RECORD_STATUSES = ("complete", "draft")
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class LanguageNotOffered(ValueError):
    """``?lang=`` names a language that an instrument version of the scope does not offer."""


class ScopeChanged(RuntimeError):
    """An interview with an instrument version not seen when the layout was fixed appeared while
    the export was being written; the export is started again."""


# ------------------------------------------------------------------------------------------- scope


@dataclass(frozen=True)
class CountryRef:
    code: str
    name: str
    # The interview languages the study lists for the country (``en``, ``km``...).
    languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scope:
    study_id: int
    study_slug: str
    study_name: str
    countries: tuple[CountryRef, ...]
    all_countries: bool
    activity: str | None
    # The instrument language prompts and labels are shown in (None: each instrument's default).
    language: str | None = None

    @property
    def label(self) -> str:
        """The country part of paths and targets: the code, or ``ALL``."""
        return ALL_COUNTRIES if self.all_countries else self.countries[0].code

    @property
    def target(self) -> str:
        return f"{self.study_slug}/{self.label}" + (f"/{self.activity}" if self.activity else "")

    @property
    def codes(self) -> list[str]:
        return [country.code for country in self.countries]

    @property
    def filters(self) -> str:
        return f"research activity = {self.activity}" if self.activity else "none (every research activity)"


def resolve_scope(
    session: Session,
    study_slug: str,
    country: str,
    activity: str | None = None,
    language: str | None = None,
) -> Scope:
    """The study, its country (or every country for ``ALL``), the optional activity filter and the
    optional instrument language.

    Raises ``studies.StudyNotFound``, ``CountryNotFound``, ``ActivityNotFound`` or
    ``LanguageNotOffered``.
    """
    study = studies.get_study(session, study_slug)
    if country == ALL_COUNTRIES:
        rows = session.execute(
            select(studies.Country.code, studies.Country.name, studies.Country.languages)
            .where(studies.Country.study_id == study.id)
            .order_by(studies.Country.code)
        ).all()
        countries = tuple(CountryRef(code, name, tuple(languages or ())) for code, name, languages in rows)
    else:
        found = studies.get_country(session, study, country)
        countries = (CountryRef(found.code, found.name, tuple(found.languages or ())),)
    if activity is not None:
        if not ACTIVITY.match(activity):
            raise studies.ActivityNotFound(f"{activity!r} is not a research activity code (RA1 to RA9)")
        studies.get_activity(session, study, activity)
    scope = Scope(study.id, study.slug, study.name, countries, country == ALL_COUNTRIES, activity, language)
    if language is not None:
        lacking = versions_without_language(session, scope, language)
        if lacking:
            raise LanguageNotOffered(
                f"{', '.join(lacking)} {'does' if len(lacking) == 1 else 'do'} not offer "
                f"the language {language!r}"
            )
    return scope


def versions_without_language(session: Session, scope: Scope, language: str) -> list[str]:
    """The instrument versions of the scope's interviews (``slug vN``) that do not list ``language``."""
    used = versions_used(session, scope)
    if not used:
        return []
    rows = session.execute(
        select(Instrument.slug, InstrumentVersion.version, InstrumentVersion.definition)
        .join(Instrument, Instrument.id == InstrumentVersion.instrument_id)
        .where(Instrument.slug.in_(sorted({slug for slug, _ in used})))
    )
    return sorted(
        f"{slug} v{version}"
        for slug, version, definition in rows
        if (slug, version) in used and language not in (definition.get("languages") or ())
    )


def _scope_filter(model: Any, scope: Scope, activity: str | None = None) -> list[Any]:
    # Equalities only: see ``rows_in_order``. The study-wide scope has no country condition, so it
    # also holds a record whose country the study does not list (``_Builder.interview``).
    conditions = [model.study_id == scope.study_id]
    if not scope.all_countries:
        conditions.append(model.country_code == scope.countries[0].code)
    activity = activity or scope.activity
    if activity is not None:
        conditions.append(model.activity == activity)
    return conditions


def versions_used(session: Session, scope: Scope) -> set[tuple[str, int]]:
    rows = session.execute(
        select(Interview.instrument_slug, Interview.instrument_version)
        .where(*_scope_filter(Interview, scope))
        .distinct()
    )
    return {(slug, version) for slug, version in rows}


# ----------------------------------------------------------------------------------------- streams


def activities(session: Session, scope: Scope) -> list[str]:
    """The research activities the scope's interviews belong to, in order (RA1 before RA2)."""
    if scope.activity is not None:
        return [scope.activity]
    found = session.scalars(select(Interview.activity).where(*_scope_filter(Interview, scope)).distinct())
    return sorted(found)


def _interview_query(scope: Scope, with_record: bool, activity: str) -> Any:
    columns = [
        Interview.activity,
        Interview.country_code,
        Interview.interview_number,
        Interview.uuid,
        Interview.revision,
        Interview.content_hash,
        Interview.status,
        Interview.instrument_slug,
        Interview.instrument_version,
    ]
    if with_record:
        columns += [Interview.record, Interview.updated_at]
    return (
        select(*columns)
        .where(*_scope_filter(Interview, scope, activity))
        .order_by(Interview.activity, Interview.country_code, Interview.interview_number)
    )


def _participant_query(scope: Scope, activity: str) -> Any:
    # Only participants of recorded interviews, ordered exactly as the interviews are.
    return (
        select(
            Participant.activity,
            Participant.country_code,
            Participant.interview_number,
            Participant.letter,
            Participant.pid,
            Participant.agency,
            Participant.position,
            Participant.consent_given,
            Participant.consent_date,
            Participant.consent_recorded_how,
            Participant.status,
        )
        .join(
            Interview,
            and_(
                Interview.study_id == Participant.study_id,
                Interview.activity == Participant.activity,
                Interview.country_code == Participant.country_code,
                Interview.interview_number == Participant.interview_number,
            ),
        )
        .where(*_scope_filter(Participant, scope, activity))
        .order_by(
            Participant.activity, Participant.country_code, Participant.interview_number, Participant.letter
        )
    )


def _stream(session: Session, statement: Any) -> Iterator[Any]:
    # yield_per gives a server-side cursor on PostgreSQL and fetches in batches everywhere.
    result = session.connection().execute(statement.execution_options(yield_per=YIELD_PER))
    try:
        yield from result
    finally:
        result.close()


def rows_in_order(session: Session, scope: Scope, with_record: bool) -> Iterator[tuple[Any, list[Any]]]:
    """Every interview of the scope with its participants, in ID order, streamed.

    One pair of queries per research activity: with the study, the activity and (for one country)
    the country all fixed by equalities, the unique indexes (study, activity, country, number
    [, letter]) give the rows already in order, and the database streams them without sorting (a
    sort of the interviews would first copy every record to temporary files, and on SQLite the
    sorter's memory grows with the country).
    """
    for activity in activities(session, scope):
        interviews = _stream(session, _interview_query(scope, with_record, activity))
        participants = _stream(session, _participant_query(scope, activity))
        yield from merged(interviews, participants)


def merged(interviews: Iterator[Any], participants: Iterator[Any]) -> Iterator[tuple[Any, list[Any]]]:
    """Each interview with its registry participants (both streams in the same order)."""
    pending = next(participants, None)
    for interview in interviews:
        key = _key(interview)
        group = []
        while pending is not None and _key(pending) == key:
            group.append(pending)
            pending = next(participants, None)
        yield interview, group
    if pending is not None:
        # Every participant row joins an interview, so it must have been consumed; if not, the two
        # orders disagree and rows would be lost: refuse rather than write an incomplete workbook.
        raise RuntimeError("participants and interviews were not read in the same order")


def _key(row: Any) -> tuple[str, str, int]:
    return (row.activity, row.country_code, row.interview_number)


class Fingerprint:
    """The content hash of what an export holds (see the module docstring).

    ``artifact`` names the file made of the data (``xlsx``, ``csv``, ``sps``, ``do``): the same data
    gives each its own tag, so a cache never answers one file's request with another.
    """

    def __init__(self, scope: Scope, artifact: str = "xlsx") -> None:
        self._hash = hashlib.sha256()
        self._add(
            EXPORT_FORMAT,
            artifact,
            scope.study_slug,
            scope.study_name,
            scope.all_countries,
            scope.activity,
            scope.language,
            [[country.code, country.name, list(country.languages)] for country in scope.countries],
        )

    def _add(self, *values: Any) -> None:
        self._hash.update(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        self._hash.update(b"\n")

    def interview(self, row: Any, participants: list[Any]) -> None:
        self._add(
            "i",
            row.activity,
            row.country_code,
            row.interview_number,
            row.uuid,
            row.revision,
            row.content_hash,
            row.status,
            row.instrument_slug,
            row.instrument_version,
        )
        for person in participants:
            self._add(
                "p",
                person.pid,
                person.letter,
                person.agency,
                person.position,
                person.consent_given,
                person.consent_date.isoformat() if person.consent_date else None,
                person.consent_recorded_how,
                person.status,
            )

    def withdrawn_unrecorded(self, counts: dict[str, int]) -> None:
        self._add("w", sorted(counts.items()))

    def coding(self, row: Any) -> None:
        """One coding of the Codes sheet (a row of ``codes_sheet.coding_rows``)."""
        self._add("c", *codes_sheet.fingerprint_values(row))

    def codebook(self, codes: Iterable[Any]) -> None:
        self._add("k", [codes_sheet.code_values(code) for code in codes])

    def versions(self, digests: dict[tuple[str, int], str]) -> None:
        self._add("v", sorted([slug, version, digest] for (slug, version), digest in digests.items()))

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def content_tag(session: Session, scope: Scope, artifact: str = "xlsx") -> str:
    """The content hash of the file ``artifact`` (``xlsx``: the workbook ``write_workbook`` would
    write now; ``csv``, ``sps``, ``do``: see ``stats_export``), without building it."""
    fingerprint = Fingerprint(scope, artifact)
    used: set[tuple[str, int]] = set()
    for interview, group in rows_in_order(session, scope, with_record=False):
        fingerprint.interview(interview, group)
        used.add((interview.instrument_slug, interview.instrument_version))
    fingerprint.withdrawn_unrecorded(withdrawn_without_record(session, scope))
    digests = {}
    if used:
        rows = session.execute(
            select(Instrument.slug, InstrumentVersion.version, InstrumentVersion.content_hash)
            .join(Instrument, Instrument.id == InstrumentVersion.instrument_id)
            .where(Instrument.slug.in_(sorted({slug for slug, _ in used})))
        )
        digests = {(slug, version): digest for slug, version, digest in rows if (slug, version) in used}
    fingerprint.versions(digests)
    if artifact == "xlsx":
        fingerprint.codebook(codes_sheet.study_codes(session, scope.study_id).values())
        for row in codes_sheet.coding_rows(session, scope):
            fingerprint.coding(row)
    return fingerprint.hexdigest()


def withdrawn_without_record(session: Session, scope: Scope) -> dict[str, int]:
    """Per country, the withdrawn participants of planned interviews that never produced a record
    (those of recorded interviews are counted as the interviews stream past)."""
    recorded = (
        select(Interview.uuid)
        .where(
            Interview.study_id == Participant.study_id,
            Interview.activity == Participant.activity,
            Interview.country_code == Participant.country_code,
            Interview.interview_number == Participant.interview_number,
        )
        .exists()
    )
    rows = session.execute(
        select(Participant.country_code, func.count())
        .where(
            *_scope_filter(Participant, scope, scope.activity), Participant.status == "withdrawn", ~recorded
        )
        .group_by(Participant.country_code)
    )
    return {country: count for country, count in rows}


def conducted_language(record: dict[str, Any], country: CountryRef | None) -> str | None:
    """The language the interview was conducted in: the ``interview_language`` answer, else the
    country's interview language when the study lists exactly one (not the language the record was
    entered in, which the Participants sheet shows as the entry language)."""
    answer = (record.get("answers") or {}).get("interview_language")
    if isinstance(answer, str) and answer.strip():
        return answer.strip()
    if country is not None and len(country.languages) == 1:
        return country.languages[0]
    return None


def count_interviews(session: Session, scope: Scope) -> int:
    return session.scalar(select(func.count()).select_from(Interview).where(*_scope_filter(Interview, scope)))


def interview_date(record: dict[str, Any]) -> date | None:
    """The interview's date where it took place (the local date of ``started_at``)."""
    started = _started_at(record)
    return started.date() if started is not None else None


def plausible_interview_date(record: dict[str, Any], stored_at: datetime | None) -> date | None:
    """The interview's date when ``started_at`` is a plausible time for it (sync's window, with the
    time its current revision was stored as "now"): what the first and last dates and the methods
    sentence are made of. A stored value outside it (from before that check) counts as undated."""
    started = _started_at(record)
    if started is None or started.tzinfo is None:
        return None
    if not plausible_time(started, stored_at or utcnow()):
        return None
    return started.date()


def _started_at(record: dict[str, Any]) -> datetime | None:
    started = record.get("started_at")
    if not isinstance(started, str):
        return None
    try:
        return datetime.fromisoformat(started)
    except ValueError:
        return None


def home_value(question: Question, person: Any, record: dict[str, Any]) -> Any:
    """The value of a bound question's fact from its home: the participant's registry entry, or the
    record's own field (an answer never overrides it)."""
    kind, _, name = (question.binds or "").partition(".")
    if kind == "participant":
        value = getattr(person, name, None)
        return value.isoformat() if isinstance(value, date) else value
    if name == "started_at":
        day = interview_date(record)
        return day.isoformat() if day is not None else None
    return record.get(name)


def display_value(question: Question | None, value: Any) -> Any:
    """An answer as a reader wants it: labels for choices, Yes/No, real dates and numbers."""
    kind = question.type if question is not None else None
    if kind in ("long_text", "short_text") and isinstance(value, str):
        return value
    if kind == "yes_no" and isinstance(value, bool):
        return "Yes" if value else "No"
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if kind == "date" and isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return value
    if kind == "single_choice" and isinstance(value, str):
        return question.choices.get(value, value)
    if kind == "multiple_choice" and isinstance(value, list):
        return "; ".join(question.choices.get(item, str(item)) for item in value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def probes_text(question: Question, indexes: Any) -> str | None:
    """The probes ticked on a question, one per line in the instrument's order (None: none)."""
    if not isinstance(indexes, list):
        return None
    ticked = sorted({i for i in indexes if isinstance(i, int) and not isinstance(i, bool)})
    texts = [question.probes[i] for i in ticked if 0 <= i < len(question.probes)]
    return "\n".join(texts) or None


def stored_value(question: Question | None, value: Any) -> str | None:
    """The value as stored, where the displayed answer differs from it (choices, yes/no)."""
    kind = question.type if question is not None else None
    if kind in ("single_choice",) and isinstance(value, str):
        return value
    if kind in ("multiple_choice", "yes_no") or kind is None:
        return json.dumps(value, ensure_ascii=False)
    return None


def answer_rows(
    info: VersionInfo, answers: dict[str, Any], ticks: dict[str, Any]
) -> tuple[list[tuple[Any, ...]], dict[str, tuple[Question | None, Any]]]:
    """The Answers rows of one set of answers (section, question id, prompt, answer, probes used,
    stored value), in instrument order, with the probes ticked (``probes_used``): a question with
    ticks but no answer still has its row. Also the shown value of each answer, by question id.
    The workbook's Answers sheet and the CSV (``stats_export``) are both made of these rows."""
    by_id = info.by_id
    formatted: dict[str, tuple[Question | None, Any]] = {}
    for qid, value in answers.items():
        if value is None:
            continue
        question = by_id.get(qid)
        formatted[qid] = (question, display_value(question, value))
    probes: dict[str, str] = {}
    for qid, indexes in ticks.items():
        question = by_id.get(qid)
        text = probes_text(question, indexes) if question is not None else None
        if text is not None:
            probes[qid] = text
    # Answers in instrument order; an answer the version does not know (never stored by sync) last.
    ordered = [
        (
            q.section_path,
            q.id,
            q.prompt,
            formatted[q.id][1] if q.id in formatted else None,
            probes.get(q.id),
            stored_value(q, answers[q.id]) if q.id in formatted else None,
        )
        for q in info.questions
        if q.id in formatted or q.id in probes
    ]
    ordered += [
        ("(not in the instrument)", qid, None, shown, None, stored_value(None, answers[qid]))
        for qid, (q, shown) in formatted.items()
        if q is None
    ]
    return ordered, formatted


def own_answers(
    info: VersionInfo, answers: dict[str, Any], person: Any, record: dict[str, Any]
) -> dict[str, Any]:
    """One participant's answers: the interview's, with each bound question's value from its home."""
    bound = [question for question in info.questions if question.binds]
    if not bound:
        return answers
    own = dict(answers)
    for question in bound:
        own[question.id] = home_value(question, person, record)
    return own


# ------------------------------------------------------------------------------------------ counts


@dataclass
class CountryCounts:
    code: str
    name: str
    interviews: int = 0
    participants: int = 0
    withdrawn: int = 0
    quotes: int = 0
    quotes_excluded: int = 0
    answers: int = 0
    by_mode: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)
    by_version: Counter = field(default_factory=Counter)
    first: date | None = None
    last: date | None = None
    undated: int = 0  # interviews without a plausible date, left out of first, last and the sentence

    def add_interview(self, mode: str, status: str, version: str, day: date | None) -> None:
        self.interviews += 1
        self.by_mode[mode] += 1
        self.by_status[status] += 1
        self.by_version[version] += 1
        if day is None:
            self.undated += 1
        else:
            self.first = day if self.first is None or day < self.first else self.first
            self.last = day if self.last is None or day > self.last else self.last

    def merge(self, other: CountryCounts) -> None:
        self.interviews += other.interviews
        self.participants += other.participants
        self.withdrawn += other.withdrawn
        self.quotes += other.quotes
        self.quotes_excluded += other.quotes_excluded
        self.answers += other.answers
        self.undated += other.undated
        self.by_mode.update(other.by_mode)
        self.by_status.update(other.by_status)
        self.by_version.update(other.by_version)
        for day in (other.first, other.last):
            if day is not None:
                self.first = day if self.first is None or day < self.first else self.first
                self.last = day if self.last is None or day > self.last else self.last

    def sentence(self) -> str:
        return methods_sentence(self.name, self.interviews, self.participants, self.first, self.last)


@dataclass
class ExportResult:
    scope: Scope
    content_hash: str
    generated_at: datetime
    generated_by: str
    countries: list[CountryCounts]
    total: CountryCounts
    stats: Stats
    versions: list[str]
    coded_passages: int = 0


# ----------------------------------------------------------------------------------------- writing


class _Builder:
    """Lays the data out over the sheets while the rows stream past."""

    def __init__(
        self,
        book: WorkbookWriter,
        scope: Scope,
        versions: dict[tuple[str, int], VersionInfo],
    ) -> None:
        self.book = book
        self.scope = scope
        self.versions = versions
        self.multi = scope.all_countries
        self.columns = response_columns(versions)
        self.column_index = {(c.slug, c.question.id): i for i, c in enumerate(self.columns)}
        self.counts = {country.code: CountryCounts(country.code, country.name) for country in scope.countries}
        self.country_refs = {country.code: country for country in scope.countries}
        country = [Column("Country", TEXT, 9, key=True)] if self.multi else []

        self.summary = book.sheet(
            "Summary",
            [
                Column("Item", TEXT, 34),
                Column("Value", LONG, 70),
                *[Column("", NUMBER, 12) for _ in range(11)],
            ],
            header_rows=[],
            autofilter=False,
        )
        self.participants = book.sheet(
            "Participants",
            [
                Column("ID", TEXT, 16, key=True),
                Column("Ministry/Government Agency", LONG, 45),
                Column("Position", LONG, 32),
                *country,
                Column("Interview date", DATE, 13),
                Column("Mode", TEXT, 10),
                Column("Language", TEXT, 12),
                Column("Entry language", TEXT, 10),
                Column("Instrument", TEXT, 20),
                Column("Instrument version", NUMBER, 11),
                Column("Status", TEXT, 10),
                Column("Interview", TEXT, 13),
                Column("Participants in interview", NUMBER, 12),
                Column("Citation", LONG, 60),
                Column("Short citation", TEXT, 16),
            ],
            freeze_columns=1,
        )
        fixed = [
            Column("ID", TEXT, 16, key=True),
            *country,
            Column("Instrument", TEXT, 18, key=True),
            Column("Version", NUMBER, 9, key=True),
        ]
        question_columns = [_question_column(c.question) for c in self.columns]
        prefix_multi_slug = len({c.slug for c in self.columns}) > 1
        sections = [
            (f"{c.slug}: " if prefix_multi_slug else "") + c.question.section_path for c in self.columns
        ]
        self.fixed_count = len(fixed)
        self.responses = book.sheet(
            "Responses",
            fixed + question_columns,
            header_rows=[
                ["Section", *[None] * (len(fixed) - 1), *sections],
                ["Question id", *[None] * (len(fixed) - 1), *[c.question.id for c in self.columns]],
                [c.header for c in fixed] + [_header(c.question.prompt, book) for c in self.columns],
            ],
            freeze_columns=1 + len(country),
        )
        self.answers = book.sheet(
            "Answers",
            [
                Column("ID", TEXT, 16, key=True),
                *country,
                Column("Section", LONG, 30, key=True),
                Column("Question id", TEXT, 22, key=True),
                Column("Prompt", LONG, 40, key=True),
                Column("Answer", LONG, 70),
                Column("Probes used", LONG, 40),
                Column("Stored value", TEXT, 18),
                Column("Language", TEXT, 10),
                Column("Revision", NUMBER, 9),
            ],
            freeze_columns=1,
            # The largest sheet (a row per answer): deflated while the rows are generated.
            stream=True,
        )
        self.quotes = book.sheet(
            "Quotes",
            [
                Column("Participant", TEXT, 16, key=True),
                *country,
                Column("Section", LONG, 28, key=True),
                Column("Question", TEXT, 22, key=True),
                Column("Prompt", LONG, 36, key=True),
                Column("Quote", LONG, 70),
                Column("Tags", LONG, 20),
                Column("Citation", LONG, 50, key=True),
                Column("Short citation", TEXT, 16, key=True),
            ],
            freeze_columns=1,
        )
        self.codes = codes_sheet.create_sheet(book, self.multi)
        self.codebook = book.sheet(
            "Codebook",
            [
                Column("Instrument", TEXT, 20, key=True),
                Column("Version", NUMBER, 9, key=True),
                Column("Section ids", TEXT, 28),
                Column("Section", LONG, 32),
                Column("Question id", TEXT, 22, key=True),
                Column("Prompt", LONG, 50),
                Column("Type", TEXT, 15),
                Column("Required", TEXT, 9),
                Column("Relevance", LONG, 30),
                Column("Choices", LONG, 40),
                Column("Min", NUMBER, 8),
                Column("Max", NUMBER, 8),
            ],
            freeze_columns=0,
        )
        self.readme = book.sheet(
            "Readme", [Column("Topic", TEXT, 26), Column("Details", LONG, 110)], header_rows=None
        )
        self.withdrawn_quotes = 0
        # Per version: (column index, question) for the Responses row, precomputed once.
        self._response_slots: dict[tuple[str, int], list[tuple[int, Question]]] = {}

    def _slots(self, info: VersionInfo) -> list[tuple[int, Question]]:
        key = (info.slug, info.version)
        slots = self._response_slots.get(key)
        if slots is None:
            slots = [
                (self.column_index[(info.slug, q.id)] + self.fixed_count, q)
                for q in info.questions
                if (info.slug, q.id) in self.column_index
            ]
            self._response_slots[key] = slots
        return slots

    def interview(self, row: Any, people: list[Any]) -> None:
        info = self.versions.get((row.instrument_slug, row.instrument_version))
        if info is None:
            raise ScopeChanged(f"{row.instrument_slug} v{row.instrument_version} appeared during the export")
        record: dict[str, Any] = row.record or {}
        counts = self.counts.get(row.country_code)
        if counts is None:
            # Sync only accepts the study's countries, so this is a record whose country is not
            # (or no longer) listed in the study: keep it under its code rather than lose it.
            counts = self.counts[row.country_code] = CountryCounts(row.country_code, row.country_code)
        included = [person for person in people if person.status == "interviewed"]
        counts.withdrawn += sum(1 for person in people if person.status == "withdrawn")
        quotes = record.get("quotes") or []
        if not included:
            counts.quotes_excluded += len(quotes)
            return
        mode = record.get("mode")
        day = interview_date(record)
        counts.add_interview(
            MODE_LABELS.get(mode, str(mode)),
            row.status,
            info.label,
            plausible_interview_date(record, row.updated_at),
        )
        counts.participants += len(included)
        language = record.get("language")
        conducted = conducted_language(record, self.country_refs.get(row.country_code))
        country = [row.country_code] if self.multi else []
        interview_label = f"{row.activity}-{row.country_code}-{row.interview_number:02d}"

        answers = record.get("answers") or {}
        by_id = info.by_id
        bound = [question for question in info.questions if question.binds]
        ticks = record.get("probes_used")
        ticks = ticks if isinstance(ticks, dict) else {}
        laid_out = None if bound else self._lay_out(info, answers, ticks)

        by_letter: dict[str, list[dict[str, Any]]] = {}
        for quote in quotes:
            if isinstance(quote, dict):
                by_letter.setdefault(quote.get("participant", "A"), []).append(quote)
        letters = {person.letter for person in included}
        counts.quotes_excluded += sum(len(q) for letter, q in by_letter.items() if letter not in letters)

        for person in included:
            if bound:
                # One value per fact: a bound question shows its home's value for this participant.
                ordered, response_cells = self._lay_out(
                    info, own_answers(info, answers, person, record), ticks
                )
            else:
                ordered, response_cells = laid_out  # type: ignore[misc]
            pid = person.pid
            full = citation(pid, person.agency, person.position)
            short = short_citation(pid)
            self.participants.append(
                [
                    pid,
                    person.agency,
                    person.position,
                    *country,
                    day,
                    MODE_LABELS.get(mode, mode),
                    conducted,
                    language,
                    row.instrument_slug,
                    row.instrument_version,
                    row.status,
                    interview_label,
                    len(included),
                    full,
                    short,
                ]
            )
            self.responses.append(
                [pid, *country, row.instrument_slug, row.instrument_version, *response_cells]
            )
            append_answer = self.answers.append
            revision = row.revision
            for section, qid, prompt, shown, probes, stored in ordered:
                append_answer(
                    [pid, *country, section, qid, prompt, shown, probes, stored, language, revision]
                )
            counts.answers += sum(1 for row in ordered if row[3] is not None)
            for quote in by_letter.get(person.letter, []):
                question = by_id.get(quote.get("question_id"))
                tags = quote.get("tags") or []
                self.quotes.append(
                    [
                        pid,
                        *country,
                        question.section_path if question is not None else None,
                        quote.get("question_id"),
                        question.prompt if question is not None else None,
                        quote.get("text"),
                        ", ".join(str(tag) for tag in tags),
                        full,
                        short,
                    ]
                )
                counts.quotes += 1

    def add_withdrawn(self, by_country: dict[str, int]) -> None:
        for code, count in by_country.items():
            counts = self.counts.get(code)
            if counts is None:
                counts = self.counts[code] = CountryCounts(code, code)
            counts.withdrawn += count

    def _lay_out(
        self, info: VersionInfo, answers: dict[str, Any], ticks: dict[str, Any]
    ) -> tuple[list[tuple[Any, ...]], list[Any]]:
        """The Answers rows and the Responses cells of one set of answers."""
        ordered, formatted = answer_rows(info, answers, ticks)
        response_cells: list[Any] = [None] * len(self.columns)
        for index, question in self._slots(info):
            entry = formatted.get(question.id)
            if entry is not None:
                response_cells[index - self.fixed_count] = entry[1]
        return ordered, response_cells

    # ------------------------------------------------------------------------------ end sheets

    def write_codebook(self) -> None:
        for key in sorted(self.versions):
            info = self.versions[key]
            for q in info.questions:
                choices = "; ".join(f"{value} = {label}" for value, label in q.choices.items())
                self.codebook.append(
                    [
                        info.slug,
                        info.version,
                        q.section_id_path,
                        q.section_path,
                        q.id,
                        q.prompt,
                        q.type,
                        "yes" if q.required else "no",
                        q.relevance,
                        choices or None,
                        q.minimum,
                        q.maximum,
                    ]
                )

    def total(self) -> CountryCounts:
        if self.multi:
            with_data = [c for c in self.counts.values() if c.interviews]
            place = f"{len(with_data)} {'country' if len(with_data) == 1 else 'countries'}"
            total = CountryCounts(ALL_COUNTRIES, place)
        else:
            only = self.scope.countries[0]
            total = CountryCounts(only.code, only.name)
        for counts in self.counts.values():
            total.merge(counts)
        return total

    def write_summary(self, result: ExportResult) -> None:
        scope, total, sheet = self.scope, result.total, self.summary
        sheet.append(["Consolidated interview workbook"])
        sheet.append(["Study", f"{scope.study_name} ({scope.study_slug})"])
        if scope.all_countries:
            names = ", ".join(f"{c.name} ({c.code})" for c in scope.countries)
            sheet.append(["Countries", f"all countries of the study: {names}" if names else "none"])
        else:
            sheet.append(["Country", f"{scope.countries[0].name} ({scope.countries[0].code})"])
        sheet.append(["Research activity", scope.activity or "all"])
        sheet.append(["Filters", scope.filters])
        sheet.append(["Generated at (UTC)", result.generated_at.replace(tzinfo=None, microsecond=0)])
        sheet.append(["Generated by", result.generated_by])
        sheet.append(["Content hash (SHA-256)", result.content_hash])
        versions = "; ".join(f"{label} ({n} {_plural(n, 'interview')})" for label, n in _by_version(total))
        sheet.append(["Instrument versions used", versions or "none"])
        sheet.append(["Interviews", total.interviews])
        sheet.append(["Participants", total.participants])
        for label in MODE_LABELS.values():
            sheet.append([f"Interviews: {label.lower()}", total.by_mode.get(label, 0)])
        for status in RECORD_STATUSES:
            sheet.append([f"Interviews: {status}", total.by_status.get(status, 0)])
        sheet.append(["Withdrawn participants (left out)", total.withdrawn])
        sheet.append(["Quotes", total.quotes])
        sheet.append(["First interview", total.first])
        sheet.append(["Last interview", total.last])
        if total.undated:
            sheet.append(["Interviews without a plausible date (not in the dates above)", total.undated])
        sheet.append(["Methods sentence", total.sentence()])
        sheet.append([])
        header = [
            "Country",
            "Methods sentence",
            "Code",
            "Interviews",
            "Participants",
            "In person",
            "Virtual",
            "Phone",
            "Complete",
            "Draft",
            "Withdrawn (left out)",
            "First interview",
            "Last interview",
        ]
        sheet.append(["Per country"])
        sheet.append(header)
        header_row = sheet.row
        for counts in result.countries:
            sheet.append(
                [
                    counts.name,
                    counts.sentence(),
                    counts.code,
                    counts.interviews,
                    counts.participants,
                    *[counts.by_mode.get(MODE_LABELS[mode], 0) for mode in MODES],
                    *[counts.by_status.get(status, 0) for status in RECORD_STATUSES],
                    counts.withdrawn,
                    counts.first,
                    counts.last,
                ]
            )
        summary_chart.add_charts(sheet, header_row, sheet.row)

    def write_readme(self, result: ExportResult) -> None:
        stats = result.stats
        sheet = self.readme
        country_note = " A Country column follows the participant's ID." if self.multi else ""
        rows = [
            (
                "Summary",
                "Study, country, filters, who generated the workbook and when, the instrument "
                "versions used, counts of interviews (by mode and by record status) and participants, the "
                "first and last interview date and the methods sentence, overall and per country; two "
                "charts beside them: interviews by country and mode, and by country and record status.",
            ),
            (
                "Participants",
                "Every interviewed participant, sorted by ID (RA1-KE-100-A after RA1-KE-99-A): "
                "ID | Ministry/Government Agency | Position as the reports print them, then the interview's "
                "date, mode, the language it was conducted in (the interview_language answer, or the "
                "country's only interview language), the language the record was entered in, instrument "
                "version and record status (complete or draft), and the participant's citations."
                + country_note,
            ),
            (
                "Responses",
                "One row per participant, one column per question in instrument order (three "
                "header rows: section, question id, prompt). Versions are aligned by question id; a question "
                "dropped in a later version keeps its column. In a group interview the answers belong to the "
                "interview, so each of its participants' rows repeats them.",
            ),
            (
                "Answers",
                "The same answers in long form: participant, section, question id, prompt, answer, "
                "the probes the interviewer ticked (one per line, in the instrument's order and the "
                "workbook's instrument language; a question with ticked probes but no answer has a row "
                "too), the stored value "
                "where the shown answer is a label (choices, yes/no), the language the record was entered "
                "in and the record's revision.",
            ),
            (
                "Quotes",
                "Verbatim quotes with the participant they are attributed to, section and question, "
                "tags, the full citation (ID, Position, Agency) - or (ID, Agency) when the position is "
                "blank - and the short citation (ID).",
            ),
            (
                "Codes",
                "Every coded passage of an answer or quote, sorted by interview, question and "
                "offset: the participant(s) it is cited by, the code's path (Theme / Sub-theme) and "
                "colour, the passage, its offsets, whether it is still anchored in the current answer "
                "(current, moved, vanished), the coder, the memo and the citation in the Quotes "
                "sheet's form. A passage of a group interview's answer cites every participant: "
                f"{result.coded_passages} coded passage(s).",
            ),
            (
                "Codebook",
                "Every question of every instrument version used: section, id, prompt, type, "
                "required, relevance, choices (value = label), bounds.",
            ),
            (
                "Source",
                "The participant registry and the current accepted revision of each interview "
                "record, read in one pass. Agencies and positions in every sheet and citation come from the "
                "registry, so the tables and citations cannot disagree.",
            ),
            (
                "Left out",
                f"{result.total.withdrawn} withdrawn participant(s) (of recorded interviews and of "
                f"planned interviews that produced no record) and {result.total.quotes_excluded} quote(s) "
                "attributed to them; participants the registry still lists as planned (not interviewed).",
            ),
            (
                "Interview dates",
                "The local date of the record's started_at; the methods sentence gives the "
                "months of the first and last interview. A start outside the plausible window "
                f"(from {EARLIEST_TIME.date()} to {CLOCK_SKEW.days} day after the record was stored) "
                "counts for neither: "
                f"{result.total.undated} interview(s) without a plausible date.",
            ),
            (
                "Formulas",
                "None: every text is stored as text, including text beginning with =, +, -, @, "
                "a tab or a carriage return, and reads back exactly as entered.",
            ),
            (
                "Control characters",
                f"Characters that an xlsx file cannot hold are shown as \ufffd: "
                f"{stats.control_characters} replaced in {stats.cells_with_control_characters} cell(s).",
            ),
            (
                "Long texts",
                f"A text longer than Excel's limit of {self.book.max_cell_units:,} characters "
                "(UTF-16 units) is split into parts marked [part 1/2], [part 2/2]... that continue in "
                "the same column on the next row(s); the key columns repeat there. "
                f"{stats.split_texts} text(s) split, {stats.continuation_rows} continuation row(s).",
            ),
            (
                "Numbers and dates as text",
                "A number a spreadsheet cannot hold exactly (beyond 10^15 in size, or a decimal "
                "too small to keep) is written as text marked [number as text], and a date before "
                "1900-01-01 (where Excel's calendar starts) as text marked [date as text]: "
                f"{stats.numbers_as_text} number(s) and {stats.dates_as_text} date(s).",
            ),
            (
                "Long sheets",
                f"A sheet that reaches {self.book.max_rows:,} rows continues on a sheet of the "
                "same name numbered (2), (3)... with the same header: "
                + (", ".join(stats.continuation_sheets) if stats.continuation_sheets else "none needed")
                + ".",
            ),
            (
                "Generated",
                f"{result.generated_at.isoformat(timespec='seconds')} by {result.generated_by}, "
                f"surveykit ({EXPORT_FORMAT}); filters: {self.scope.filters}; instrument language: "
                f"{self.scope.language or 'each instrument version default'}.",
            ),
            (
                "Content hash",
                f"{result.content_hash}: SHA-256 over the data in this workbook (not the file's "
                "bytes); an unchanged export has the same hash (the API's ETag).",
            ),
        ]
        for topic, details in rows:
            sheet.append([topic, details])


def _header(text: str, book: WorkbookWriter) -> str:
    # A prompt is a header here (and whole in the Codebook); a header cell must fit in one cell.
    limit = book.max_cell_units // 2
    return text if len(text) <= limit else text[: limit - 20] + " [cut; see Codebook]"


def _plural(n: int, noun: str) -> str:
    return noun if n == 1 else f"{noun}s"


def _by_version(total: CountryCounts) -> list[tuple[str, int]]:
    return sorted(total.by_version.items())


def _question_column(question: Question) -> Column:
    if question.type == "long_text":
        return Column(question.id, LONG, 50)
    if question.type == "short_text":
        return Column(question.id, LONG, 24)
    if question.type == "date":
        return Column(question.id, DATE, 12)
    if question.type == "number":
        return Column(question.id, NUMBER, 10)
    return Column(question.id, TEXT, 22)


def write_workbook(
    session: Session,
    scope: Scope,
    target: str | IO[bytes],
    generated_by: str,
    *,
    generated_at: datetime | None = None,
    max_rows: int = EXCEL_MAX_ROWS,
    max_cell_units: int = EXCEL_MAX_CELL_UNITS,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Stream the scope's data into a new workbook at ``target`` (a path or a binary file)."""
    for attempt in range(MAX_ATTEMPTS):
        if hasattr(target, "seek"):
            target.seek(0)
            target.truncate()
        try:
            return _write(
                session, scope, target, generated_by, generated_at, max_rows, max_cell_units, progress
            )
        except ScopeChanged:
            if attempt == MAX_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _write(
    session: Session,
    scope: Scope,
    target: str | IO[bytes],
    generated_by: str,
    generated_at: datetime | None,
    max_rows: int,
    max_cell_units: int,
    progress: Callable[[int], None] | None,
) -> ExportResult:
    generated_at = generated_at or utcnow()
    versions = load_versions(session, versions_used(session, scope), scope.language)
    book = WorkbookWriter(max_rows=max_rows, max_cell_units=max_cell_units, target=target, dated=generated_at)
    try:
        result = _fill(book, session, scope, versions, generated_by, generated_at, progress)
        book.save()
    except BaseException:
        book.discard()
        raise
    return result


def _fill(
    book: WorkbookWriter,
    session: Session,
    scope: Scope,
    versions: dict[tuple[str, int], VersionInfo],
    generated_by: str,
    generated_at: datetime,
    progress: Callable[[int], None] | None,
) -> ExportResult:
    builder = _Builder(book, scope, versions)
    fingerprint = Fingerprint(scope)
    used: set[tuple[str, int]] = set()
    for interview, group in rows_in_order(session, scope, with_record=True):
        fingerprint.interview(interview, group)
        used.add((interview.instrument_slug, interview.instrument_version))
        builder.interview(interview, group)
        if progress is not None:
            progress(1)
    unrecorded = withdrawn_without_record(session, scope)
    fingerprint.withdrawn_unrecorded(unrecorded)
    builder.add_withdrawn(unrecorded)
    fingerprint.versions({key: versions[key].content_hash for key in used})
    codes = codes_sheet.study_codes(session, scope.study_id)
    fingerprint.codebook(codes.values())
    coded = codes_sheet.write_codes(builder.codes, session, scope, codes, fingerprint.coding)
    # Versions seen when the layout was fixed but no longer used (a record moved on) stay in the
    # Codebook; the hash covers the versions actually used, as content_tag does.
    countries = list(builder.counts.values())
    result = ExportResult(
        scope=scope,
        content_hash=fingerprint.hexdigest(),
        generated_at=generated_at,
        generated_by=generated_by,
        countries=countries,
        total=builder.total(),
        stats=book.stats,
        versions=[versions[key].label for key in sorted(used)],
        coded_passages=coded,
    )
    builder.write_codebook()
    builder.write_summary(result)
    builder.write_readme(result)
    properties = book.workbook.properties
    place = "all countries" if scope.all_countries else scope.countries[0].name
    properties.title = f"{scope.study_name}: {place}" + (f" ({scope.activity})" if scope.activity else "")
    properties.subject = "Consolidated interview workbook"
    properties.creator = "surveykit"
    properties.lastModifiedBy = generated_by
    properties.created = generated_at.replace(tzinfo=None)
    properties.modified = generated_at.replace(tzinfo=None)
    properties.identifier = result.content_hash
    properties.keywords = " ".join([scope.study_slug, scope.label, scope.activity or "all activities"])
    properties.description = result.total.sentence()
    return result


def file_name(scope: Scope, result: ExportResult) -> str:
    """``ocsea-KE-RA1-20260504T093000Z-3f2a9c1b7e4d.xlsx``: scope, UTC time and the start of the hash."""
    parts = [scope.study_slug, scope.label, *([scope.activity] if scope.activity else [])]
    stamp = result.generated_at.strftime("%Y%m%dT%H%M%SZ")
    return f"{'-'.join(parts)}-{stamp}-{result.content_hash[:12]}.xlsx"
