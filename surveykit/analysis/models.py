"""A study's codebook and the codings analysts apply to interview answers.

- ``codes``: the codebook, a tree per study (``parent_id``); a code is never deleted: it is retired,
  or merged into another code (its codings then point at the other code and remember where they came
  from). ``version`` counts the changes; each change is in the audit log.
- ``codings``: one coded passage of one answer (a quote, or any passage), by one coder. Offsets are
  Unicode code points into the answer's text at ``anchored_revision``. A coding never changes the
  interview record; when a later revision changes the answer, the coding is re-anchored if its text
  is still there, or flagged (``anchor`` ``moved`` or ``vanished``), never dropped.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from surveykit.db import Base, UTCDateTime, utcnow

CODE_STATUSES = ("active", "retired", "merged")
ANCHORS = ("current", "moved", "vanished")


class Code(Base):
    __tablename__ = "codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stable identity across exchanges (REFI-QDA guids), kept when a codebook is re-imported.
    guid: Mapped[str] = mapped_column(String(36), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="RESTRICT"), index=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("codes.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    definition: Mapped[str] = mapped_column(Text, default="")
    colour: Mapped[str] = mapped_column(String(7), default="#808080")
    status: Mapped[str] = mapped_column(String(8), default="active")
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("codes.id", ondelete="RESTRICT"), nullable=True
    )
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("status IN ('active','retired','merged')", name="status_known"),
        CheckConstraint("(status = 'merged') = (merged_into_id IS NOT NULL)", name="merged_names_its_target"),
    )


class Coding(Base):
    __tablename__ = "codings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guid: Mapped[str] = mapped_column(String(36), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="RESTRICT"))
    country_code: Mapped[str] = mapped_column(String(2))
    code_id: Mapped[int] = mapped_column(ForeignKey("codes.id", ondelete="RESTRICT"), index=True)
    # The code the passage was first coded with, when a merge moved it to ``code_id``.
    original_code_id: Mapped[int | None] = mapped_column(
        ForeignKey("codes.id", ondelete="RESTRICT"), nullable=True
    )
    interview_uuid: Mapped[str] = mapped_column(
        ForeignKey("interviews.uuid", ondelete="RESTRICT"), index=True
    )
    question_id: Mapped[str] = mapped_column(String(64))
    # The record's quote id when a quote was coded; None for any other passage.
    quote_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    start_offset: Mapped[int] = mapped_column(Integer)
    end_offset: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    memo: Mapped[str] = mapped_column(Text, default="")
    coder_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    coder: Mapped[str] = mapped_column(String(64))
    anchor: Mapped[str] = mapped_column(String(8), default="current")
    anchored_revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("anchor IN ('current','moved','vanished')", name="anchor_known"),
        CheckConstraint("start_offset >= 0 AND end_offset > start_offset", name="passage_not_empty"),
        Index("ix_codings_study_id_country_code", "study_id", "country_code"),
    )
