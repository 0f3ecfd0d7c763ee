"""The participant registry: registering the planned sample, updating participants, device blocks.

Plain functions over a Session, called by the HTTP views, the CLI and ``surveykit.sync``.

Every change to a participant appends an entry to the study's change feed (``studies.feed``) and
stores its sequence number in ``participant.change_seq``, so tablets pulling the feed see it. Feed
numbers are taken last, just before the caller commits, to hold the feed's lock briefly; interview
numbers are allocated before that, so the two counters are always locked in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.db import utcnow
from surveykit.instruments.bindings import CONSENT_RECORDED_HOW
from surveykit.participants import ids
from surveykit.participants.importer import AGENCY_MAX, POSITION_MAX, ImportPlan, text_problem
from surveykit.participants.models import OWNABLE_FIELDS, NumberBlock, Participant
from surveykit.studies import feed
from surveykit.studies import services as studies
from surveykit.studies.models import Study

CONSENT_HOW_MAX = 100
MAX_BLOCK_SIZE = 100

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


class ParticipantNotFound(LookupError):
    pass


@dataclass(frozen=True)
class NewParticipant:
    agency: str
    position: str | None = None


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
) -> list[list[Participant]]:
    """Several planned interviews at once, numbered consecutively in the order given."""
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
    numbers = ids.allocate_interview_numbers(session, study.id, activity, country, len(interviews))
    now = utcnow()
    created: list[list[Participant]] = []
    for number, people in zip(numbers, interviews, strict=True):
        rows = [
            Participant(
                study_id=study.id,
                activity=activity,
                country_code=country,
                interview_number=number,
                letter=ids.letter_for(index),
                pid=ids.format_pid(activity, country, number, ids.letter_for(index)),
                agency=person.agency.strip(),
                position=(person.position or "").strip() or None,
                status="planned",
                created_at=now,
                updated_at=now,
                created_by=actor,
            )
            for index, person in enumerate(people)
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
    """Register every interview of a parsed sheet (``importer.parse``) in one transaction."""
    interviews = [
        [NewParticipant(person.agency, person.position) for person in interview]
        for interview in plan.interviews
    ]
    return register_interviews(session, study, country, activity, interviews, actor, progress)


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
    session: Session, device_id: str, study: Study, country: str, activity: str, size: int
) -> NumberBlock:
    """Reserve ``size`` interview numbers for a device to mint IDs from offline."""
    if not 1 <= size <= MAX_BLOCK_SIZE:
        raise RegistryError(f"a block has 1 to {MAX_BLOCK_SIZE} numbers", "size")
    check_scope(session, study, country, activity)
    return ids.reserve_block(session, device_id, study.id, activity, country, size)


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


def describe_participant(participant: Participant, study_slug: str) -> dict[str, Any]:
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
        "consent_date": participant.consent_date.isoformat() if participant.consent_date else None,
        "consent_recorded_how": participant.consent_recorded_how,
        "status": participant.status,
        "created_at": participant.created_at.isoformat(),
        "updated_at": participant.updated_at.isoformat(),
        "change_seq": participant.change_seq,
    }


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
    }


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
