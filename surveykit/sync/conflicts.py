"""Record conflicts and field conflicts: listing them for coordinators and resolving them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.accounts.models import User
from surveykit.db import utcnow
from surveykit.participants import services as participants
from surveykit.participants.models import Participant
from surveykit.studies.models import Study
from surveykit.sync import field_ownership, validation
from surveykit.sync.callers import Caller
from surveykit.sync.models import FieldConflict, Interview, InterviewRevision
from surveykit.sync.push import Writer
from surveykit.sync.receipts import Rejected, conflict_json, details, interview_json, summary
from surveykit.sync.validation import Problem

_UNSET: Any = object()


class ConflictNotFound(LookupError):
    pass


class ConflictAlreadyResolved(ValueError):
    pass


class StaleResolution(ValueError):
    def __init__(self, current: dict[str, Any]) -> None:
        super().__init__(f"the record is now at revision {current['revision']}")
        self.current = current


class ResolutionInvalid(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(summary(problems))
        self.problems = problems

    def as_details(self) -> list[dict[str, str]]:
        return details(self.problems)


def conflict_scope(session: Session, conflict_id: int) -> tuple[str, str] | None:
    """The study slug and country of a conflict (None: no such conflict)."""
    row = session.execute(
        select(Study.slug, Interview.country_code)
        .select_from(InterviewRevision)
        .join(Interview, Interview.uuid == InterviewRevision.interview_uuid)
        .join(Study, Study.id == Interview.study_id)
        .where(InterviewRevision.id == conflict_id, InterviewRevision.kind == "conflict")
    ).first()
    return (row.slug, row.country_code) if row is not None else None


def list_conflicts(
    session: Session,
    study: Study,
    countries: set[str] | None,
    status: str = "open",
    after: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    statement = (
        select(InterviewRevision, Interview, User.username)
        .join(Interview, Interview.uuid == InterviewRevision.interview_uuid)
        .join(User, User.id == InterviewRevision.user_id)
        .where(
            InterviewRevision.kind == "conflict",
            Interview.study_id == study.id,
            InterviewRevision.id > after,
        )
        .order_by(InterviewRevision.id)
        .limit(limit + 1)
    )
    if countries is not None:
        statement = statement.where(Interview.country_code.in_(sorted(countries)))
    if status == "open":
        statement = statement.where(InterviewRevision.resolved_at.is_(None))
    elif status == "resolved":
        statement = statement.where(InterviewRevision.resolved_at.is_not(None))
    rows = session.execute(statement).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    return {
        "conflicts": [
            conflict_json(conflict, record, study.slug, username) for conflict, record, username in rows
        ],
        "has_more": has_more,
        "next_after": rows[-1][0].id if rows else after,
    }


@dataclass(frozen=True)
class Resolution:
    conflict: dict[str, Any]
    current: dict[str, Any]
    new_revision: bool
    # Field conflicts the new revision left (audit keywords), as a push's.
    field_conflicts: list[dict[str, Any]] = field(default_factory=list)
    # What re-checking the record's codings did (surveykit.analysis.anchoring), if it was revised.
    reanchoring: Any = None


def resolve_conflict(
    session: Session,
    caller: Caller,
    conflict_id: int,
    resolution: str,
    record: dict[str, Any] | None = None,
    base_revision: int | None = None,
) -> Resolution:
    """Close a conflict; ``take_incoming`` and ``merged`` store a new accepted revision when the
    content differs from the current one (nothing is ever overwritten: history keeps it all)."""
    conflict = session.execute(
        select(InterviewRevision)
        .where(InterviewRevision.id == conflict_id, InterviewRevision.kind == "conflict")
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if conflict is None:
        raise ConflictNotFound(f"no conflict {conflict_id}")
    writer = Writer(session, caller)
    interview = writer.lock(conflict.interview_uuid)
    assert interview is not None  # a conflict always belongs to a stored record
    if conflict.resolved_at is not None:
        raise ConflictAlreadyResolved(
            f"conflict {conflict_id} was resolved ({conflict.resolution}) by {conflict.resolved_by}"
        )
    if base_revision is not None and base_revision != interview.revision:
        raise StaleResolution(interview_json(interview))
    if resolution == "keep_current":
        if record is not None:
            raise ResolutionInvalid([("record", "keep_current takes no record")])
        content = None
    elif resolution == "take_incoming":
        if record is not None:
            raise ResolutionInvalid([("record", "take_incoming takes no record (it takes the conflict's)")])
        content = conflict.record
    else:
        if record is None:
            raise ResolutionInvalid([("record", "merged needs the merged record")])
        content = record
    study_slug = session.scalar(select(Study.slug).where(Study.id == interview.study_id))
    new_revision = False
    if content is not None:
        key, study, problems = writer.validate(content, "record")
        if not problems and key is not None and study is not None:
            stored = (study.id, key.country, key.activity, key.interview_number)
            kept = (
                interview.study_id,
                interview.country_code,
                interview.activity,
                interview.interview_number,
            )
            if stored != kept:
                problems = [("record", "the study, country, activity and interview number cannot change")]
        if problems or key is None or study is None:
            raise ResolutionInvalid(problems)
        digest = validation.content_hash(content)
        if digest != interview.content_hash:
            try:
                # Refuses before changing anything: no savepoint needed.
                base = interview.revision
                writer.accept(
                    interview, content, digest, base, key, study, "record", previous=interview.record
                )
            except Rejected as exc:
                raise ResolutionInvalid(exc.problems) from exc
            new_revision = True
    conflict.resolved_at = writer.now
    conflict.resolved_by = caller.username
    conflict.resolution = resolution
    conflict.resolution_revision = interview.revision
    writer.note_conflict_resolved(interview.study_id, interview.country_code, conflict.id)
    writer.finish()
    username = session.scalar(select(User.username).where(User.id == conflict.user_id))
    return Resolution(
        conflict=conflict_json(conflict, interview, study_slug, username),
        current=interview_json(interview),
        new_revision=new_revision,
        field_conflicts=writer.field_conflicts,
        reanchoring=writer.reanchoring,
    )


# ------------------------------------------------------------------------------------ for the tests


def history(session: Session, uuid: str) -> list[InterviewRevision]:
    """Every revision of a record, accepted ones by number, then conflicts by arrival."""
    return list(
        session.scalars(
            select(InterviewRevision)
            .where(InterviewRevision.interview_uuid == uuid)
            .order_by(InterviewRevision.kind, InterviewRevision.revision, InterviewRevision.id)
        )
    )


# ---------------------------------------------------------------------------------- field conflicts


class FieldConflictNotFound(LookupError):
    pass


def field_conflict_json(
    conflict: FieldConflict, participant: Participant, study_slug: str, username: str | None
) -> dict[str, Any]:
    return {
        "id": conflict.id,
        "study": study_slug,
        "country": participant.country_code,
        "pid": participant.pid,
        "field": conflict.field,
        "status": "resolved" if conflict.resolved_at is not None else "open",
        "incoming": conflict.incoming_value,
        "base": conflict.base_value,
        "registry_then": conflict.registry_value,
        "registry": field_ownership.jsonable(getattr(participant, conflict.field)),
        "uuid": conflict.interview_uuid,
        "revision": conflict.revision,
        "received_at": conflict.received_at.isoformat(),
        "device_id": conflict.device_id,
        "user": username,
        "resolution": conflict.resolution,
        "resolved_at": conflict.resolved_at.isoformat() if conflict.resolved_at else None,
        "resolved_by": conflict.resolved_by,
    }


def field_conflict_scope(session: Session, conflict_id: int) -> tuple[str, str] | None:
    """The study slug and country of a field conflict (None: no such conflict)."""
    row = session.execute(
        select(Study.slug, Participant.country_code)
        .select_from(FieldConflict)
        .join(Participant, Participant.id == FieldConflict.participant_id)
        .join(Study, Study.id == Participant.study_id)
        .where(FieldConflict.id == conflict_id)
    ).first()
    return (row.slug, row.country_code) if row is not None else None


def list_field_conflicts(
    session: Session,
    study: Study,
    countries: set[str] | None,
    status: str = "open",
    after: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    statement = (
        select(FieldConflict, Participant, User.username)
        .join(Participant, Participant.id == FieldConflict.participant_id)
        .join(User, User.id == FieldConflict.user_id)
        .where(Participant.study_id == study.id, FieldConflict.id > after)
        .order_by(FieldConflict.id)
        .limit(limit + 1)
    )
    if countries is not None:
        statement = statement.where(Participant.country_code.in_(sorted(countries)))
    if status == "open":
        statement = statement.where(FieldConflict.resolved_at.is_(None))
    elif status == "resolved":
        statement = statement.where(FieldConflict.resolved_at.is_not(None))
    rows = session.execute(statement).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    return {
        "field_conflicts": [
            field_conflict_json(conflict, participant, study.slug, username)
            for conflict, participant, username in rows
        ],
        "has_more": has_more,
        "next_after": rows[-1][0].id if rows else after,
    }


@dataclass(frozen=True)
class FieldResolution:
    conflict: dict[str, Any]
    participant: dict[str, Any]
    changed: dict[str, Any]


def resolve_field_conflict(
    session: Session, caller: Caller, conflict_id: int, resolution: str, expected: Any = _UNSET
) -> FieldResolution:
    """Close a field conflict: ``keep_current`` leaves the registry as it is; ``take_incoming`` gives
    the field the pushed value. Either way the choice is the coordinator's (the field stays the
    coordinator's until a pushed record carries its value). ``expected``, when given, must be the
    registry's value now (else ``StaleFieldResolution``)."""
    conflict = session.execute(
        select(FieldConflict)
        .where(FieldConflict.id == conflict_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if conflict is None:
        raise FieldConflictNotFound(f"no field conflict {conflict_id}")
    participant = session.execute(
        select(Participant)
        .where(Participant.id == conflict.participant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    if conflict.resolved_at is not None:
        raise ConflictAlreadyResolved(
            f"field conflict {conflict_id} was resolved ({conflict.resolution}) by {conflict.resolved_by}"
        )
    now_value = field_ownership.jsonable(getattr(participant, conflict.field))
    if expected is not _UNSET and expected != now_value:
        raise StaleFieldResolution(conflict.field, now_value)
    changed: dict[str, Any] = {}
    if resolution == "take_incoming":
        value = conflict.incoming_value
        if conflict.field == "consent_date" and value is not None:
            value = date.fromisoformat(value)
        changed = participants.update_participant(session, participant, {conflict.field: value})
    conflict.resolved_at = utcnow()
    conflict.resolved_by = caller.username
    conflict.resolution = resolution
    session.flush()
    study_slug = session.scalar(select(Study.slug).where(Study.id == participant.study_id))
    username = session.scalar(select(User.username).where(User.id == conflict.user_id))
    return FieldResolution(
        conflict=field_conflict_json(conflict, participant, study_slug, username),
        participant=participants.describe_participant(participant, study_slug),
        changed=changed,
    )


class StaleFieldResolution(ValueError):
    def __init__(self, field: str, current: Any) -> None:
        super().__init__(f"the registry's {field} is now {current!r}")
        self.field = field
        self.current = current
