"""The statements of the push's write path, built once: Core over the tables (no ORM unit of work),
run with executemany parameter lists through the session's connection. Plain inserts of new rows
go through ``surveykit.bulk_insert`` instead (one COPY per table on PostgreSQL)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Integer, String, bindparam, delete, func, insert, literal, select, union_all, update

from surveykit.db import in_parameter, rows_in_parameter
from surveykit.participants.models import Participant
from surveykit.studies.models import Country, ResearchActivity, Study
from surveykit.sync.models import FieldConflict, Interview, InterviewRevision, Quote

INTERVIEWS = Interview.__table__
REVISIONS = InterviewRevision.__table__
QUOTES = Quote.__table__
PARTICIPANTS = Participant.__table__
FIELD_CONFLICTS = FieldConflict.__table__

INTERVIEW_COLUMNS = tuple(col.name for col in INTERVIEWS.columns)
_STUDIES = Study.__table__
_COUNTRIES = Country.__table__
_ACTIVITIES = ResearchActivity.__table__
# A study's id, country codes and activity codes in one statement: rows (kind, study id, code).
STUDY_FACTS = union_all(
    select(literal("study"), _STUDIES.c.id, literal(None, String)).where(
        _STUDIES.c.slug == bindparam("slug")
    ),
    select(literal("country"), _STUDIES.c.id, _COUNTRIES.c.code)
    .join_from(_STUDIES, _COUNTRIES, _COUNTRIES.c.study_id == _STUDIES.c.id)
    .where(_STUDIES.c.slug == bindparam("slug")),
    select(literal("activity"), _STUDIES.c.id, _ACTIVITIES.c.code)
    .join_from(_STUDIES, _ACTIVITIES, _ACTIVITIES.c.study_id == _STUDIES.c.id)
    .where(_STUDIES.c.slug == bindparam("slug")),
)

# An interview's key: study, activity, country, number (the registry's key too).
INTERVIEW_KEY_COLUMNS = ("study_id", "activity", "country_code", "interview_number")
PARTICIPANT_FIELDS = ("agency", "position", "consent_given", "consent_date", "consent_recorded_how")


class BatchReads(NamedTuple):
    """The statements that read what deciding a batch needs, each run once per batch with the
    batch's keys as lists (``rows_parameter`` for ``numbers`` and ``people``, under "keys")."""

    lock_interviews: Any
    revision_keys: Any
    quote_owners: Any
    numbers: Any
    people: Any


@lru_cache(maxsize=None)
def batch_reads(dialect_name: str) -> BatchReads:
    """The batch reads for one dialect. On PostgreSQL their text does not depend on how many keys
    a batch has (array parameters): SQLAlchemy, psycopg and the server prepare each once."""
    interview_key = [INTERVIEWS.c[name] for name in INTERVIEW_KEY_COLUMNS]
    p = PARTICIPANTS.c
    participant_key = [p[name] for name in INTERVIEW_KEY_COLUMNS]
    return BatchReads(
        lock_interviews=select(INTERVIEWS)
        .where(in_parameter(INTERVIEWS.c.uuid, "uuids", dialect_name))
        .order_by(INTERVIEWS.c.uuid)
        .with_for_update(),
        revision_keys=select(
            REVISIONS.c.interview_uuid,
            REVISIONS.c.base_revision,
            REVISIONS.c.content_hash,
            REVISIONS.c.kind,
            REVISIONS.c.revision,
            REVISIONS.c.id,
            REVISIONS.c.resolved_at,
        ).where(
            in_parameter(REVISIONS.c.interview_uuid, "uuids", dialect_name),
            in_parameter(REVISIONS.c.content_hash, "hashes", dialect_name),
        ),
        quote_owners=select(QUOTES.c.id, QUOTES.c.interview_uuid).where(
            in_parameter(QUOTES.c.id, "ids", dialect_name)
        ),
        numbers=select(INTERVIEWS.c.uuid, *interview_key).where(
            rows_in_parameter(interview_key, "keys", dialect_name)
        ),
        people=select(
            p.id,
            *participant_key,
            p.letter,
            p.pid,
            p.status,
            p.coordinator_fields,
            *(p[name] for name in PARTICIPANT_FIELDS),
        )
        .where(rows_in_parameter(participant_key, "keys", dialect_name))
        .order_by(p.id)
        .with_for_update(),
    )


UPDATE_INTERVIEWS = (
    update(INTERVIEWS)
    .where(INTERVIEWS.c.uuid == bindparam("b_uuid"))
    .values(
        revision=bindparam("b_revision"),
        content_hash=bindparam("b_content_hash"),
        record=bindparam("b_record", type_=INTERVIEWS.c.record.type),
        status=bindparam("b_status"),
        instrument_slug=bindparam("b_instrument_slug"),
        instrument_version=bindparam("b_instrument_version"),
        updated_at=bindparam("b_updated_at", type_=INTERVIEWS.c.updated_at.type),
    )
)
INSERT_CONFLICTS = insert(REVISIONS).returning(REVISIONS.c.id, sort_by_parameter_order=True)
DELETE_QUOTES = delete(QUOTES).where(QUOTES.c.interview_uuid.in_(bindparam("uuids", expanding=True)))
UPDATE_PARTICIPANTS = (
    update(PARTICIPANTS)
    .where(
        PARTICIPANTS.c.study_id == bindparam("b_study_id"),
        PARTICIPANTS.c.pid == bindparam("b_pid"),
    )
    .values(
        **{
            name: bindparam(f"b_{name}", type_=PARTICIPANTS.c[name].type)
            for name in (*PARTICIPANT_FIELDS, "status", "coordinator_fields", "updated_at")
        },
        change_seq=func.coalesce(bindparam("b_change_seq", type_=Integer), PARTICIPANTS.c.change_seq),
    )
)
OPEN_FIELD_CONFLICTS = select(
    FIELD_CONFLICTS.c.id,
    FIELD_CONFLICTS.c.participant_id,
    FIELD_CONFLICTS.c.field,
    FIELD_CONFLICTS.c.incoming_value,
).where(
    FIELD_CONFLICTS.c.participant_id.in_(bindparam("ids", expanding=True)),
    FIELD_CONFLICTS.c.resolved_at.is_(None),
)
INSERT_FIELD_CONFLICTS = insert(FIELD_CONFLICTS).returning(FIELD_CONFLICTS.c.id, sort_by_parameter_order=True)


SET_PARTICIPANT_SEQ = (
    update(PARTICIPANTS)
    .where(
        PARTICIPANTS.c.study_id == bindparam("b_study_id"),
        PARTICIPANTS.c.pid == bindparam("b_pid"),
    )
    .values(change_seq=bindparam("b_seq"))
)
