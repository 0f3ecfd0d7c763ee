"""Anonymised participant IDs (``RA1-KE-04-B``) and race-free interview-number allocation.

The counter row per study, activity and country is advanced with one UPDATE inside the caller's
transaction. PostgreSQL holds the row lock until commit and SQLite holds its single write lock, so
two requests (or two app processes) can never receive the same number, and once a transaction that
took numbers commits, they are never handed out again (a rolled-back one leaves no trace to reuse).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from surveykit.participants.models import InterviewNumberCounter, NumberBlock

# ASCII digits only (``\d`` also matches other scripts' digits) and no trailing newline (``$`` allows one).
PID_PATTERN = re.compile(r"RA([1-9])-([A-Z]{2})-([0-9]{2,9})-([A-Z])")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# The largest interview number anything accepts: allocation stops here, IDs beyond it do not parse,
# and sync refuses records numbered above it. Five digits are far more than any country needs.
MAX_INTERVIEW_NUMBER = 99_999


# The number blocks of a device (bind ``device_id``) that hold a number from ``lowest`` to
# ``highest``: study id, activity, country, first and last number, and whether it was released. Sync
# reads them once per batch, for the range of the batch's new numbers, and checks each new record's
# number in Python: a device's older blocks are neither read nor locked, so the cost stays the same
# however many blocks the device has reserved over a study. The share lock makes a concurrent release
# of a block in the range wait for the push (or the push see the release), so a number is never
# minted after its block was released.
_blocks = NumberBlock.__table__
DEVICE_BLOCKS = (
    select(
        _blocks.c.study_id,
        _blocks.c.activity,
        _blocks.c.country_code,
        _blocks.c.first_number,
        _blocks.c.last_number,
        _blocks.c.released_at.is_not(None).label("released"),
    )
    .where(
        _blocks.c.device_id == bindparam("device_id"),
        _blocks.c.first_number <= bindparam("highest"),
        _blocks.c.last_number >= bindparam("lowest"),
    )
    .with_for_update(read=True)
)


class InvalidParticipantId(ValueError):
    pass


class InterviewNumberTooLarge(InvalidParticipantId):
    """An ID of the right form whose interview number passes ``MAX_INTERVIEW_NUMBER``."""


class NumbersExhausted(ValueError):
    """Taking the numbers asked for would pass ``MAX_INTERVIEW_NUMBER``; nothing was taken."""


@dataclass(frozen=True, order=True)
class ParticipantId:
    activity: str  # "RA1"
    country: str  # the study's own two-letter code
    interview_number: int
    letter: str

    def __str__(self) -> str:
        return format_pid(self.activity, self.country, self.interview_number, self.letter)


def format_pid(activity: str, country: str, interview_number: int, letter: str) -> str:
    """``RA1-KE-04-B``: the number zero-padded to two digits, three once it passes 99."""
    return f"{activity}-{country}-{interview_number:02d}-{letter}"


def parse_pid(text: str) -> ParticipantId:
    match = PID_PATTERN.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidParticipantId(f"{text!r} is not an ID like RA1-KE-04-B")
    activity, country, number, letter = match.groups()
    value = int(number)
    if value < 1 or number != f"{value:02d}":
        raise InvalidParticipantId(f"{text!r}: the interview number must be 01 or more, without extra zeros")
    if value > MAX_INTERVIEW_NUMBER:
        raise InterviewNumberTooLarge(f"{text!r}: interview numbers end at {MAX_INTERVIEW_NUMBER}")
    return ParticipantId(f"RA{activity}", country, value, letter)


def letter_for(index: int) -> str:
    if not 0 <= index < len(LETTERS):
        raise ValueError("an interview has at most 26 participants")
    return LETTERS[index]


def allocate_interview_numbers(
    session: Session, study_id: int, activity: str, country: str, count: int = 1
) -> range:
    """Reserve ``count`` consecutive interview numbers for this study, activity and country.

    Raises ``NumbersExhausted``, taking nothing, when the last one would pass ``MAX_INTERVIEW_NUMBER``.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    key = (
        (InterviewNumberCounter.study_id == study_id)
        & (InterviewNumberCounter.activity == activity)
        & (InterviewNumberCounter.country_code == country)
    )
    for _attempt in range(3):
        # The bound is part of the UPDATE, so a refused request never moves the counter.
        advanced = session.execute(
            update(InterviewNumberCounter)
            .where(key, InterviewNumberCounter.next_number + count <= MAX_INTERVIEW_NUMBER + 1)
            .values(next_number=InterviewNumberCounter.next_number + count)
            .returning(InterviewNumberCounter.next_number)
        ).scalar_one_or_none()
        if advanced is not None:
            return range(advanced - count, advanced)
        next_free = session.scalar(select(InterviewNumberCounter.next_number).where(key))
        if next_free is not None and next_free + count <= MAX_INTERVIEW_NUMBER + 1:
            # Another process created the counter after the UPDATE looked (PostgreSQL's read
            # committed shows it to this statement, not to the one before): take numbers from it.
            continue
        if next_free is not None or count > MAX_INTERVIEW_NUMBER:
            left = MAX_INTERVIEW_NUMBER + 1 - (next_free or 1)
            raise NumbersExhausted(
                f"{activity} in {country} has {max(left, 0)} interview number(s) left "
                f"(numbers end at {MAX_INTERVIEW_NUMBER}); {count} were asked for"
            )
        # First allocation for this key: create the counter. A concurrent first allocation may win
        # the insert; then the savepoint rolls back and the UPDATE above takes the row's lock.
        try:
            with session.begin_nested():
                session.execute(
                    insert(InterviewNumberCounter).values(
                        study_id=study_id, activity=activity, country_code=country, next_number=1
                    )
                )
        except IntegrityError:
            pass
    raise RuntimeError("could not allocate an interview number")


def reserve_block(
    session: Session, device_id: str, study_id: int, activity: str, country: str, size: int
) -> NumberBlock:
    numbers = allocate_interview_numbers(session, study_id, activity, country, size)
    block = NumberBlock(
        device_id=device_id,
        study_id=study_id,
        activity=activity,
        country_code=country,
        first_number=numbers.start,
        last_number=numbers.stop - 1,
    )
    session.add(block)
    session.flush()
    return block


def device_owns_number(
    session: Session, device_id: str, study_id: int, activity: str, country: str, number: int
) -> bool:
    return (
        session.scalar(
            select(NumberBlock.id).where(
                NumberBlock.device_id == device_id,
                NumberBlock.study_id == study_id,
                NumberBlock.activity == activity,
                NumberBlock.country_code == country,
                NumberBlock.first_number <= number,
                NumberBlock.last_number >= number,
                NumberBlock.released_at.is_(None),
            )
        )
        is not None
    )


def lock_counter(session: Session, study_id: int, activity: str, country: str) -> int:
    """Lock this study's, activity's and country's counter row until commit; its ``next_number``.

    Taken before an import with known numbers checks them, so two such imports (or an import and an
    allocation) run one after the other: the second sees what the first stored. The row is created
    when missing, as in ``allocate_interview_numbers``.
    """
    key = (
        (InterviewNumberCounter.study_id == study_id)
        & (InterviewNumberCounter.activity == activity)
        & (InterviewNumberCounter.country_code == country)
    )
    for _attempt in range(2):
        current = session.execute(
            select(InterviewNumberCounter.next_number).where(key).with_for_update()
        ).scalar_one_or_none()
        if current is not None:
            return current
        try:
            with session.begin_nested():
                session.execute(
                    insert(InterviewNumberCounter).values(
                        study_id=study_id, activity=activity, country_code=country, next_number=1
                    )
                )
        except IntegrityError:
            pass
    raise RuntimeError("could not lock the interview-number counter")


def continue_counter_after(session: Session, study_id: int, activity: str, country: str, number: int) -> None:
    """Make the (locked) counter hand out numbers after ``number`` from now on; it never goes back."""
    session.execute(
        update(InterviewNumberCounter)
        .where(
            InterviewNumberCounter.study_id == study_id,
            InterviewNumberCounter.activity == activity,
            InterviewNumberCounter.country_code == country,
            InterviewNumberCounter.next_number <= number,
        )
        .values(next_number=number + 1)
    )
