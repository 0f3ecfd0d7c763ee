"""colander schemas for the registry and number-block endpoints.

Strict everywhere: a body with a key the registry does not know (``name`` above all) is refused with
the key's path, and its value is never echoed back.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import colander

from surveykit.instruments.schemas import StrictBoolean, StrictString
from surveykit.participants.ids import InvalidParticipantId, parse_pid
from surveykit.participants.models import PARTICIPANT_STATUSES
from surveykit.participants.services import (
    AGENCY_MAX,
    CONSENT_HOW_MAX,
    DEFAULT_LIST_PAGE,
    MAX_LIST_PAGE,
    POSITION_MAX,
    text_problem,
)
from surveykit.studies.schemas import NullableText, Strict
from surveykit.studies.services import ACTIVITY_CODE, COUNTRY_CODE, STUDY_SLUG

MAX_PARTICIPANTS_PER_INTERVIEW = 26
MAX_BLOCK_SIZE = 100


def _clean(max_length: int) -> Any:
    def validate(node: colander.SchemaNode, value: Any) -> None:
        if value is not None and (message := text_problem(value, max_length)):
            raise colander.Invalid(node, message)

    return validate


class ISODate(colander.SchemaType):
    """``YYYY-MM-DD`` text, or null to clear."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null or cstruct is None:
            return cstruct if cstruct is None else colander.null
        if not isinstance(cstruct, str):
            raise colander.Invalid(node, f"must be a date like 2020-05-14, not {type(cstruct).__name__}")
        try:
            if len(cstruct) != 10:
                raise ValueError(cstruct)
            return date.fromisoformat(cstruct)
        except ValueError as exc:
            raise colander.Invalid(node, "must be a date like 2020-05-14") from exc


class StrictInteger(colander.SchemaType):
    """A JSON integer: not a string of digits, not a boolean, not a float."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null:
            return colander.null
        if isinstance(cstruct, bool) or not isinstance(cstruct, int):
            raise colander.Invalid(node, f"must be a whole number, not {type(cstruct).__name__}")
        return cstruct


def optional_text(name: str, max_length: int, missing: Any) -> colander.SchemaNode:
    """Text, or null (or blank) to leave the field empty."""
    return colander.SchemaNode(NullableText(), name=name, validator=_clean(max_length), missing=missing)


class NullableBoolean(StrictBoolean):
    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        return None if cstruct is None else super().deserialize(node, cstruct)


def activity_node(**kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(
        StrictString(), name="activity", validator=colander.Regex(ACTIVITY_CODE.pattern, "RA1 to RA9"), **kw
    )


class ParticipantInput(Strict):
    agency = colander.SchemaNode(StrictString(), validator=_clean(AGENCY_MAX))
    position = optional_text("position", POSITION_MAX, missing=None)


class ParticipantInputs(colander.SequenceSchema):
    participant = ParticipantInput()
    validator = colander.Length(
        min=1,
        max=MAX_PARTICIPANTS_PER_INTERVIEW,
        min_err="an interview has at least one participant",
        max_err=f"an interview has at most {MAX_PARTICIPANTS_PER_INTERVIEW} participants (A to Z)",
    )


class RegisterSchema(Strict):
    """One planned interview: its participants are lettered A, B, ... in the order given."""

    activity = activity_node()
    participants = ParticipantInputs()


class ParticipantUpdateSchema(Strict):
    agency = colander.SchemaNode(StrictString(), validator=_clean(AGENCY_MAX), missing=colander.drop)
    position = optional_text("position", POSITION_MAX, missing=colander.drop)
    consent_given = colander.SchemaNode(NullableBoolean(), missing=colander.drop)
    consent_date = colander.SchemaNode(ISODate(), missing=colander.drop)
    consent_recorded_how = optional_text("consent_recorded_how", CONSENT_HOW_MAX, missing=colander.drop)
    status = colander.SchemaNode(
        StrictString(), validator=colander.OneOf(PARTICIPANT_STATUSES), missing=colander.drop
    )

    def validator(self, node: colander.SchemaNode, value: dict[str, Any]) -> None:
        if not value:
            raise colander.Invalid(node, "give at least one field to change")


class QueryBoolean(colander.SchemaType):
    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null:
            return colander.null
        if cstruct in ("1", "true", "yes"):
            return True
        if cstruct in ("0", "false", "no", ""):
            return False
        raise colander.Invalid(node, "must be true or false")


def _participant_id(node: colander.SchemaNode, value: str) -> None:
    try:
        parse_pid(value)
    except InvalidParticipantId as exc:
        raise colander.Invalid(
            node, "must be a participant ID like RA1-KE-04-B (the last one of a page)"
        ) from exc


def _search_text(name: str, max_length: int) -> colander.SchemaNode:
    return colander.SchemaNode(
        StrictString(),
        name=name,
        validator=colander.All(colander.Length(min=1, max=max_length), _clean(max_length)),
        missing=None,
    )


class ListQuerySchema(Strict):
    """Filters and keyset paging of a country's registry (``after``: the last ID of the page before)."""

    activity = activity_node(missing=None)
    status = colander.SchemaNode(StrictString(), validator=colander.OneOf(PARTICIPANT_STATUSES), missing=None)
    withdrawn = colander.SchemaNode(QueryBoolean(), missing=None)
    id_prefix = colander.SchemaNode(
        StrictString(),
        name="id_prefix",
        validator=colander.Regex(r"^[A-Za-z0-9-]{1,20}$", "the start of an ID, like RA1-KE-0"),
        missing=None,
    )
    agency = _search_text("agency", AGENCY_MAX)
    position = _search_text("position", POSITION_MAX)
    after = colander.SchemaNode(StrictString(), validator=_participant_id, missing=None)
    limit = colander.SchemaNode(
        colander.Integer(), validator=colander.Range(min=1, max=MAX_LIST_PAGE), missing=DEFAULT_LIST_PAGE
    )


class ImportQuerySchema(Strict):
    activity = activity_node()
    dry_run = colander.SchemaNode(QueryBoolean(), missing=False)


class AnyValue(colander.SchemaType):
    """Passed through as given; checked afterwards (by ``importer.parse_records``)."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        return cstruct


class ImportRowsSchema(Strict):
    """The planned sample as JSON rows, checked like the rows of a sheet."""

    rows = colander.SchemaNode(AnyValue())


class BlockRequestSchema(Strict):
    study = colander.SchemaNode(
        StrictString(), validator=colander.Regex(STUDY_SLUG.pattern, "not a study slug")
    )
    country = colander.SchemaNode(
        StrictString(), validator=colander.Regex(COUNTRY_CODE.pattern, "two capital letters")
    )
    activity = activity_node()
    size = colander.SchemaNode(StrictInteger(), validator=colander.Range(1, MAX_BLOCK_SIZE), missing=None)


class BlockQuerySchema(Strict):
    study = colander.SchemaNode(StrictString(), missing=None)
    country = colander.SchemaNode(StrictString(), missing=None)
    activity = colander.SchemaNode(StrictString(), missing=None)


class CountryBlocksQuerySchema(Strict):
    device_id = colander.SchemaNode(StrictString(), validator=colander.Length(max=36), missing=None)
    activity = activity_node(missing=None)


class BlockReleaseSchema(Strict):
    """Release a device's blocks in the URL's country (of one activity, or of all)."""

    device_id = colander.SchemaNode(StrictString(), validator=colander.Length(max=36))
    activity = activity_node(missing=None)
