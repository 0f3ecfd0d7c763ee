"""Each study's change feed: a gap-free, commit-ordered sequence that tablets pull from.

A sequence number is taken from the study's counter row with one UPDATE in the writing transaction.
The row stays locked until that transaction commits, so numbers become visible in the order they
were handed out: a client that has read up to N can never later find a committed N-1 it skipped
(which a database sequence or a timestamp allows). Writers take the numbers as late as possible,
just before committing, to hold the lock briefly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, Row, String, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from surveykit.bulk_insert import insert_rows
from surveykit.db import Base, UTCDateTime, utcnow

CHANGE_KINDS = ("participant", "interview", "conflict", "instrument")


class StudyChangeCounter(Base):
    __tablename__ = "study_change_counters"

    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="RESTRICT"), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class ChangeLogEntry(Base):
    __tablename__ = "change_log"

    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="RESTRICT"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL country: visible to every grant holder of the study (e.g. an instrument update).
    country_code: Mapped[str | None] = mapped_column(String(2), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_change_log_study_id_country_code_seq", "study_id", "country_code", "seq"),)


_counters = StudyChangeCounter.__table__
# Core statements (no ORM bookkeeping): the study's counter stays locked from the first until commit.
_TAKE_NUMBERS = (
    update(_counters)
    .where(_counters.c.study_id == bindparam("b_study_id"))
    .values(value=_counters.c.value + bindparam("b_count", type_=Integer))
    .returning(_counters.c.value)
)


def take_sequence_numbers(session: Session, study_id: int, count: int) -> range:
    """Reserve ``count`` consecutive feed numbers; the study's writers queue here until commit."""
    for _attempt in range(2):
        top = session.execute(_TAKE_NUMBERS, {"b_study_id": study_id, "b_count": count}).scalar_one_or_none()
        if top is not None:
            return range(top - count + 1, top + 1)
        try:
            with session.begin_nested():
                session.execute(insert(StudyChangeCounter).values(study_id=study_id, value=0))
        except IntegrityError:
            pass
    raise RuntimeError("could not take a change-feed sequence number")


def append_changes(
    session: Session, study_id: int, changes: Sequence[tuple[str | None, str, str]]
) -> list[int]:
    """Append ``(country_code, kind, key)`` entries; returns their sequence numbers in order."""
    if not changes:
        return []
    numbers = list(take_sequence_numbers(session, study_id, len(changes)))
    now = utcnow()
    insert_rows(
        session.connection(),
        ChangeLogEntry.__table__,
        [
            {"study_id": study_id, "seq": seq, "country_code": country, "kind": kind, "key": key, "at": now}
            for seq, (country, kind, key) in zip(numbers, changes, strict=True)
        ],
    )
    return numbers


def read_changes(
    session: Session, study_id: int, countries: Sequence[str] | None, cursor: int, limit: int
) -> list[Row[Any]]:
    """Entries after ``cursor`` in the given countries (None: all) plus study-wide ones, oldest first:
    rows with the columns of ``change_log`` as attributes (a page is read, never changed)."""
    log = ChangeLogEntry.__table__
    statement = (
        select(log.c.seq, log.c.country_code, log.c.kind, log.c.key, log.c.at)
        .where(log.c.study_id == study_id, log.c.seq > cursor)
        .order_by(log.c.seq)
        .limit(limit)
    )
    if countries is not None:
        statement = statement.where(log.c.country_code.in_(list(countries)) | log.c.country_code.is_(None))
    return list(session.execute(statement))


def current_sequence(session: Session, study_id: int) -> int:
    value = session.scalar(select(StudyChangeCounter.value).where(StudyChangeCounter.study_id == study_id))
    return value or 0
