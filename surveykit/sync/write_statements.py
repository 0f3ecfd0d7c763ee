"""The statements of the push's write path, built once: Core over the tables (no ORM unit of work),
run with executemany parameter lists through the session's connection. Plain inserts of new rows
go through ``surveykit.bulk_insert`` instead (one COPY per table on PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import Integer, bindparam, delete, func, insert, select, update

from surveykit.participants.models import Participant
from surveykit.sync.models import FieldConflict, Interview, InterviewRevision, Quote

INTERVIEWS = Interview.__table__
REVISIONS = InterviewRevision.__table__
QUOTES = Quote.__table__
PARTICIPANTS = Participant.__table__
FIELD_CONFLICTS = FieldConflict.__table__

INTERVIEW_COLUMNS = tuple(col.name for col in INTERVIEWS.columns)
LOCK_INTERVIEWS = (
    select(INTERVIEWS)
    .where(INTERVIEWS.c.uuid.in_(bindparam("uuids", expanding=True)))
    .order_by(INTERVIEWS.c.uuid)
    .with_for_update()
)
REVISION_KEYS = select(
    REVISIONS.c.interview_uuid,
    REVISIONS.c.base_revision,
    REVISIONS.c.content_hash,
    REVISIONS.c.kind,
    REVISIONS.c.revision,
    REVISIONS.c.id,
    REVISIONS.c.resolved_at,
).where(
    REVISIONS.c.interview_uuid.in_(bindparam("uuids", expanding=True)),
    REVISIONS.c.content_hash.in_(bindparam("hashes", expanding=True)),
)
QUOTE_OWNERS = select(QUOTES.c.id, QUOTES.c.interview_uuid).where(
    QUOTES.c.id.in_(bindparam("ids", expanding=True))
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
PARTICIPANT_FIELDS = ("agency", "position", "consent_given", "consent_date", "consent_recorded_how")
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
