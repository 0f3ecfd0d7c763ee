"""Record conflicts: listing them for coordinators and resolving them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.accounts.models import User
from surveykit.studies.models import Study
from surveykit.sync import validation
from surveykit.sync.models import Interview, InterviewRevision
from surveykit.sync.push import Caller, Rejected, Writer, conflict_json, details, interview_json, summary
from surveykit.sync.validation import Problem


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
