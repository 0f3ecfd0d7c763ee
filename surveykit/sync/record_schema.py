"""JSON Schemas (draft 2020-12) of what a tablet sends and receives, built from the rules the server
checks records with (``surveykit.sync.validation``), so the two cannot drift apart.

- ``record_schema(None)``: an interview record whatever its instrument (answers any object);
- ``record_schema(instrument)``: a record of one instrument version, its answers typed question by
  question (choices as enums, number bounds, the date window), for a client to check before syncing;
- ``change_schema``: one entry of ``POST /api/v1/sync``'s ``changes``.

What a JSON Schema cannot say, and only the server checks (``NOT_EXPRESSIBLE``, also in docs/api.md):
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.instruments.bindings import CONSENT_RECORDED_HOW
from surveykit.instruments.models import Instrument
from surveykit.instruments.schemas import NUMBER_LIMIT, SMALLEST_DECIMAL
from surveykit.instruments.services import find_version, load_definition
from surveykit.participants.ids import MAX_INTERVIEW_NUMBER
from surveykit.sync import validation
from surveykit.sync.validation import CompiledInstrument, QuestionRule
from surveykit.web import Representation

DIALECT = "https://json-schema.org/draft/2020-12/schema"

NOT_EXPRESSIBLE = (
    "that the study, country, research activity and instrument version exist, the caller may write "
    "there, and the interview number was reserved (registry and database lookups)",
    "relevance: an answer to a question that is not asked (or probes ticked on it), and a required answer "
    "in a complete record when the question has a relevance condition",
    "bound questions (an instrument's `binds`): an answer must agree with the participant or record field "
    "it is bound to",
    "quotes: the question must be answered in the record, the speaker one of its participants, offsets "
    "within the answer and the text equal to it, and quote ids different",
    "times: started_at and ended_at between 2000-01-01 and a day after the server's clock, ended_at not "
    "before started_at, a consent date not after a day after the server's clock",
    "text: lone surrogates (they cannot be sent as valid JSON) and a blank (spaces only) agency or quote",
    "whole numbers written with a fraction (probe indexes too): to JSON Schema 1.0 is an integer, the "
    "server wants 1",
)
__doc__ += "".join(f"\n- {item};" for item in NOT_EXPRESSIBLE)

# The text rule (surveykit.text) as patterns: multi-line text may hold tab, LF and CR; one-line none.
# Each rule is one "pattern" (not an allOf of several), so client generators see a plain string.
MULTILINE_CHARS = "[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]"
ONE_LINE_CHARS = "[^\\x00-\\x1f\\x7f-\\x9f]"
NOT_BLANK = "(?=[\\s\\S]*\\S)"
ONE_LINE_TEXT = {"type": "string", "pattern": f"^{ONE_LINE_CHARS}*$"}
# Dates and times as validation.DATE and validation.RFC3339 read them, with the years they may carry
# (the server also bounds times by its clock) and offsets within the world's time zones.
TIME_YEARS = "(?:20[0-9]{2}|2[1-9][0-9]{2})"
ANSWER_YEARS = "(?:18[0-9]{2}|19[0-9]{2}|20[0-9]{2}|2100)"
MONTH_DAY = "-[0-9]{2}-[0-9]{2}"
CLOCK = "[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\\.[0-9]{1,9})?"
OFFSET = "(?:[Zz]|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
assert validation.EARLIEST_TIME.year == 2000 and validation.MAX_UTC_OFFSET.total_seconds() == 14 * 3600
assert (validation.EARLIEST_ANSWER_DATE.year, validation.LATEST_ANSWER_DATE.year) == (1800, 2100)


def _text(
    max_length: int | None = None, *, one_line: bool = False, not_blank: bool = False
) -> dict[str, Any]:
    chars = ONE_LINE_CHARS if one_line else MULTILINE_CHARS
    schema: dict[str, Any] = {"type": "string", "pattern": f"^{NOT_BLANK if not_blank else ''}{chars}*$"}
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


def _date(years: str) -> dict[str, Any]:
    return {"type": "string", "format": "date", "pattern": f"^{years}{MONTH_DAY}$"}


def _time() -> dict[str, Any]:
    return {
        "type": "string",
        "format": "date-time",
        "maxLength": 40,
        "pattern": f"^{TIME_YEARS}{MONTH_DAY}{CLOCK}{OFFSET}$",
    }


def participant_schema() -> dict[str, Any]:
    consented = {"properties": {"consent_given": {"const": True}}}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["letter", "agency", "consent_given"],
        "properties": {
            "letter": {"enum": list(validation.LETTERS)},
            "agency": _text(validation.AGENCY_MAX, not_blank=True),
            "position": {"anyOf": [{"type": "null"}, _text(validation.POSITION_MAX)]},
            "consent_given": {"type": ["boolean", "null"]},
            "consent_date": {"anyOf": [{"type": "null"}, _date(TIME_YEARS)]},
            "consent_recorded_how": {"anyOf": [{"type": "null"}, {"enum": list(CONSENT_RECORDED_HOW)}]},
        },
        # A consent date and how consent was recorded only when it was given.
        "allOf": [
            {
                "if": {"required": [field], "properties": {field: {"not": {"type": "null"}}}},
                "then": consented,
            }
            for field in ("consent_date", "consent_recorded_how")
        ],
    }


def quote_schema() -> dict[str, Any]:
    offset = {"type": "integer", "minimum": 0, "maximum": validation.MAX_OFFSET}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "question_id", "text"],
        "properties": {
            "id": {"type": "string", "pattern": validation.UUID_TEXT.pattern},
            "question_id": {"type": "string"},
            "participant": {"anyOf": [{"type": "null"}, {"enum": list(validation.LETTERS)}]},
            "text": _text(not_blank=True),
            "start": {"anyOf": [{"type": "null"}, offset]},
            "end": {"anyOf": [{"type": "null"}, offset]},
            "tags": {"type": "array", "items": _text(validation.TAG_MAX, not_blank=True)},
        },
        "dependentRequired": {"start": ["end"], "end": ["start"]},
    }


def probes_used_schema(instrument: CompiledInstrument | None = None) -> dict[str, Any]:
    """Probes ticked, question id -> 0-based indexes into that question's probes, each at most once."""
    if instrument is None:
        index = {"type": "integer", "minimum": 0, "maximum": validation.MAX_OFFSET}
        ticks: dict[str, Any] = {
            "type": "object",
            "propertyNames": ONE_LINE_TEXT,
            "additionalProperties": {"type": "array", "items": index, "uniqueItems": True},
        }
    else:
        ticks = {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                rule.id: {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0, "maximum": rule.probes - 1},
                    "uniqueItems": True,
                }
                for rule in instrument.questions
                if rule.probes
            },
        }
    return {"anyOf": [{"type": "null"}, ticks]}


def number_schema(rule: QuestionRule | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number", "minimum": -NUMBER_LIMIT, "maximum": NUMBER_LIMIT}
    if rule is not None and rule.minimum is not None:
        schema["minimum"] = max(rule.minimum, -NUMBER_LIMIT)
    if rule is not None and rule.maximum is not None:
        schema["maximum"] = min(rule.maximum, NUMBER_LIMIT)
    # A decimal too small to keep is refused; 0 is fine.
    schema["not"] = {
        "exclusiveMinimum": -SMALLEST_DECIMAL,
        "exclusiveMaximum": SMALLEST_DECIMAL,
        "not": {"const": 0},
    }
    return schema


def answer_schema(rule: QuestionRule) -> dict[str, Any]:
    """The schema of one answer (null: unanswered), as ``validation.check_value`` checks it."""
    if rule.type in ("long_text", "short_text"):
        value: dict[str, Any] = _text()
    elif rule.type == "single_choice":
        value = {"type": "string"} if rule.choices is None else {"enum": sorted(rule.choices)}
    elif rule.type == "multiple_choice":
        item = {"type": "string"} if rule.choices is None else {"enum": sorted(rule.choices)}
        value = {"type": "array", "items": item, "uniqueItems": True}
    elif rule.type == "yes_no":
        value = {"type": "boolean"}
    elif rule.type == "number":
        value = number_schema(rule)
    elif rule.type == "date":
        value = _date(ANSWER_YEARS)
    else:
        value = {"not": {}}  # not answerable by sync
    return {"anyOf": [{"type": "null"}, value]}


def _answered(qid: str) -> dict[str, Any]:
    return {"required": [qid], "properties": {qid: {"not": {"enum": [None, "", []]}}}}


def record_schema(instrument: CompiledInstrument | None = None) -> dict[str, Any]:
    """An interview record; with ``instrument``, one collected with that instrument version."""
    number = {"type": "integer", "minimum": 1, "maximum": MAX_INTERVIEW_NUMBER}
    properties: dict[str, Any] = {
        "study": {"type": "string", "pattern": validation.STUDY.pattern},
        "country": {"type": "string", "pattern": validation.COUNTRY.pattern},
        "activity": {"type": "string", "pattern": validation.ACTIVITY.pattern},
        "interview_number": number,
        "participants": {
            "type": "array",
            "minItems": 1,
            "maxItems": len(validation.LETTERS),
            "items": participant_schema(),
            # Letters run A, B, C... in turn (in a subschema of its own, so "items" covers all).
            "allOf": [
                {"prefixItems": [{"properties": {"letter": {"const": x}}} for x in validation.LETTERS]}
            ],
        },
        "instrument": {
            "type": "object",
            "additionalProperties": False,
            "required": ["slug", "version"],
            "properties": {
                "slug": {"type": "string", "pattern": validation.SLUG.pattern},
                "version": {"type": "integer", "minimum": 1, "maximum": validation.MAX_OFFSET},
            },
        },
        "language": {"type": "string"},
        "mode": {"enum": list(validation.MODES)},
        "started_at": _time(),
        "ended_at": {"anyOf": [{"type": "null"}, _time()]},
        "status": {"enum": list(validation.STATUSES)},
        "answers": {"type": "object", "propertyNames": ONE_LINE_TEXT},
        "quotes": {"anyOf": [{"type": "null"}, {"type": "array", "items": quote_schema()}]},
        "notes": {"anyOf": [{"type": "null"}, _text()]},
        "probes_used": probes_used_schema(),
    }
    complete: dict[str, Any] = {
        "required": ["ended_at"],
        "properties": {
            "ended_at": {"type": "string"},
            "participants": {"items": {"properties": {"consent_given": {"type": "boolean"}}}},
        },
    }
    schema: dict[str, Any] = {
        "$schema": DIALECT,
        "title": "Interview record",
        "type": "object",
        "additionalProperties": False,
        "required": list(validation.RECORD_REQUIRED),
        "properties": properties,
        "if": {"required": ["status"], "properties": {"status": {"const": "complete"}}},
        "then": complete,
    }
    if instrument is not None:
        schema["title"] = f"Interview record of {instrument.slug} version {instrument.version}"
        properties["instrument"]["properties"]["slug"] = {"const": instrument.slug}
        properties["instrument"]["properties"]["version"] = {"const": instrument.version}
        properties["language"] = {"enum": list(instrument.languages)}
        properties["answers"] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {rule.id: answer_schema(rule) for rule in instrument.questions},
        }
        properties["probes_used"] = probes_used_schema(instrument)
        # Required answers of a complete record, for questions always asked and bound to nothing.
        always_required = [
            rule.id
            for rule in instrument.questions
            if rule.required and rule.relevance is None and not rule.binds
        ]
        if always_required:
            complete["properties"]["answers"] = {"allOf": [_answered(qid) for qid in always_required]}
    return schema


def change_schema(record: dict[str, Any] | None = None) -> dict[str, Any]:
    """One entry of a push's ``changes``: the record's UUID, the revision it was edited from, the record."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["uuid", "base_revision", "record"],
        "properties": {
            "uuid": {"type": "string", "pattern": validation.UUID_TEXT.pattern},
            "base_revision": {"type": "integer", "minimum": 0, "maximum": validation.MAX_OFFSET},
            "record": record or record_schema(),
        },
    }


# ------------------------------------------------------------------------- served per version

# A version never changes, so its schema is rendered once per process (keyed by content hash too).
_rendered: dict[tuple[str, int, str], Representation] = {}


def version_record_schema(session: Session, slug: str, version: int) -> Representation:
    """The record schema of one instrument version, ready to serve with a strong ETag.

    Raises ``instruments.services.VersionNotFound`` or ``InstrumentNotFound``."""
    ref = find_version(session, slug, version)
    key = (ref.slug, ref.version, ref.content_hash)
    rep = _rendered.get(key)
    if rep is None:
        study = session.scalar(select(Instrument.study).where(Instrument.slug == ref.slug))
        definition = load_definition(session, ref.slug, ref.version)
        compiled = validation.compile_instrument(definition, ref.slug, ref.version, ref.content_hash, study)
        rep = Representation.of_json(
            f"{ref.content_hash}-v{ref.version}-record-schema", record_schema(compiled)
        )
        if len(_rendered) > 256:
            _rendered.clear()
        _rendered[key] = rep
    return rep
