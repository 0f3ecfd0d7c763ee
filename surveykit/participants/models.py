"""The participant registry: anonymised IDs, interview-number counters, and devices' number blocks."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from surveykit.db import Base, UTCDateTime, utcnow

PARTICIPANT_STATUSES = ("planned", "interviewed", "withdrawn")
# The participant facts a pushed record also carries; a coordinator's change to one makes it the
# coordinator's until a pushed record carries the same value (``Participant.coordinator_fields``).
OWNABLE_FIELDS = ("agency", "position", "consent_given", "consent_date", "consent_recorded_how")


class InterviewNumberCounter(Base):
    """The next free interview number per study, activity and country; it only ever grows."""

    __tablename__ = "interview_number_counters"

    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="RESTRICT"), primary_key=True)
    activity: Mapped[str] = mapped_column(String(3), primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2), primary_key=True)
    next_number: Mapped[int] = mapped_column(Integer)

    __table_args__ = (CheckConstraint("next_number >= 1", name="next_number_positive"),)


class NumberBlock(Base):
    """Interview numbers reserved for one device, which mints IDs from them while offline.

    A released block (``released_at`` set) mints nothing more: its numbers that were not used by
    then stay gaps for good, and no longer count against the device's cap.
    """

    __tablename__ = "number_blocks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="RESTRICT"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="RESTRICT"))
    activity: Mapped[str] = mapped_column(String(3))
    country_code: Mapped[str] = mapped_column(String(2))
    first_number: Mapped[int] = mapped_column(Integer)
    last_number: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        CheckConstraint("first_number >= 1 AND last_number >= first_number", name="range_valid"),
    )


class Participant(Base):
    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="RESTRICT"))
    activity: Mapped[str] = mapped_column(String(3))
    country_code: Mapped[str] = mapped_column(String(2))
    interview_number: Mapped[int] = mapped_column(Integer)
    letter: Mapped[str] = mapped_column(String(1))
    # The anonymised ID as printed in reports, e.g. RA1-KE-04-B. There is deliberately no name field.
    pid: Mapped[str] = mapped_column(String(20))
    agency: Mapped[str] = mapped_column(String(500))
    position: Mapped[str | None] = mapped_column(String(300), nullable=True)
    consent_given: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    consent_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    consent_recorded_how: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(12), default="planned")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The fields a coordinator changed that no pushed record has carried since (comma-separated):
    # the registry owns them, and a push that disagrees leaves a field conflict instead of a value.
    coordinator_fields: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # Position in the study's change feed of the last change (see surveykit.sync).
    change_seq: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("study_id", "pid"),
        UniqueConstraint("study_id", "activity", "country_code", "interview_number", "letter"),
        CheckConstraint("status IN ('planned','interviewed','withdrawn')", name="status_known"),
        CheckConstraint("interview_number >= 1", name="interview_number_positive"),
        # A country's registry in ID order (keyset pages), covering the dashboard's counts.
        Index(
            "ix_participants_country_order",
            "study_id",
            "country_code",
            "activity",
            "interview_number",
            "letter",
            "status",
        ),
    )
