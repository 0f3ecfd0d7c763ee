"""What a push answers: each change's result, the batch's outcome, and the JSON of stored records and
conflicts that answers, the feed and the conflict listings share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from surveykit.errors import ErrorCode, field_error
from surveykit.sync.models import InterviewRevision
from surveykit.sync.validation import Problem

RESULTS = ("created", "updated", "unchanged", "conflict", "rejected")


class StoredInterview(Protocol):
    """A stored interview: its ORM row, or the writer's state of it within a batch."""

    uuid: str
    country_code: str
    revision: int
    content_hash: str
    record: dict[str, Any]
    updated_at: datetime


class Rejected(Exception):
    """A change that cannot be stored as sent; raised inside its savepoint to roll it back."""

    def __init__(self, code: ErrorCode, message: str, problems: Sequence[Problem]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.problems = list(problems)


@dataclass
class ChangeResult:
    index: int
    uuid: str | None
    result: str
    revision: int | None = None
    content_hash: str | None = None
    code: str | None = None
    message: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    conflict_id: int | None = None
    conflict_status: str | None = None
    current: dict[str, Any] | None = None
    # Registry fields this change carried that were kept as field conflicts instead of applied.
    field_conflicts: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "index": self.index,
            "uuid": self.uuid,
            "result": self.result,
            "revision": self.revision,
            "content_hash": self.content_hash,
        }
        if self.result == "rejected":
            body.update(code=self.code, message=self.message, errors=self.errors)
        if self.result == "conflict":
            body.update(conflict_id=self.conflict_id, conflict_status=self.conflict_status)
        if self.current is not None:
            body["current"] = self.current
        if self.field_conflicts:
            body["field_conflicts"] = self.field_conflicts
        return body


@dataclass
class BatchOutcome:
    results: list[ChangeResult]
    # Refusals to audit (scope, foreign interview numbers): dicts of record_refusal keywords.
    refusals: list[dict[str, Any]]
    # Field conflicts stored, to audit: dicts of audit keywords.
    field_conflicts: list[dict[str, Any]] = field(default_factory=list)
    # What re-checking the codings of revised records did (surveykit.analysis.anchoring), if any.
    reanchoring: Any = None

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(result.result for result in self.results)
        return {name: counted.get(name, 0) for name in RESULTS}

    def as_json(self) -> dict[str, Any]:
        return {"results": [result.as_json() for result in self.results], "counts": self.counts}


def details(problems: Iterable[Problem]) -> list[dict[str, str]]:
    return [field_error(path, message) for path, message in problems]


def summary(problems: Sequence[Problem]) -> str:
    head = "; ".join(f"{path}: {message}" for path, message in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return head + more


# ---------------------------------------------------------------------------------- representation


def receipt(interview: StoredInterview) -> dict[str, Any]:
    return {"uuid": interview.uuid, "revision": interview.revision, "content_hash": interview.content_hash}


def interview_json(interview: StoredInterview, interviewer: str | None = None) -> dict[str, Any]:
    body = {
        **receipt(interview),
        "record": interview.record,
        "updated_at": interview.updated_at.isoformat(),
    }
    if interviewer is not None:
        body["interviewer"] = interviewer
    return body


def conflict_json(
    conflict: InterviewRevision,
    interview: StoredInterview,
    study_slug: str,
    username: str | None,
) -> dict[str, Any]:
    return {
        "id": conflict.id,
        "uuid": conflict.interview_uuid,
        "study": study_slug,
        "country": interview.country_code,
        "status": "resolved" if conflict.resolved_at is not None else "open",
        "base_revision": conflict.base_revision,
        "content_hash": conflict.content_hash,
        "record": conflict.record,
        "received_at": conflict.received_at.isoformat(),
        "device_id": conflict.device_id,
        "user": username,
        "resolution": conflict.resolution,
        "resolved_at": conflict.resolved_at.isoformat() if conflict.resolved_at else None,
        "resolved_by": conflict.resolved_by,
        "resolution_revision": conflict.resolution_revision,
        "current": interview_json(interview),
    }
