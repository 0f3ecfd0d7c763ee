"""What the push's writer holds in memory while it decides a batch: the rows it read, as it changes
them, until they are written at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from surveykit.sync.receipts import ChangeResult
from surveykit.sync.validation import RecordKey
from surveykit.sync.write_statements import INTERVIEW_COLUMNS

# (study id, activity, country, interview number)
InterviewKey = tuple[int, str, str, int]


@dataclass
class StudyInfo:
    id: int
    slug: str
    countries: set[str]
    activities: set[str]


@dataclass(slots=True)
class InterviewState:
    """An interview row as the writer holds it while the batch is decided (written at the end)."""

    uuid: str
    study_id: int
    country_code: str
    activity: str
    interview_number: int
    revision: int
    content_hash: str
    record: dict[str, Any]
    status: str
    instrument_slug: str
    instrument_version: int
    interviewer_id: int
    device_id: str | None
    created_at: datetime
    updated_at: datetime

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in INTERVIEW_COLUMNS}


@dataclass(slots=True)
class RevisionKey:
    """What the writer knows of a stored revision with a given (uuid, base_revision, content_hash)."""

    kind: str
    revision: int | None
    id: int | None
    content_hash: str
    resolved_at: datetime | None = None
    # Answers naming this conflict before its row is inserted (its id is filled in afterwards).
    waiting: list[ChangeResult] = field(default_factory=list)


@dataclass(slots=True)
class PersonState:
    """A participant row of an interview in the batch (``row``: a new one's columns until stored)."""

    id: int | None
    pid: str
    status: str
    values: dict[str, Any]
    row: dict[str, Any] | None = None  # a new participant's full row
    change_seq: int | None = None  # its new feed position, when the batch puts it in the feed
    # Fields a coordinator changed that no pushed record has carried since (see field_ownership).
    coordinator_fields: set[str] = field(default_factory=set)
    # Open field conflicts: field -> {incoming value as JSON: conflict id}
    open_conflicts: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(slots=True)
class Pending:
    """A change that passed the shape and scope checks and needs the database to be decided."""

    index: int
    uuid: str
    base: int
    record: dict[str, Any]
    digest: str | None
    key: RecordKey | None


@dataclass(slots=True)
class OutOfScope:
    index: int
    uuid: str | None
    digest: str | None
    study: str
    country: str
