"""Export jobs: a workbook built in the background, watched while it runs and downloaded when done.

One row per job. ``state`` moves ``queued`` → ``running`` → ``done`` or ``failed``; a job whose
process stopped goes back to ``queued`` (``attempts`` counts the starts) or to ``failed``. The row
is the queue: workers of every app process claim queued rows from it, and the process running a
job names itself in ``worker_id`` and keeps ``heartbeat_at`` fresh.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from surveykit.db import Base, UTCDateTime, utcnow

JOB_STATES = ("queued", "running", "done", "failed")
JOB_FORMATS = ("xlsx",)


class ExportJob(Base):
    __tablename__ = "export_jobs"

    # A random UUID: the job's URL is its only name, so it must not be guessable.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(64))
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    study_slug: Mapped[str] = mapped_column(String(64))
    # The study's country code, or ``ALL`` for the study-wide workbook.
    country: Mapped[str] = mapped_column(String(3))
    activity: Mapped[str | None] = mapped_column(String(3), nullable=True)
    # ``?lang=``: the instrument language of prompts and labels (None: each instrument's default).
    language: Mapped[str | None] = mapped_column(String(35), nullable=True)
    format: Mapped[str] = mapped_column(String(8), default="xlsx")
    state: Mapped[str] = mapped_column(String(8), default="queued")
    step: Mapped[str] = mapped_column(String(40), default="queued")
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The file's name inside the jobs folder of the data dir, and what the download sends.
    file_path: Mapped[str | None] = mapped_column(String(200), nullable=True)
    file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    etag: Mapped[str | None] = mapped_column(String(64), nullable=True)
    file_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # ``host:pid:token`` of the process running the job (the token tells a restarted process
    # that reused a pid from the one before it).
    worker_id: Mapped[str | None] = mapped_column(String(120), nullable=True)

    __table_args__ = (
        CheckConstraint("state IN ('queued','running','done','failed')", name="state_known"),
        CheckConstraint("format IN ('xlsx')", name="format_known"),
        Index("ix_export_jobs_state_created_at", "state", "created_at"),
    )
