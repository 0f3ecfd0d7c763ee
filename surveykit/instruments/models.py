"""Instruments and their immutable published versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from surveykit.db import Base, UTCDateTime, utcnow


class Instrument(Base):
    __tablename__ = "instruments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    activity: Mapped[str] = mapped_column(String(3))
    # The study whose grant holders may read it (by slug); NULL: shared with every study.
    study: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # Denormalised from the versions so the tablet's list needs no aggregate query.
    current_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    versions: Mapped[list[InstrumentVersion]] = relationship(
        back_populates="instrument", order_by="InstrumentVersion.version"
    )

    __table_args__ = (CheckConstraint("current_version >= 1", name="current_version_positive"),)

    @property
    def retired(self) -> bool:
        return self.retired_at is not None


class InstrumentVersion(Base):
    __tablename__ = "instrument_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="RESTRICT"))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_by: Mapped[str | None] = mapped_column(String(200), nullable=True)

    instrument: Mapped[Instrument] = relationship(back_populates="versions")

    __table_args__ = (
        UniqueConstraint("instrument_id", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )
