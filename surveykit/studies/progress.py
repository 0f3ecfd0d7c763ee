"""Fieldwork progress of a study, country by country: what the dashboard and its API show.

A handful of grouped queries answer the whole study (or the countries asked for), however many
countries it has: the statement count must not grow with them, so nothing here loops over countries
to query.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, distinct, func, select, true
from sqlalchemy.orm import Session

from surveykit.accounts.models import Device, User
from surveykit.db import utcnow
from surveykit.participants.models import NumberBlock, Participant
from surveykit.studies.models import Country, ResearchActivity
from surveykit.studies.services import get_study
from surveykit.sync.models import FieldConflict, Interview, InterviewRevision


@dataclass
class ActivityProgress:
    activity: str
    # Interviews in the registry (distinct interview numbers with a participant not withdrawn).
    planned: int = 0
    # Interview records synced, by their status.
    drafts: int = 0
    complete: int = 0
    # Participants withdrawn.
    withdrawn: int = 0


@dataclass
class TabletProgress:
    device_id: str
    label: str
    owner: str
    # When the tablet last reached the server (any request of its session).
    last_sync_at: datetime | None
    # Unused numbers in its blocks of this country that are not released.
    numbers_left: int
    revoked: bool


@dataclass
class CountryProgress:
    code: str
    name: str
    activities: list[ActivityProgress] = field(default_factory=list)
    withdrawn: int = 0
    # Record conflicts and field conflicts not resolved yet.
    open_conflicts: int = 0
    tablets: list[TabletProgress] = field(default_factory=list)


@dataclass
class StudyProgress:
    study: str
    generated_at: datetime
    countries: list[CountryProgress]

    def to_json(self) -> dict[str, Any]:
        def convert(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {key: convert(item) for key, item in value.items()}
            if isinstance(value, list):
                return [convert(item) for item in value]
            return value

        return convert(asdict(self))


def study_progress(session: Session, study_slug: str, countries: list[str] | None) -> StudyProgress:
    """Progress of ``study_slug`` in ``countries`` (None: all of its countries), in code order.

    Raises ``StudyNotFound``. Countries the study does not have are left out.
    """
    study = get_study(session, study_slug)

    def in_countries(column: Any) -> Any:
        return column.in_(countries) if countries is not None else true()

    country_rows = session.execute(
        select(Country.code, Country.name)
        .where(Country.study_id == study.id, in_countries(Country.code))
        .order_by(Country.code)
    ).all()
    activity_codes = list(
        session.scalars(
            select(ResearchActivity.code)
            .where(ResearchActivity.study_id == study.id)
            .order_by(ResearchActivity.code)
        )
    )
    by_code = {
        code: CountryProgress(code, name, [ActivityProgress(activity) for activity in activity_codes])
        for code, name in country_rows
    }
    if not by_code:
        return StudyProgress(study.slug, utcnow(), [])

    def activity(code: str, activity_code: str) -> ActivityProgress:
        country = by_code[code]
        for entry in country.activities:
            if entry.activity == activity_code:
                return entry
        # Records of an activity the study no longer lists still count.
        entry = ActivityProgress(activity_code)
        country.activities.append(entry)
        country.activities.sort(key=lambda item: item.activity)
        return entry

    p = Participant
    withdrawn = p.status == "withdrawn"
    registry = session.execute(
        select(
            p.country_code,
            p.activity,
            func.count(distinct(case((~withdrawn, p.interview_number)))),
            func.count(case((withdrawn, 1))),
        )
        .where(p.study_id == study.id, in_countries(p.country_code))
        .group_by(p.country_code, p.activity)
    )
    for code, activity_code, planned, withdrawn_count in registry:
        if code in by_code:
            entry = activity(code, activity_code)
            entry.planned = planned
            entry.withdrawn = withdrawn_count
            by_code[code].withdrawn += withdrawn_count

    records = session.execute(
        select(Interview.country_code, Interview.activity, Interview.status, func.count())
        .where(Interview.study_id == study.id, in_countries(Interview.country_code))
        .group_by(Interview.country_code, Interview.activity, Interview.status)
    )
    for code, activity_code, status, count in records:
        if code in by_code:
            entry = activity(code, activity_code)
            if status == "complete":
                entry.complete = count
            else:
                entry.drafts = count

    # Open conflicts are few: find their records through the conflicts' (kind, resolved_at) index
    # rather than joining from all the study's records (which SQLite's planner prefers otherwise).
    r = InterviewRevision
    is_open = (r.kind == "conflict") & r.resolved_at.is_(None)
    open_record_conflicts = select(r.interview_uuid).where(is_open)
    conflicts_of_record = (
        select(func.count()).where(r.interview_uuid == Interview.uuid, is_open).scalar_subquery()
    )
    record_conflicts = (
        select(Interview.country_code.label("code"), func.sum(conflicts_of_record).label("open"))
        .where(
            Interview.uuid.in_(open_record_conflicts),
            Interview.study_id == study.id,
            in_countries(Interview.country_code),
        )
        .group_by(Interview.country_code)
    )
    field_conflicts = (
        select(p.country_code.label("code"), func.count().label("open"))
        .join(FieldConflict, FieldConflict.participant_id == p.id)
        .where(p.study_id == study.id, in_countries(p.country_code), FieldConflict.resolved_at.is_(None))
        .group_by(p.country_code)
    )
    for code, count in session.execute(record_conflicts.union_all(field_conflicts)):
        if code in by_code:
            by_code[code].open_conflicts += int(count)  # PostgreSQL sums counts as numeric

    _add_tablets(session, study.id, by_code, in_countries)
    return StudyProgress(study.slug, utcnow(), list(by_code.values()))


def _add_tablets(
    session: Session, study_id: int, by_code: dict[str, CountryProgress], in_countries: Any
) -> None:
    """Each country's tablets: devices whose scope reaches the country, and any device holding
    number blocks there, with the numbers left in their open blocks."""
    p = Participant
    used = (
        select(func.count(distinct(p.interview_number)))
        .where(
            p.study_id == NumberBlock.study_id,
            p.activity == NumberBlock.activity,
            p.country_code == NumberBlock.country_code,
            p.interview_number.between(NumberBlock.first_number, NumberBlock.last_number),
        )
        .scalar_subquery()
    )
    left: dict[tuple[str, str], int] = defaultdict(int)
    holders: dict[str, set[str]] = defaultdict(set)
    blocks = session.execute(
        select(
            NumberBlock.device_id,
            NumberBlock.country_code,
            NumberBlock.released_at.is_(None),
            NumberBlock.last_number - NumberBlock.first_number + 1 - used,
        ).where(NumberBlock.study_id == study_id, in_countries(NumberBlock.country_code))
    )
    for device_id, code, still_open, unused in blocks:
        holders[device_id].add(code)
        if still_open:
            left[(device_id, code)] += unused
    devices = session.execute(
        select(Device.id, Device.label, User.username, Device.last_seen_at, Device.revoked_at, Device.scope)
        .join(User, User.id == Device.user_id)
        .order_by(Device.label, Device.id)
    )
    for device_id, label, owner, last_seen, revoked_at, scope in devices:
        reached: set[str] = set()
        for entry in scope or []:
            if entry.get("study_id") == study_id:
                reached |= set(by_code) if entry.get("countries") is None else set(entry["countries"])
        reached |= holders.get(device_id, set())
        for code in sorted(reached & set(by_code)):
            by_code[code].tablets.append(
                TabletProgress(
                    device_id=device_id,
                    label=label,
                    owner=owner,
                    last_sync_at=last_seen,
                    numbers_left=left.get((device_id, code), 0),
                    revoked=revoked_at is not None,
                )
            )
