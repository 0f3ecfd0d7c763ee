"""Interview records as tablets send them, every revision of each, conflicts, and quotes.

- ``interviews``: one row per client UUID, holding the current accepted revision;
- ``interview_revisions``: every accepted revision (numbered 1..n without gaps) and every conflicting
  change (kind ``conflict``, no number), never updated except to mark a conflict resolved;
- ``quotes``: the verbatim quotes of each interview's current revision, as rows of their own;
- ``field_conflicts``: a pushed value of a registry field (a participant's agency, position or
  consent) that was not applied because a coordinator had changed the field meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from surveykit.db import Base, UTCDateTime, utcnow

RECORD_STATUSES = ("draft", "complete")
REVISION_KINDS = ("accepted", "conflict")
RESOLUTIONS = ("keep_current", "take_incoming", "merged")
FIELD_RESOLUTIONS = ("keep_current", "take_incoming")


class Interview(Base):
    __tablename__ = "interviews"

    # The client-generated UUID, lower-case and hyphenated.
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="RESTRICT"))
    country_code: Mapped[str] = mapped_column(String(2))
    activity: Mapped[str] = mapped_column(String(3))
    interview_number: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer)
    # SHA-256 of the canonical JSON of ``record`` (see surveykit.sync.validation.content_hash).
    content_hash: Mapped[str] = mapped_column(String(64))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(8))
    instrument_slug: Mapped[str] = mapped_column(String(64))
    instrument_version: Mapped[int] = mapped_column(Integer)
    # Who created the record (from the token, never from the record).
    interviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    device_id: Mapped[str | None] = mapped_column(
        ForeignKey("devices.id", ondelete="RESTRICT"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        # One record per interview: a second UUID for the same interview number is refused.
        UniqueConstraint("study_id", "activity", "country_code", "interview_number"),
        # Covers the progress dashboard's counts (surveykit.studies.progress).
        Index(
            "ix_interviews_study_country_activity_status", "study_id", "country_code", "activity", "status"
        ),
        CheckConstraint("status IN ('draft','complete')", name="status_known"),
        CheckConstraint("revision >= 1", name="revision_positive"),
    )


class InterviewRevision(Base):
    __tablename__ = "interview_revisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    interview_uuid: Mapped[str] = mapped_column(ForeignKey("interviews.uuid", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(8))
    # The revision number of an accepted revision; NULL for a conflict.
    revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The revision the client based the change on (0: a new record).
    base_revision: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    device_id: Mapped[str | None] = mapped_column(
        ForeignKey("devices.id", ondelete="RESTRICT"), nullable=True
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Conflicts only: how and by whom they were resolved, and the revision current afterwards.
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(16), nullable=True)
    resolution_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        UniqueConstraint("interview_uuid", "revision"),
        # The retry key: the same change (same base, same content) is never stored twice.
        UniqueConstraint("interview_uuid", "base_revision", "content_hash"),
        CheckConstraint("kind IN ('accepted','conflict')", name="kind_known"),
        CheckConstraint(
            "(kind = 'accepted' AND revision IS NOT NULL) OR (kind = 'conflict' AND revision IS NULL)",
            name="revision_matches_kind",
        ),
        CheckConstraint(
            "resolution IS NULL OR resolution IN ('keep_current','take_incoming','merged')",
            name="resolution_known",
        ),
        Index("ix_interview_revisions_kind_resolved_at", "kind", "resolved_at"),
    )


class Quote(Base):
    """A verbatim quote of the current revision of an interview."""

    __tablename__ = "quotes"

    # The client-generated UUID of the quote.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    interview_uuid: Mapped[str] = mapped_column(
        ForeignKey("interviews.uuid", ondelete="RESTRICT"), index=True
    )
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="RESTRICT"))
    country_code: Mapped[str] = mapped_column(String(2))
    revision: Mapped[int] = mapped_column(Integer)
    question_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    # Offsets in Unicode code points into the answer's text, when the quote was taken from it.
    start_offset: Mapped[int | None] = mapped_column(Integer, nullable=True)
    end_offset: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)

    __table_args__ = (Index("ix_quotes_study_id_country_code", "study_id", "country_code"),)


class FieldConflict(Base):
    """A registry field a push wanted to change after a coordinator had changed it: kept, not applied."""

    __tablename__ = "field_conflicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(
        ForeignKey("participants.id", ondelete="RESTRICT"), index=True
    )
    field: Mapped[str] = mapped_column(String(32))
    # Values as JSON (text, true/false, a YYYY-MM-DD date, or null): what the pushed record said,
    # what the record's base revision said (null for a new record), and the registry's value then.
    incoming_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    base_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    registry_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    interview_uuid: Mapped[str] = mapped_column(ForeignKey("interviews.uuid", ondelete="RESTRICT"))
    # The accepted revision that carried the value (the rest of the change was applied).
    revision: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    device_id: Mapped[str | None] = mapped_column(
        ForeignKey("devices.id", ondelete="RESTRICT"), nullable=True
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(16), nullable=True)

    __table_args__ = (
        CheckConstraint(
            "field IN ('agency','position','consent_given','consent_date','consent_recorded_how')",
            name="field_known",
        ),
        CheckConstraint(
            "resolution IS NULL OR resolution IN ('keep_current','take_incoming')", name="resolution_known"
        ),
        Index("ix_field_conflicts_resolved_at", "resolved_at"),
    )
