"""Studies and their countries: the scope every grant, participant and export is bounded by."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from surveykit.db import Base, UTCDateTime, utcnow


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    countries: Mapped[list[Country]] = relationship(back_populates="study", order_by="Country.code")


class Country(Base):
    __tablename__ = "countries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="RESTRICT"))
    # The study's own two-letter code, not necessarily ISO 3166.
    code: Mapped[str] = mapped_column(String(2))
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(200), nullable=True)
    languages: Mapped[list[Any]] = mapped_column(JSON, default=list)

    study: Mapped[Study] = relationship(back_populates="countries")

    __table_args__ = (UniqueConstraint("study_id", "code"),)


class ResearchActivity(Base):
    __tablename__ = "research_activities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="RESTRICT"))
    code: Mapped[str] = mapped_column(String(3))
    name: Mapped[str] = mapped_column(String(300))

    __table_args__ = (
        UniqueConstraint("study_id", "code"),
        CheckConstraint("code IN ('RA1','RA2','RA3','RA4','RA5','RA6','RA7','RA8','RA9')", name="code_known"),
    )
