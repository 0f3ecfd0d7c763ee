"""Checking an interview record against the exact instrument version it was collected with.

Pure functions: the database lookups (the study, its countries and activities, the instrument
version) are done by ``surveykit.sync.services``, which hands a ``CompiledInstrument`` in. Every
problem is reported as ``(path, message)`` with the path inside the record (``answers.budget``,
``participants[1].agency``); the caller prefixes where the record sits in the request.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from surveykit import text as text_rule
from surveykit.instruments.bindings import CONSENT_RECORDED_HOW, RECORD_MODES
from surveykit.instruments.relevance import Expression
from surveykit.instruments.relevance import parse as parse_relevance
from surveykit.instruments.schemas import number_problem
from surveykit.instruments.services import iter_questions
from surveykit.participants.ids import MAX_INTERVIEW_NUMBER

Problem = tuple[str, str]

MODES = RECORD_MODES
STATUSES = ("draft", "complete")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ACTIVITY = re.compile(r"^RA[1-9]$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
STUDY = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
QUESTION_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# RFC 3339 date-time: a T between date and time, seconds, an optional fraction, and Z or an offset.
RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
UUID_TEXT = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# Sizes the registry columns hold (surveykit.participants.models).
AGENCY_MAX = 500
POSITION_MAX = 300
CONSENT_HOW_MAX = 100
TAG_MAX = 100
MAX_OFFSET = 2**31 - 1
TIME_FORMAT = "must be an RFC 3339 time with a time zone, e.g. 2026-05-04T09:30:00+03:00"

# When an interview can have happened: not before this floor (no study ran on tablets earlier), and
# not later than a day after the server's clock (a tablet's clock may run ahead). Offsets beyond
# the world's time zones (-12:00 to +14:00) are refused.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(days=1)
MAX_UTC_OFFSET = timedelta(hours=14)
# Date answers may be about old laws (a penal code of 1860) or plans (an action plan to 2100).
EARLIEST_ANSWER_DATE = date(1800, 1, 1)
LATEST_ANSWER_DATE = date(2100, 12, 31)

RECORD_REQUIRED = (
    "study",
    "country",
    "activity",
    "interview_number",
    "participants",
    "instrument",
    "language",
    "mode",
    "started_at",
    "status",
    "answers",
)
RECORD_OPTIONAL = ("ended_at", "quotes", "notes", "probes_used")
PARTICIPANT_KEYS = ("letter", "agency", "position", "consent_given", "consent_date", "consent_recorded_how")
QUOTE_KEYS = ("id", "question_id", "participant", "text", "start", "end", "tags")


def canonical_text(value: Any) -> str:
    """Sorted keys, no whitespace, characters as themselves (not ``\\u`` escapes): the text whose
    UTF-8 bytes the content hash covers, as ``json.dumps(sort_keys=True, ensure_ascii=False,
    separators=(",", ":"))`` writes it.

    orjson writes the same text about twenty times faster for objects, arrays, strings, integers,
    booleans and null (tests/test_canonical_json.py compares every code point, key orders and the
    integer limits), but not every float (``1e-05`` against ``0.00001``): data holding a float or
    anything else, or that orjson refuses (an integer beyond 64 bits, a lone surrogate), is written
    by the standard library, so a record's hash never depends on which writer wrote it."""
    if _holds_only_plain_json(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")
        except orjson.JSONEncodeError:
            pass
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})


def _holds_only_plain_json(value: Any) -> bool:
    """Whether ``value`` is made of dicts, lists, strings, integers, booleans and None alone (exact
    types: a subclass may serialise differently)."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
        elif kind not in _PLAIN_SCALARS:
            return False
    return True


def canonical_json(value: Any) -> bytes:
    """The canonical text's UTF-8 bytes: what the content hash covers."""
    return canonical_text(value).encode("utf-8")


def content_hash(record: Any) -> str:
    return hashlib.sha256(canonical_json(record)).hexdigest()


def hash_and_text(record: Any) -> tuple[str, str] | None:
    """The content hash and the canonical JSON text it covers, or None for data with no UTF-8 form."""
    try:
        text = canonical_text(record)
        return hashlib.sha256(text.encode("utf-8")).hexdigest(), text
    except (UnicodeEncodeError, ValueError):
        return None


# In canonical JSON text (``ensure_ascii=False``) every character the text rule refuses shows up as
# an escape (control characters, line breaks, tabs, lone surrogates) or as itself (DEL and the C1
# controls), and a non-finite number as a bare NaN or Infinity. Line breaks and tabs (``\n``,
# ``\r``, ``\t``) are refused only in keys, so text whose only escapes are those (and escaped
# quotes and backslashes) needs its keys looked at, not every string. Anything else found takes the
# full walk. Each test is a substring search or a regular expression that starts with a literal, so
# a record of a few kilobytes is screened in microseconds (one regular expression of alternatives
# tried at every character cost 170 us for 4.8 KB).
_OTHER_ESCAPE = re.compile(r'\\[^"\\nrt]')
_C1_CONTROL_UTF8 = re.compile(rb"\xc2[\x80-\x9f]")


def _may_be_refused(canonical: str) -> bool | None:
    """True when the text may hold something the rule refuses; None when only a key may (line
    breaks or tabs occur); False when nothing can."""
    if "NaN" in canonical or "Infinity" in canonical or "\x7f" in canonical:
        return True
    if not canonical.isascii():
        encoded = canonical.encode("utf-8", "surrogatepass")
        if b"\xc2" in encoded and _C1_CONTROL_UTF8.search(encoded) is not None:
            return True
    if "\\" not in canonical:
        return False
    if _OTHER_ESCAPE.search(canonical) is not None:
        return True
    if "\\n" in canonical or "\\r" in canonical or "\\t" in canonical:
        return None
    return False


def _keys_are_one_line(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if text_rule.text_problem(str(key)):
                    return False
                if isinstance(child, dict | list):
                    pending.append(child)
        elif isinstance(item, list):
            pending.extend(child for child in item if isinstance(child, dict | list))
    return True


def check_text_of(record: Any, canonical: str | None) -> list[Problem]:
    """``check_text(record)``, answered from the record's canonical JSON text when it is given."""
    if canonical is not None:
        suspect = _may_be_refused(canonical)
        if suspect is False or (suspect is None and _keys_are_one_line(record)):
            return []
    return check_text(record)


def safe_hash(record: Any) -> str | None:
    """The content hash, or None for data that has no UTF-8 form (lone surrogates)."""
    try:
        return content_hash(record)
    except (UnicodeEncodeError, ValueError):
        return None


def check_text(value: Any, path: str = "") -> list[Problem]:
    """Text the text rule refuses (``surveykit.text``: NUL, lone surrogates, control characters;
    keys are one line), and numbers that are not finite (JSON has none, but ``1e999`` parses as
    infinity)."""
    problems: list[Problem] = []
    if isinstance(value, str):
        if message := text_rule.text_problem(value, multiline=True):
            problems.append((path, message))
    elif isinstance(value, float) and not math.isfinite(value):
        problems.append((path, "is not a finite number"))
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if text_rule.text_problem(str(key)):
                problems.append((path, "has a key that is not valid text"))
                continue
            problems.extend(check_text(item, child))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems.extend(check_text(item, f"{path}[{index}]"))
    return problems


def parse_uuid(value: Any) -> str | None:
    """The canonical lower-case form of a hyphenated UUID, or None when ``value`` is not one."""
    if not isinstance(value, str) or not UUID_TEXT.fullmatch(value):
        return None
    return value.lower()


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def answered(value: Any) -> bool:
    """As the relevance function ``answered()``: present and not an empty string or list."""
    return value is not None and value != "" and value != []


def _key_path(prefix: str, key: Any) -> str:
    if isinstance(key, str) and QUESTION_ID.match(key):
        return f"{prefix}.{key}"
    return f"{prefix}[{json.dumps(str(key), ensure_ascii=False)[:80]}]"


def _parse_date(value: Any) -> date | None:
    if not isinstance(value, str) or not DATE.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _parse_datetime(value: Any) -> datetime | None:
    """An RFC 3339 time with its offset (within the world's time zones), or None."""
    if not isinstance(value, str) or len(value) > 40 or not RFC3339.match(value):
        return None
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        return None
    offset = parsed.utcoffset()
    if offset is None or abs(offset) > MAX_UTC_OFFSET:
        return None
    return parsed


def plausible_time(moment: datetime, now: datetime) -> bool:
    """Whether an interview can have taken place at ``moment`` (aware), judged at ``now``."""
    return EARLIEST_TIME <= moment <= now + CLOCK_SKEW


def _time_window(now: datetime) -> str:
    latest = (now + CLOCK_SKEW).strftime("%Y-%m-%dT%H:%MZ")
    return f"is not a plausible interview time: it must lie between {EARLIEST_TIME.date()} and {latest}"


# ------------------------------------------------------------------------------------ instruments


@dataclass(frozen=True)
class QuestionRule:
    id: str
    type: str
    required: bool
    choices: frozenset[str] | None
    minimum: float | None
    maximum: float | None
    relevance: Expression | None
    relevance_source: str | None
    binds: str | None = None
    probes: int = 0  # how many probes the question has (ticked in a record's probes_used by index)


@dataclass(frozen=True)
class CompiledInstrument:
    slug: str
    version: int
    content_hash: str
    activity: str
    study: str | None
    languages: tuple[str, ...]
    questions: tuple[QuestionRule, ...]
    by_id: dict[str, QuestionRule] = field(hash=False, compare=False)


def compile_instrument(
    definition: dict[str, Any], slug: str, version: int, digest: str, study: str | None
) -> CompiledInstrument:
    rules = []
    for _path, question in iter_questions(definition):
        source = question.get("relevance")
        choices = question.get("choices")
        rules.append(
            QuestionRule(
                id=question["id"],
                type=question["type"],
                required=bool(question.get("required", False)),
                choices=frozenset(choice["value"] for choice in choices) if choices else None,
                minimum=question.get("min"),
                maximum=question.get("max"),
                relevance=parse_relevance(source) if source else None,
                relevance_source=source,
                binds=question.get("binds"),
                probes=len(question.get("probes") or ()),
            )
        )
    return CompiledInstrument(
        slug=slug,
        version=version,
        content_hash=digest,
        activity=definition["activity"],
        study=study,
        languages=tuple(definition["languages"]),
        questions=tuple(rules),
        by_id={rule.id: rule for rule in rules},
    )


# ----------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RecordKey:
    """Where a record belongs: enough to check the caller's scope before anything else."""

    study: str
    country: str
    activity: str
    interview_number: int


@dataclass(frozen=True)
class InstrumentRef:
    slug: str
    version: int


def read_key(record: Any) -> tuple[RecordKey | None, list[Problem]]:
    """The record's study, country, activity and interview number, or the problems with them."""
    if not isinstance(record, dict):
        return None, [("", "a record must be a JSON object")]
    problems: list[Problem] = []
    study = record.get("study")
    if not isinstance(study, str) or not STUDY.match(study):
        problems.append(("study", "required: the study's slug"))
    country = record.get("country")
    if not isinstance(country, str) or not COUNTRY.match(country):
        problems.append(("country", "required: the study's two-letter country code, e.g. KE"))
    activity = record.get("activity")
    if not isinstance(activity, str) or not ACTIVITY.match(activity):
        problems.append(("activity", "required: the research activity, RA1 to RA9"))
    number = record.get("interview_number")
    if not is_int(number) or not 1 <= number <= MAX_INTERVIEW_NUMBER:
        problems.append(("interview_number", f"required: a whole number from 1 to {MAX_INTERVIEW_NUMBER}"))
    if problems:
        return None, problems
    return RecordKey(study, country, activity, number), []


def read_instrument_ref(record: dict[str, Any]) -> tuple[InstrumentRef | None, list[Problem]]:
    ref = record.get("instrument")
    if not isinstance(ref, dict):
        return None, [("instrument", 'required: {"slug": ..., "version": ...}')]
    problems: list[Problem] = [
        (f"instrument.{key}" if isinstance(key, str) else "instrument", "unknown field")
        for key in ref
        if key not in ("slug", "version")
    ]
    slug, version = ref.get("slug"), ref.get("version")
    if not isinstance(slug, str) or not SLUG.match(slug):
        problems.append(("instrument.slug", "required: the instrument's slug"))
    if not is_int(version) or not 1 <= version <= MAX_OFFSET:
        problems.append(("instrument.version", "required: the version number the interview used"))
    if problems:
        return None, problems
    return InstrumentRef(slug, version), []


def check_record(
    record: dict[str, Any], instrument: CompiledInstrument | None, now: datetime | None = None
) -> list[Problem]:
    """Everything about a record but its key and the database: shape, participants, times, answers.

    With ``instrument`` None (it could not be found) the answers and the language are not checked.
    Times must lie in the plausible window at ``now`` (the server's clock by default).
    """
    now = now or datetime.now(UTC)
    problems: list[Problem] = []
    for key in record:
        if key not in RECORD_REQUIRED and key not in RECORD_OPTIONAL:
            problems.append((_key_path("", key).lstrip("."), "unknown field"))
    for key in RECORD_REQUIRED:
        if key not in record:
            problems.append((key, "required"))

    status = record.get("status")
    if "status" in record and status not in STATUSES:
        problems.append(("status", "must be 'draft' or 'complete'"))
    complete = status == "complete"

    mode = record.get("mode")
    if "mode" in record and mode not in MODES:
        problems.append(("mode", "must be one of in_person, virtual, phone"))

    if "language" in record:
        language = record["language"]
        if not isinstance(language, str):
            problems.append(("language", "must be a language code"))
        elif instrument is not None and language not in instrument.languages:
            offered = ", ".join(instrument.languages)
            problems.append(("language", f"{language!r} is not a language of the instrument ({offered})"))

    problems.extend(_check_times(record, complete, now))
    if "participants" in record:
        problems.extend(_check_participants(record["participants"], complete, now))
    if "notes" in record and record["notes"] is not None and not isinstance(record["notes"], str):
        problems.append(("notes", "must be text"))

    answers = record.get("answers")
    if "answers" in record and not isinstance(answers, dict):
        problems.append(("answers", "must be an object keyed by question id"))
        answers = None
    if answers is not None and instrument is not None:
        bound_problems, derived = check_bindings(record, answers, instrument)
        problems.extend(bound_problems)
        problems.extend(check_answers(answers, instrument, complete, derived))
    if record.get("probes_used") is not None:
        problems.extend(
            check_probes_used(
                record["probes_used"], instrument, answers if isinstance(answers, dict) else {}, record
            )
        )
    if "quotes" in record:
        letters = _participant_letters(record.get("participants"))
        problems.extend(
            _check_quotes(record["quotes"], answers if isinstance(answers, dict) else {}, letters)
        )
    return problems


def _check_times(record: dict[str, Any], complete: bool, now: datetime) -> list[Problem]:
    problems: list[Problem] = []
    started = ended = None
    if "started_at" in record:
        started = _parse_datetime(record["started_at"])
        if started is None:
            problems.append(("started_at", TIME_FORMAT))
        elif not plausible_time(started, now):
            problems.append(("started_at", _time_window(now)))
            started = None
    if record.get("ended_at") is not None:
        ended = _parse_datetime(record["ended_at"])
        if ended is None:
            problems.append(("ended_at", TIME_FORMAT))
        elif not plausible_time(ended, now):
            problems.append(("ended_at", _time_window(now)))
            ended = None
    elif complete:
        problems.append(("ended_at", "required in a complete record"))
    if started is not None and ended is not None and ended < started:
        problems.append(("ended_at", "is before started_at"))
    return problems


def _check_participants(participants: Any, complete: bool, now: datetime) -> list[Problem]:
    if not isinstance(participants, list) or not participants:
        return [("participants", "required: a list of one or more participants (letters A, B, ...)")]
    if len(participants) > len(LETTERS):
        return [("participants", f"an interview has at most {len(LETTERS)} participants")]
    problems: list[Problem] = []
    for index, entry in enumerate(participants):
        path = f"participants[{index}]"
        if not isinstance(entry, dict):
            problems.append((path, "must be an object"))
            continue
        for key in entry:
            if key not in PARTICIPANT_KEYS:
                problems.append((_key_path(path, key), "unknown field (a participant has no name field)"))
        if entry.get("letter") != LETTERS[index]:
            problems.append((f"{path}.letter", f"must be {LETTERS[index]!r}: letters run A, B, C... in turn"))
        agency = entry.get("agency")
        if not isinstance(agency, str) or not agency.strip():
            problems.append((f"{path}.agency", "required: the participant's ministry or agency"))
        elif len(agency) > AGENCY_MAX:
            problems.append((f"{path}.agency", f"longer than {AGENCY_MAX} characters"))
        position = entry.get("position")
        if position is not None and not isinstance(position, str):
            problems.append((f"{path}.position", "must be text or null"))
        elif isinstance(position, str) and len(position) > POSITION_MAX:
            problems.append((f"{path}.position", f"longer than {POSITION_MAX} characters"))
        consent = entry.get("consent_given")
        if "consent_given" not in entry:
            problems.append((f"{path}.consent_given", "required: true, false, or null while not yet asked"))
        elif consent is not None and not isinstance(consent, bool):
            problems.append((f"{path}.consent_given", "must be true, false or null"))
        elif consent is None and complete:
            problems.append((f"{path}.consent_given", "must be true or false in a complete record"))
        if entry.get("consent_date") is not None:
            consent_date = _parse_date(entry["consent_date"])
            if consent_date is None:
                problems.append((f"{path}.consent_date", "must be a date YYYY-MM-DD"))
            elif not EARLIEST_TIME.date() <= consent_date <= (now + CLOCK_SKEW).date():
                latest = (now + CLOCK_SKEW).date().isoformat()
                earliest = EARLIEST_TIME.date()
                problems.append((f"{path}.consent_date", f"must lie between {earliest} and {latest}"))
            elif consent is not True:
                problems.append((f"{path}.consent_date", "only when consent_given is true"))
        how = entry.get("consent_recorded_how")
        if how is not None:
            if not isinstance(how, str) or not how.strip():
                problems.append((f"{path}.consent_recorded_how", "must be text or null"))
            elif how not in CONSENT_RECORDED_HOW:
                codes = ", ".join(CONSENT_RECORDED_HOW)
                problems.append((f"{path}.consent_recorded_how", f"must be one of the codes {codes}"))
            elif consent is not True:
                problems.append((f"{path}.consent_recorded_how", "only when consent_given is true"))
    return problems


def check_value(rule: QuestionRule, value: Any) -> str | None:
    """What is wrong with ``value`` as an answer to ``rule`` (None: nothing)."""
    qtype = rule.type
    if qtype in ("long_text", "short_text"):
        return None if isinstance(value, str) else f"a {qtype} answer must be text"
    if qtype == "single_choice":
        if not isinstance(value, str):
            return "a single_choice answer must be one choice value (text)"
        if rule.choices is not None and value not in rule.choices:
            return f"{value!r} is not a choice of this question ({', '.join(sorted(rule.choices))})"
        return None
    if qtype == "multiple_choice":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return "a multiple_choice answer must be a list of choice values"
        unknown = [item for item in value if rule.choices is not None and item not in rule.choices]
        if unknown:
            offered = ", ".join(sorted(rule.choices or ()))
            return f"{unknown[0]!r} is not a choice of this question ({offered})"
        if len(set(value)) != len(value):
            return "a choice is selected twice"
        return None
    if qtype == "yes_no":
        return None if isinstance(value, bool) else "a yes_no answer must be true or false"
    if qtype == "number":
        if not is_number(value):
            return "a number answer must be a number"
        if problem := number_problem(value):
            return f"this number {problem}"
        if rule.minimum is not None and value < rule.minimum:
            return f"{value} is below the minimum {rule.minimum}"
        if rule.maximum is not None and value > rule.maximum:
            return f"{value} is above the maximum {rule.maximum}"
        return None
    if qtype == "date":
        day = _parse_date(value)
        if day is None:
            return "a date answer must be a date YYYY-MM-DD"
        if not EARLIEST_ANSWER_DATE <= day <= LATEST_ANSWER_DATE:
            return f"a date answer must lie between {EARLIEST_ANSWER_DATE} and {LATEST_ANSWER_DATE}"
        return None
    return f"questions of type {qtype} cannot be answered by sync"


def check_answers(
    answers: dict[str, Any],
    instrument: CompiledInstrument,
    complete: bool,
    derived: dict[str, Any] | None = None,
) -> list[Problem]:
    """``derived``: values of bound questions left unanswered, taken from their homes: they count
    for relevance and for required answers, as if answered."""
    derived = derived or {}
    problems, valid, invalid = _valid_answers(answers, instrument, derived)
    # In asking order: a question is asked only when its relevance holds on the answers before it.
    for rule in instrument.questions:
        if rule.relevance is not None and rule.relevance.references & invalid:
            continue  # undecidable until the answers it depends on are fixed
        relevant = rule.relevance is None or rule.relevance.evaluate(valid)
        if not relevant and answered(valid.get(rule.id)) and rule.id not in derived:
            why = f"answered, but the question is not asked: its relevance {rule.relevance_source!r} is false"
            problems.append((f"answers.{rule.id}", why))
        elif rule.id in derived:
            continue  # its home holds the answer (and checks it)
        elif relevant and complete and rule.required and not answered(answers.get(rule.id)):
            if rule.id not in answers or answers[rule.id] is None or rule.id in valid:
                problems.append((f"answers.{rule.id}", "required in a complete record"))
    return problems


def _valid_answers(
    answers: dict[str, Any], instrument: CompiledInstrument, derived: dict[str, Any]
) -> tuple[list[Problem], dict[str, Any], set[str]]:
    """The problems of each answer on its own, the valid answers (with ``derived``), and the ids of
    the invalid ones."""
    problems: list[Problem] = []
    valid: dict[str, Any] = dict(derived)
    invalid: set[str] = set()
    for qid, value in answers.items():
        rule = instrument.by_id.get(qid)
        if rule is None:
            why = f"not a question of {instrument.slug} version {instrument.version}"
            problems.append((_key_path("answers", qid), why))
            continue
        if value is None:
            continue  # explicitly unanswered
        problem = check_value(rule, value)
        if problem is not None:
            problems.append((_key_path("answers", qid), problem))
            invalid.add(qid)
            continue
        valid[qid] = value
    return problems, valid, invalid


def check_probes_used(
    probes_used: Any,
    instrument: CompiledInstrument | None,
    answers: dict[str, Any],
    record: dict[str, Any],
) -> list[Problem]:
    """The probes ticked, ``{question id: [0-based probe indexes]}``: each a probe of that question
    in the record's instrument version, at most once, and (as for answers) only on a question that
    is asked. With ``instrument`` None only the shape is checked."""
    if not isinstance(probes_used, dict):
        return [("probes_used", "must be an object: question id -> list of probe indexes (from 0)")]
    problems: list[Problem] = []
    ticked: list[QuestionRule] = []
    for qid, indexes in probes_used.items():
        path = _key_path("probes_used", qid)
        rule = instrument.by_id.get(qid) if instrument is not None else None
        if instrument is not None and rule is None:
            problems.append((path, f"not a question of {instrument.slug} version {instrument.version}"))
            continue
        if rule is not None and rule.probes == 0:
            problems.append((path, f"the question {qid} has no probes to tick"))
            continue
        if not isinstance(indexes, list):
            problems.append((path, "must be a list of probe indexes (from 0)"))
            continue
        seen: dict[int, int] = {}
        for position, index in enumerate(indexes):
            item = f"{path}[{position}]"
            if not is_int(index) or index < 0:
                problems.append((item, "must be a probe's index: a whole number from 0"))
            elif rule is not None and index >= rule.probes:
                problems.append(
                    (item, f"no probe {index}: the question has {rule.probes} (0 to {rule.probes - 1})")
                )
            elif index in seen:
                problems.append((item, f"the same probe as {path}[{seen[index]}]"))
            else:
                seen[index] = position
        if rule is not None and indexes:
            ticked.append(rule)
    if instrument is not None and ticked:
        # Ticks on a question that is not asked are refused, as an answer to it is.
        derived = check_bindings(record, answers, instrument)[1]
        _, valid, invalid = _valid_answers(answers, instrument, derived)
        for rule in ticked:
            if rule.relevance is None or rule.relevance.references & invalid:
                continue
            if not rule.relevance.evaluate(valid):
                source = rule.relevance_source
                why = f"probes ticked, but the question is not asked: its relevance {source!r} is false"
                problems.append((_key_path("probes_used", rule.id), why))
    return problems


# ---------------------------------------------------------------------------------------- bindings


def _home(record: dict[str, Any], target: str) -> tuple[str, bool, Any]:
    """The path of a bound fact's home in the record, whether it holds a usable value, and the value
    (as an answer would give it)."""
    kind, _, name = target.partition(".")
    if kind == "participant":
        path = f"participants[0].{name}"
        people = record.get("participants")
        first = people[0] if isinstance(people, list) and people and isinstance(people[0], dict) else None
        if first is None:
            return path, False, None
        value = first.get(name)
        if isinstance(value, str):
            value = value.strip() or None
        return path, True, value
    if name == "started_at":
        started = _parse_datetime(record.get("started_at"))
        return "started_at", started is not None, started.date().isoformat() if started else None
    value = record.get(name)
    return name, value in MODES, value


def check_bindings(
    record: dict[str, Any], answers: dict[str, Any], instrument: CompiledInstrument
) -> tuple[list[Problem], dict[str, Any]]:
    """Bound answers against their homes: a contradiction is a problem on both sides; an unanswered
    bound question takes its home's value (returned as ``derived``, question id -> value)."""
    problems: list[Problem] = []
    derived: dict[str, Any] = {}
    for rule in instrument.questions:
        if rule.binds is None:
            continue
        home_path, usable, home = _home(record, rule.binds)
        if not usable:
            continue  # the home itself is reported as invalid
        value = answers.get(rule.id)
        if value is None:
            if home is not None:
                derived[rule.id] = home
            continue
        if check_value(rule, value) is not None:
            continue  # reported by check_answers
        given = value.strip() or None if isinstance(value, str) else value
        if given != home:
            answer_path = _key_path("answers", rule.id)
            shown_home, shown_answer = (json.dumps(v, ensure_ascii=False) for v in (home, value))
            problems.append((answer_path, f"contradicts {home_path} ({shown_home}): one fact, one value"))
            problems.append((home_path, f"contradicts {answer_path} ({shown_answer}): one fact, one value"))
    return problems, derived


def _participant_letters(participants: Any) -> set[str]:
    if not isinstance(participants, list):
        return set()
    return {p["letter"] for p in participants if isinstance(p, dict) and isinstance(p.get("letter"), str)}


def _check_quotes(quotes: Any, answers: dict[str, Any], letters: set[str]) -> list[Problem]:
    if quotes is None:
        return []
    if not isinstance(quotes, list):
        return [("quotes", "must be a list of quotes")]
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, quote in enumerate(quotes):
        path = f"quotes[{index}]"
        if not isinstance(quote, dict):
            problems.append((path, "must be an object"))
            continue
        for key in quote:
            if key not in QUOTE_KEYS:
                problems.append((_key_path(path, key), "unknown field"))
        quote_id = parse_uuid(quote.get("id"))
        if quote_id is None:
            problems.append((f"{path}.id", "required: the quote's UUID"))
        elif quote_id in seen:
            problems.append((f"{path}.id", f"the same id as quotes[{seen[quote_id]}]"))
        else:
            seen[quote_id] = index
        question_id = quote.get("question_id")
        answer = answers.get(question_id) if isinstance(question_id, str) else None
        if not isinstance(question_id, str) or not answered(answer):
            problems.append((f"{path}.question_id", "must name a question answered in this record"))
        # Who said it, for the citation: a participant's letter; without one, participant A.
        speaker = quote.get("participant")
        if speaker is not None and speaker not in letters:
            known = ", ".join(sorted(letters)) or "none"
            problems.append(
                (f"{path}.participant", f"must be the letter of a participant of the interview ({known})")
            )
        text = quote.get("text")
        if not isinstance(text, str) or not text.strip():
            problems.append((f"{path}.text", "required: the quoted words"))
        start, end = quote.get("start"), quote.get("end")
        if start is not None or end is not None:
            if not (is_int(start) and is_int(end) and 0 <= start < end <= MAX_OFFSET):
                problems.append((f"{path}.start", "start and end go together: whole numbers, start < end"))
            elif isinstance(answer, str):
                if end > len(answer):
                    problems.append((f"{path}.end", f"beyond the answer's {len(answer)} characters"))
                elif isinstance(text, str) and answer[start:end] != text:
                    problems.append((f"{path}.text", "differs from the answer's text between start and end"))
            elif answered(answer):
                problems.append((f"{path}.start", "offsets apply only to quotes taken from a text answer"))
        tags = quote.get("tags", [])
        if not isinstance(tags, list) or not all(
            isinstance(tag, str) and tag.strip() and len(tag) <= TAG_MAX for tag in tags
        ):
            problems.append((f"{path}.tags", f"must be a list of short texts (up to {TAG_MAX} characters)"))
    return problems


def quote_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The quotes of a valid record as rows (id, question_id, text, offsets, tags)."""
    return [
        {
            "id": parse_uuid(quote["id"]),
            "question_id": quote["question_id"],
            "text": quote["text"],
            "start_offset": quote.get("start"),
            "end_offset": quote.get("end"),
            "tags": list(quote.get("tags") or []),
        }
        for quote in record.get("quotes") or []
    ]


def participant_values(entry: dict[str, Any]) -> dict[str, Any]:
    """The registry fields of one participant of a valid record."""
    consent_date = entry.get("consent_date")
    position = entry.get("position")
    how = entry.get("consent_recorded_how")
    return {
        "agency": entry["agency"].strip(),
        "position": position.strip() or None if isinstance(position, str) else None,
        "consent_given": entry.get("consent_given"),
        "consent_date": date.fromisoformat(consent_date) if consent_date else None,
        "consent_recorded_how": how.strip() if isinstance(how, str) else None,
    }
