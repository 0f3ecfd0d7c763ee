"""The participant registry: registering the planned sample, updating participants, device blocks.

Plain functions over a Session, called by the HTTP views, the CLI and ``surveykit.sync``.

Every change to a participant appends an entry to the study's change feed (``studies.feed``) and
stores its sequence number in ``participant.change_seq``, so tablets pulling the feed see it. Feed
numbers are taken last, just before the caller commits, to hold the feed's lock briefly; interview
numbers are allocated before that, so the two counters are always locked in the same order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from surveykit.accounts.models import Device
from surveykit.db import utcnow
from surveykit.instruments.bindings import CONSENT_RECORDED_HOW
from surveykit.participants import ids
from surveykit.participants.importer import (
    AGENCY_MAX,
    POSITION_MAX,
    ImportPlan,
    ImportRejected,
    RowError,
    text_problem,
)
from surveykit.participants.models import OWNABLE_FIELDS, InterviewNumberCounter, NumberBlock, Participant
from surveykit.studies import feed
from surveykit.studies import services as studies
from surveykit.studies.models import Study

CONSENT_HOW_MAX = 100
MAX_BLOCK_SIZE = 100
DEFAULT_MAX_UNUSED_NUMBERS = 200
USED_NUMBERS_CHUNK = 200

# planned -> interviewed -> withdrawn; a withdrawn participant keeps the ID, whose number stays a gap.
TRANSITIONS = {
    ("planned", "interviewed"),
    ("planned", "withdrawn"),
    ("interviewed", "withdrawn"),
}
EDITABLE_FIELDS = ("agency", "position", "consent_given", "consent_date", "consent_recorded_how", "status")


class RegistryError(ValueError):
    """A change the registry refuses; ``field`` is the path of the offending input when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidTransition(RegistryError):
    pass


class NumbersExhausted(RegistryError):
    """The study, activity and country have too few interview numbers left; nothing was taken."""


class UnusedNumbersLimit(RegistryError):
    """A reservation would leave the device holding more unused numbers than allowed."""


class ParticipantNotFound(LookupError):
    pass


@dataclass(frozen=True)
class NewParticipant:
    agency: str
    position: str | None = None
    # Only for a known ID being imported; otherwise letters run A, B, ... in order.
    letter: str | None = None


# ---------------------------------------------------------------------------------------- lookups


def check_scope(session: Session, study: Study, country: str, activity: str) -> None:
    """Raise ``studies.CountryNotFound`` / ``ActivityNotFound`` unless the study has both."""
    studies.get_country(session, study, country)
    studies.get_activity(session, study, activity)


def get_participant(session: Session, study: Study, pid: str, *, for_update: bool = False) -> Participant:
    statement = select(Participant).where(Participant.study_id == study.id, Participant.pid == pid)
    if for_update:
        statement = statement.with_for_update()
    participant = session.scalar(statement)
    if participant is None:
        raise ParticipantNotFound(f"{study.slug} has no participant {pid!r}")
    return participant


def list_participants(
    session: Session,
    study: Study,
    country: str,
    activity: str | None = None,
    status: str | None = None,
) -> list[Participant]:
    """A country's participants in ID order (activity, interview number, letter)."""
    statement = (
        select(Participant)
        .where(Participant.study_id == study.id, Participant.country_code == country)
        .order_by(Participant.activity, Participant.interview_number, Participant.letter)
    )
    if activity is not None:
        statement = statement.where(Participant.activity == activity)
    if status is not None:
        statement = statement.where(Participant.status == status)
    return list(session.scalars(statement))


DEFAULT_LIST_PAGE = 100
MAX_LIST_PAGE = 1000


@dataclass(frozen=True)
class ParticipantFilter:
    """What a registry search narrows to; text filters match anywhere, ignoring case."""

    activity: str | None = None
    status: str | None = None
    # True: withdrawn only; False: all but the withdrawn.
    withdrawn: bool | None = None
    id_prefix: str | None = None
    agency: str | None = None
    position: str | None = None


@dataclass(frozen=True)
class ParticipantPage:
    participants: list[Participant]
    # The ID to pass as ``after`` for the next page, when more participants match.
    next_after: str | None


def participant_page(
    session: Session,
    study: Study,
    country: str,
    filters: ParticipantFilter = ParticipantFilter(),
    after: str | None = None,
    limit: int = DEFAULT_LIST_PAGE,
) -> ParticipantPage:
    """One page of a country's participants in ID order (activity, number, letter), after the ID
    ``after`` (keyset paging: one indexed range read per page however deep, and participants
    registered meanwhile never shift a page)."""
    p = Participant
    limit = min(max(limit, 1), MAX_LIST_PAGE)
    statement = (
        select(p)
        .where(p.study_id == study.id, p.country_code == country)
        .order_by(p.activity, p.interview_number, p.letter)
        .limit(limit + 1)
    )
    if filters.activity is not None:
        statement = statement.where(p.activity == filters.activity)
    if filters.status is not None:
        statement = statement.where(p.status == filters.status)
    if filters.withdrawn is not None:
        statement = statement.where(
            (p.status == "withdrawn") if filters.withdrawn else (p.status != "withdrawn")
        )
    if filters.id_prefix:
        statement = statement.where(p.pid.startswith(filters.id_prefix.upper(), autoescape=True))
    if filters.agency:
        statement = statement.where(p.agency.icontains(filters.agency, autoescape=True))
    if filters.position:
        statement = statement.where(p.position.icontains(filters.position, autoescape=True))
    if after is not None:
        last = ids.parse_pid(after)
        statement = statement.where(
            tuple_(p.activity, p.interview_number, p.letter)
            > tuple_(last.activity, last.interview_number, last.letter)
        )
    rows = list(session.scalars(statement))
    if len(rows) > limit:
        return ParticipantPage(rows[:limit], rows[limit - 1].pid)
    return ParticipantPage(rows, None)


def interview_participants(
    session: Session, study_id: int, activity: str, country: str, number: int, *, for_update: bool = False
) -> list[Participant]:
    statement = (
        select(Participant)
        .where(
            Participant.study_id == study_id,
            Participant.activity == activity,
            Participant.country_code == country,
            Participant.interview_number == number,
        )
        .order_by(Participant.letter)
    )
    if for_update:
        statement = statement.with_for_update()
    return list(session.scalars(statement))


def number_is_registered(session: Session, study_id: int, activity: str, country: str, number: int) -> bool:
    """Whether the server registered participants under this interview number (a planned interview)."""
    return bool(interview_participants(session, study_id, activity, country, number))


def mint_check(
    session: Session, device_id: str, study_id: int, activity: str, country: str, number: int
) -> bool:
    """Whether ``device_id`` may have minted this interview number offline: it lies in one of the
    device's blocks for this study, activity and country."""
    return ids.device_owns_number(session, device_id, study_id, activity, country, number)


# ------------------------------------------------------------------------------------ registration


def register_interview(
    session: Session,
    study: Study,
    country: str,
    activity: str,
    participants: Sequence[NewParticipant],
    actor: str | None,
) -> list[Participant]:
    """A planned interview: the next interview number, participants lettered A, B, ... in order."""
    return register_interviews(session, study, country, activity, [participants], actor)[0]


def register_interviews(
    session: Session,
    study: Study,
    country: str,
    activity: str,
    interviews: Sequence[Sequence[NewParticipant]],
    actor: str | None,
    progress: Callable[[int], None] | None = None,
    known_numbers: Sequence[int | None] | None = None,
) -> list[list[Participant]]:
    """Several planned interviews at once, numbered consecutively in the order given.

    ``known_numbers`` (parallel to ``interviews``) keeps the number of an interview imported with its
    existing IDs; the caller has checked and claimed those (``import_plan``). The others are numbered
    from the counter.
    """
    check_scope(session, study, country, activity)
    if not interviews:
        return []
    for i, people in enumerate(interviews):
        if not people:
            raise RegistryError("an interview has at least one participant", f"interviews[{i}]")
        if len(people) > len(ids.LETTERS):
            raise RegistryError("an interview has at most 26 participants (A to Z)", f"interviews[{i}]")
        for j, person in enumerate(people):
            _check_text(person.agency, AGENCY_MAX, f"interviews[{i}][{j}].agency", required=True)
            _check_text(person.position, POSITION_MAX, f"interviews[{i}][{j}].position")
    given = list(known_numbers) if known_numbers is not None else [None] * len(interviews)
    fresh = sum(1 for number in given if number is None)
    try:
        allocated = iter(
            ids.allocate_interview_numbers(session, study.id, activity, country, fresh) if fresh else ()
        )
    except ids.NumbersExhausted as exc:
        raise NumbersExhausted(str(exc), "interviews") from exc
    numbers = [number if number is not None else next(allocated) for number in given]
    now = utcnow()
    created: list[list[Participant]] = []
    for number, people in zip(numbers, interviews, strict=True):
        letters = [person.letter or ids.letter_for(index) for index, person in enumerate(people)]
        rows = [
            Participant(
                study_id=study.id,
                activity=activity,
                country_code=country,
                interview_number=number,
                letter=letter,
                pid=ids.format_pid(activity, country, number, letter),
                agency=person.agency.strip(),
                position=(person.position or "").strip() or None,
                status="planned",
                created_at=now,
                updated_at=now,
                created_by=actor,
            )
            for letter, person in zip(letters, people, strict=True)
        ]
        session.add_all(rows)
        created.append(rows)
        if progress is not None:
            progress(1)
    session.flush()
    publish(session, study.id, [person for rows in created for person in rows])
    return created


def import_plan(
    session: Session,
    study: Study,
    country: str,
    activity: str,
    plan: ImportPlan,
    actor: str | None,
    progress: Callable[[int], None] | None = None,
) -> list[list[Participant]]:
    """Register every interview of a parsed sheet (``importer.parse``) in one transaction.

    Interviews given with their existing IDs keep their numbers and letters: the counter row is
    locked first, so a concurrent import or allocation waits; a number already registered, reserved
    in a device's block or otherwise handed out by the counter refuses the whole import
    (``ImportRejected``, a problem per row); and the counter then continues after the largest number
    imported. The other interviews are numbered after that.
    """
    check_scope(session, study, country, activity)
    known = plan.known_numbers
    if known:
        next_number = ids.lock_counter(session, study.id, activity, country)
        problems = known_number_problems(session, study, country, activity, plan, next_number)
        if problems:
            raise ImportRejected(problems)
        ids.continue_counter_after(session, study.id, activity, country, max(known))
    interviews = [
        [NewParticipant(person.agency, person.position, person.letter) for person in interview]
        for interview in plan.interviews
    ]
    numbers = [interview[0].number for interview in plan.interviews]
    return register_interviews(session, study, country, activity, interviews, actor, progress, numbers)


def check_import(session: Session, study: Study, country: str, activity: str, plan: ImportPlan) -> None:
    """What ``import_plan`` would refuse, checked without storing or locking anything (a dry run)."""
    check_scope(session, study, country, activity)
    if not plan.known_numbers:
        return
    next_number = session.scalar(
        select(InterviewNumberCounter.next_number).where(
            InterviewNumberCounter.study_id == study.id,
            InterviewNumberCounter.activity == activity,
            InterviewNumberCounter.country_code == country,
        )
    )
    problems = known_number_problems(session, study, country, activity, plan, next_number or 1)
    if problems:
        raise ImportRejected(problems)


def known_number_problems(
    session: Session, study: Study, country: str, activity: str, plan: ImportPlan, next_number: int
) -> list[RowError]:
    """A problem for each row whose known interview number is taken: registered, in a block, or
    below the counter (handed out before, perhaps to a block since released: never reused)."""
    numbers = plan.known_numbers
    if not numbers:
        return []
    registered = set(
        session.scalars(
            select(Participant.interview_number)
            .where(
                Participant.study_id == study.id,
                Participant.activity == activity,
                Participant.country_code == country,
                Participant.interview_number.in_(numbers),
            )
            .distinct()
        )
    )
    blocks = session.execute(
        select(NumberBlock.first_number, NumberBlock.last_number).where(
            NumberBlock.study_id == study.id,
            NumberBlock.activity == activity,
            NumberBlock.country_code == country,
            NumberBlock.last_number >= min(numbers),
            NumberBlock.first_number <= max(numbers),
        )
    ).all()
    problems: list[RowError] = []
    for interview in plan.interviews:
        number = interview[0].number
        if number is None:
            continue
        label = f"{activity}-{country}-{number:02d}"
        if number in registered:
            message = f"interview {label} is already in the registry; an interview number is never reused"
        elif any(first <= number <= last for first, last in blocks):
            message = f"interview number {number} is reserved in a tablet's number block"
        elif number < next_number:
            message = (
                f"interview number {number} was already handed out (the next free number is "
                f"{next_number}); an interview number is never reused"
            )
        else:
            continue
        problems += [RowError(person.row, "id", message) for person in interview]
    return problems


# ----------------------------------------------------------------------------------------- updates


def update_participant(session: Session, participant: Participant, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply ``changes`` (a subset of ``EDITABLE_FIELDS``); returns ``{field: [old, new]}`` of what differed.

    Lock the row first (``get_participant(..., for_update=True)``) when concurrent edits are possible.
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise RegistryError(f"not an editable field: {', '.join(sorted(unknown))}", sorted(unknown)[0])
    wanted = dict(changes)
    if "agency" in wanted:
        wanted["agency"] = _check_text(wanted["agency"], AGENCY_MAX, "agency", required=True)
    if "position" in wanted:
        wanted["position"] = _check_text(wanted["position"], POSITION_MAX, "position")
    if "consent_recorded_how" in wanted:
        how = _check_text(wanted["consent_recorded_how"], CONSENT_HOW_MAX, "consent_recorded_how")
        if how is not None and how not in CONSENT_RECORDED_HOW:
            codes = ", ".join(CONSENT_RECORDED_HOW)
            raise RegistryError(f"consent_recorded_how must be one of {codes}", "consent_recorded_how")
        wanted["consent_recorded_how"] = how
    if "consent_given" in wanted and wanted["consent_given"] not in (True, False, None):
        raise RegistryError("consent_given must be true, false or null", "consent_given")
    if "consent_date" in wanted and not (
        wanted["consent_date"] is None or isinstance(wanted["consent_date"], date)
    ):
        raise RegistryError("consent_date must be a date", "consent_date")
    status = wanted.get("status", participant.status)
    if status != participant.status and (participant.status, status) not in TRANSITIONS:
        raise InvalidTransition(
            f"{participant.pid} is {participant.status}; it cannot become {status} "
            "(planned -> interviewed -> withdrawn)",
            "status",
        )
    changed = {
        field: [_jsonable(getattr(participant, field)), _jsonable(value)]
        for field, value in wanted.items()
        if getattr(participant, field) != value
    }
    if not changed:
        return {}
    for field in changed:
        setattr(participant, field, wanted[field])
    # The coordinator now owns what it changed: a push that has not seen it cannot undo it.
    owned = set((participant.coordinator_fields or "").split(",")) | set(changed)
    participant.coordinator_fields = ",".join(name for name in OWNABLE_FIELDS if name in owned)
    participant.updated_at = utcnow()
    session.flush()
    publish(session, participant.study_id, [participant])
    return changed


def publish(session: Session, study_id: int, participants: Iterable[Participant]) -> None:
    """Append the participants to the study's change feed and record their sequence numbers."""
    participants = list(participants)
    if not participants:
        return
    numbers = feed.append_changes(
        session, study_id, [(person.country_code, "participant", person.pid) for person in participants]
    )
    for person, seq in zip(participants, numbers, strict=True):
        person.change_seq = seq
    session.flush()


# ------------------------------------------------------------------------------------ number blocks


def reserve_block(
    session: Session,
    device_id: str,
    study: Study,
    country: str,
    activity: str,
    size: int,
    max_unused: int = DEFAULT_MAX_UNUSED_NUMBERS,
) -> NumberBlock:
    """Reserve ``size`` interview numbers for a device to mint IDs from offline.

    Refused (``UnusedNumbersLimit``) when the device would then hold more than ``max_unused``
    unused numbers over all its blocks, and (``NumbersExhausted``) past the largest number.
    """
    if not 1 <= size <= MAX_BLOCK_SIZE:
        raise RegistryError(f"a block has 1 to {MAX_BLOCK_SIZE} numbers", "size")
    check_scope(session, study, country, activity)
    # One reservation of a device at a time (PostgreSQL; SQLite has one writer anyway), so two
    # parallel requests cannot both pass the cap.
    session.execute(select(Device.id).where(Device.id == device_id).with_for_update())
    held = unused_number_count(session, device_id)
    if held + size > max_unused:
        raise UnusedNumbersLimit(
            f"this device already holds {held} unused interview number(s); {size} more would pass "
            f"the limit of {max_unused}: use the numbers it has, or ask a coordinator to release them",
            "size",
        )
    try:
        return ids.reserve_block(session, device_id, study.id, activity, country, size)
    except ids.NumbersExhausted as exc:
        raise NumbersExhausted(str(exc), "size") from exc


def used_numbers(session: Session, blocks: Sequence[NumberBlock]) -> dict[int, set[int]]:
    """The numbers of each block (by id) with participants registered under them. A stored
    interview record always has its participants in the registry (sync registers them in the same
    transaction), so these are the recorded numbers too. One query per 200 blocks."""
    used: dict[int, set[int]] = {block.id: set() for block in blocks}
    # Each number found is placed in its block by bisection over plain tuples: a device that has
    # recorded thousands of interviews holds many blocks, and comparing every row with every block
    # (through ORM attributes) cost more than the query.
    spans: dict[tuple[int, str, str], list[tuple[int, int, int]]] = {}
    for block in blocks:
        key = (block.study_id, block.activity, block.country_code)
        spans.setdefault(key, []).append((block.first_number, block.last_number, block.id))
    starts: dict[tuple[int, str, str], list[int]] = {}
    for key, key_spans in spans.items():
        key_spans.sort()
        starts[key] = [first for first, _last, _id in key_spans]
    p = Participant
    # In chunks: SQLite refuses expressions nested deeper than 1,000 (a long OR chain is one).
    for start in range(0, len(blocks), USED_NUMBERS_CHUNK):
        chunk = blocks[start : start + USED_NUMBERS_CHUNK]
        ranges = [
            and_(
                p.study_id == block.study_id,
                p.activity == block.activity,
                p.country_code == block.country_code,
                p.interview_number.between(block.first_number, block.last_number),
            )
            for block in chunk
        ]
        rows = session.execute(
            select(p.study_id, p.activity, p.country_code, p.interview_number).where(or_(*ranges)).distinct()
        )
        for study_id, activity, country, number in rows:
            key = (study_id, activity, country)
            # Blocks never share a number, so at most one span of the key holds it.
            index = bisect_right(starts[key], number) - 1
            if index >= 0:
                _first, last, block_id = spans[key][index]
                if number <= last:
                    used[block_id].add(number)
    return used


def unused_number_count(session: Session, device_id: str) -> int:
    """How many numbers of the device's open blocks are neither recorded nor registered, counted in
    the database (a device that has recorded thousands of interviews holds as many used numbers)."""
    b, p = NumberBlock, Participant
    open_blocks = and_(b.device_id == device_id, b.released_at.is_(None))
    reserved = session.scalar(select(func.sum(b.last_number - b.first_number + 1)).where(open_blocks)) or 0
    used_numbers_of_blocks = (
        select(p.study_id, p.activity, p.country_code, p.interview_number)
        .join(
            b,
            and_(
                p.study_id == b.study_id,
                p.activity == b.activity,
                p.country_code == b.country_code,
                p.interview_number.between(b.first_number, b.last_number),
            ),
        )
        .where(open_blocks)
        .distinct()
        .subquery()
    )
    used = session.scalar(select(func.count()).select_from(used_numbers_of_blocks)) or 0
    return int(reserved) - int(used)


@dataclass(frozen=True)
class Release:
    """What releasing a device's blocks did: the blocks released and the numbers that became gaps."""

    blocks: list[NumberBlock]
    gaps: list[tuple[NumberBlock, list[int]]]

    @property
    def released_numbers(self) -> int:
        return sum(len(numbers) for _block, numbers in self.gaps)


def release_blocks(
    session: Session,
    device_id: str,
    study: Study,
    country: str,
    activity: str | None,
    actor: str | None,
) -> Release:
    """Release the device's open blocks of this study and country (and activity, if given).

    The device mints nothing more from them: sync refuses a new record numbered from a released
    block unless the number was registered before (used numbers stay usable by their records).
    The unused numbers become gaps for good; numbers are never reused.
    """
    now = utcnow()
    conditions = [
        NumberBlock.device_id == device_id,
        NumberBlock.study_id == study.id,
        NumberBlock.country_code == country,
        NumberBlock.released_at.is_(None),
    ]
    if activity is not None:
        conditions.append(NumberBlock.activity == activity)
    # Marking first takes the blocks' row locks: a push minting from them has committed by then (and
    # is counted as used below), or waits and then sees the blocks released.
    released_ids = list(
        session.scalars(
            update(NumberBlock)
            .where(*conditions)
            .values(released_at=now, released_by=actor)
            .returning(NumberBlock.id)
        )
    )
    if not released_ids:
        return Release([], [])
    blocks = list(
        session.scalars(
            select(NumberBlock)
            .where(NumberBlock.id.in_(released_ids))
            .order_by(NumberBlock.id)
            .execution_options(populate_existing=True)
        )
    )
    used = used_numbers(session, blocks)
    gaps = [
        (block, [n for n in range(block.first_number, block.last_number + 1) if n not in used[block.id]])
        for block in blocks
    ]
    return Release(blocks, gaps)


def country_blocks(
    session: Session,
    study: Study,
    country: str,
    device_id: str | None = None,
    activity: str | None = None,
) -> list[tuple[NumberBlock, int, int]]:
    """The blocks devices hold in this study and country, oldest first, each with its used and
    unused counts (unused: 0 once released)."""
    statement = (
        select(NumberBlock)
        .where(NumberBlock.study_id == study.id, NumberBlock.country_code == country)
        .order_by(NumberBlock.id)
    )
    if device_id is not None:
        statement = statement.where(NumberBlock.device_id == device_id)
    if activity is not None:
        statement = statement.where(NumberBlock.activity == activity)
    blocks = list(session.scalars(statement))
    used = used_numbers(session, blocks)
    return [
        (
            block,
            len(used[block.id]),
            0
            if block.released_at is not None
            else block.last_number - block.first_number + 1 - len(used[block.id]),
        )
        for block in blocks
    ]


def list_blocks(
    session: Session,
    device_id: str,
    study: str | None = None,
    country: str | None = None,
    activity: str | None = None,
) -> list[tuple[NumberBlock, str]]:
    """The device's blocks with their study slugs, oldest first."""
    statement = (
        select(NumberBlock, Study.slug)
        .join(Study, Study.id == NumberBlock.study_id)
        .where(NumberBlock.device_id == device_id)
        .order_by(NumberBlock.id)
    )
    if study is not None:
        statement = statement.where(Study.slug == study)
    if country is not None:
        statement = statement.where(NumberBlock.country_code == country)
    if activity is not None:
        statement = statement.where(NumberBlock.activity == activity)
    return [(block, slug) for block, slug in session.execute(statement)]


# ---------------------------------------------------------------------------------- representation


def describe_participant(
    participant: Participant, study_slug: str, *, text_dates: bool = True
) -> dict[str, Any]:
    """A participant as the API sends it. ``text_dates=False`` leaves dates and times as objects,
    for a page serialised by orjson, which writes them as ``isoformat`` does, several times faster."""
    when = _isoformat if text_dates else _as_is
    return {
        "pid": participant.pid,
        "study": study_slug,
        "activity": participant.activity,
        "country": participant.country_code,
        "interview_number": participant.interview_number,
        "letter": participant.letter,
        "agency": participant.agency,
        "position": participant.position,
        "consent_given": participant.consent_given,
        "consent_date": when(participant.consent_date) if participant.consent_date else None,
        "consent_recorded_how": participant.consent_recorded_how,
        "status": participant.status,
        "created_at": when(participant.created_at),
        "updated_at": when(participant.updated_at),
        "change_seq": participant.change_seq,
    }


def _isoformat(value: date | datetime) -> str:
    return value.isoformat()


def _as_is(value: date | datetime) -> date | datetime:
    return value


def describe_block(block: NumberBlock, study_slug: str) -> dict[str, Any]:
    return {
        "id": block.id,
        "study": study_slug,
        "country": block.country_code,
        "activity": block.activity,
        "first_number": block.first_number,
        "last_number": block.last_number,
        "size": block.last_number - block.first_number + 1,
        "first_id": ids.format_pid(block.activity, block.country_code, block.first_number, "A"),
        "created_at": block.created_at.isoformat(),
        "released_at": block.released_at.isoformat() if block.released_at else None,
    }


def describe_held_block(block: NumberBlock, study_slug: str, used: int, unused: int) -> dict[str, Any]:
    """A block as coordinators see it: which device holds it and how much of it is used."""
    return {**describe_block(block, study_slug), "device_id": block.device_id, "used": used, "unused": unused}


# --------------------------------------------------------------------------------------- helpers


def _check_text(value: Any, max_length: int, field: str, *, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RegistryError(f"{field} is required", field)
        return None
    if not isinstance(value, str):
        raise RegistryError(f"{field} must be text", field)
    value = value.strip()
    if message := text_problem(value, max_length):
        raise RegistryError(f"{field} {message}", field)
    return value


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value
