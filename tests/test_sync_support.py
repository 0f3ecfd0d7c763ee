"""Helpers for the sync tests (no tests here): a study with an instrument, tablets with number blocks,
and valid interview records to mutate."""

from __future__ import annotations

import copy
import json
import uuid as uuid_module
from typing import Any

import webtest
from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.accounts import services as account_services
from surveykit.instruments import services as instruments
from surveykit.participants import ids
from surveykit.participants.models import Participant
from surveykit.studies.models import ResearchActivity, Study

STUDY = "ocsea"
SLUG = "sync-debrief"


def sync_definition(slug: str = SLUG, study: str | None = STUDY) -> dict[str, Any]:
    """An instrument with every answer type, required questions and relevance.

    Order: agency (metadata, short_text, required); consent (yes_no, required); details (long_text,
    only if consent); mode (single_choice); budget_line_exists (yes_no); budget_line_details
    (long_text, only if budget line, required); partners (multiple_choice); people (number 0-10);
    visit_date (date).
    """
    definition: dict[str, Any] = {
        "slug": slug,
        "title": {"en": "Sync debrief", "pt": "Balanço"},
        "activity": "RA1",
        "default_language": "en",
        "languages": ["en", "pt"],
        "metadata": [{"id": "agency", "type": "short_text", "required": True, "prompt": "Agency"}],
        "sections": [
            {
                "id": "main",
                "title": "Main",
                "questions": [
                    {"id": "consent", "type": "yes_no", "required": True, "prompt": "Consent?"},
                    {
                        "id": "details",
                        "type": "long_text",
                        "relevance": "$consent == true",
                        "prompt": "Describe.",
                        "probes": [
                            {"en": "Who trains them?", "pt": "Quem os forma?"},
                            {"en": "How often?", "pt": "Com que frequência?"},
                            {"en": "Any focal point?", "pt": "Algum ponto focal?"},
                        ],
                    },
                    {
                        "id": "mode",
                        "type": "single_choice",
                        "prompt": "Mode",
                        "choices": [
                            {"value": "in_person", "label": "In person"},
                            {"value": "phone", "label": "Phone"},
                        ],
                    },
                    {"id": "budget_line_exists", "type": "yes_no", "prompt": "Budget line?"},
                    {
                        "id": "budget_line_details",
                        "type": "long_text",
                        "required": True,
                        "relevance": "$budget_line_exists == true",
                        "prompt": "Describe the budget line.",
                        "probes": ["Which ministry holds it?", "Is it spent?"],
                    },
                    {
                        "id": "partners",
                        "type": "multiple_choice",
                        "prompt": "Partners",
                        "choices": [
                            {"value": "ngo", "label": "NGOs"},
                            {"value": "un", "label": "UN agencies"},
                            {"value": "police", "label": "Foreign police"},
                        ],
                    },
                    {"id": "people", "type": "number", "min": 0, "max": 10, "prompt": "How many?"},
                    {"id": "visit_date", "type": "date", "prompt": "Date of the visit"},
                ],
            }
        ],
    }
    if study is not None:
        definition["study"] = study
    return definition


def new_uuid() -> str:
    return str(uuid_module.uuid4())


def quote_id(country: str, number: int, n: int = 0) -> str:
    """A stable quote UUID, so two calls of ``make_record`` give identical records."""
    return str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, f"quote/{country}/{number}/{n}"))


def make_record(number: int, country: str = "KE", **overrides: Any) -> dict[str, Any]:
    """A valid complete record of interview ``number``; keyword arguments replace top-level fields."""
    record: dict[str, Any] = {
        "study": STUDY,
        "country": country,
        "activity": "RA1",
        "interview_number": number,
        "participants": [
            {
                "letter": "A",
                "agency": "Ministry of ICT",
                "position": "Director of Cyber Security",
                "consent_given": True,
                "consent_date": "2026-05-04",
                "consent_recorded_how": "verbal_notes",
            }
        ],
        "instrument": {"slug": SLUG, "version": 1},
        "language": "en",
        "mode": "in_person",
        "started_at": "2026-05-04T09:30:00+03:00",
        "ended_at": "2026-05-04T10:45:00+03:00",
        "status": "complete",
        "answers": {
            "agency": "Ministry of ICT",
            "consent": True,
            "details": "We train police officers every year on online exploitation.",
            "mode": "in_person",
            "budget_line_exists": False,
            "partners": ["ngo", "un"],
            "people": 3,
            "visit_date": "2026-05-04",
        },
        "quotes": [
            {
                "id": quote_id(country, number),
                "question_id": "details",
                "text": "We train police officers every year",
                "start": 0,
                "end": 35,
                "tags": ["capacity"],
            }
        ],
        "notes": "Quiet office.",
    }
    record.update(copy.deepcopy(overrides))
    return record


def change(uuid: str, base: int, record: dict[str, Any]) -> dict[str, Any]:
    return {"uuid": uuid, "base_revision": base, "record": record}


def post_json(
    testapp: webtest.TestApp, url: str, body: Any, headers: dict[str, str], status: int | str = "*"
) -> webtest.TestResponse:
    return testapp.post(
        url,
        json.dumps(body).encode("utf-8"),
        headers={**headers, "Content-Type": "application/json"},
        status=status,
    )


class SyncWorld:
    """Study ``ocsea`` (KE, TZ, KH) with activity RA1, the sync instrument, and helpers for tablets."""

    def __init__(self, accounts: Any, dbsession: Session) -> None:
        self.accounts = accounts
        self.session = dbsession
        self.study: Study = accounts.study(STUDY, ("KE", "TZ", "KH"))
        if not dbsession.scalar(
            select(ResearchActivity.id).where(
                ResearchActivity.study_id == self.study.id, ResearchActivity.code == "RA1"
            )
        ):
            dbsession.add(ResearchActivity(study_id=self.study.id, code="RA1", name="Duty bearers"))
        if instruments.instrument_study(dbsession, SLUG) == (False, None):
            instruments.publish(dbsession, instruments.validate_definition(sync_definition()))
        dbsession.flush()
        self._count = 0

    def tablet(self, countries: list[str] | None = None, username: str | None = None) -> Tablet:
        """A fieldworker with an activated device and a block of numbers in each of its countries."""
        self._count += 1
        countries = countries or ["KE"]
        user = self.accounts.user(username or f"tablet-owner-{self._count}", "fieldworker", STUDY, countries)
        device, code = account_services.enrol_device(
            self.session, user, f"tablet {self._count}", "tests", self.accounts.policy
        )
        device, pair = account_services.activate_device(
            self.session, code, self.accounts.tokens, self.accounts.policy
        )
        self.session.flush()
        tablet = Tablet(self, user, device, {"Authorization": f"Bearer {pair.access_token}"})
        for country in countries:
            tablet.reserve(country)
        return tablet

    def staff(self, role: str, countries: list[str] | None = None) -> dict[str, str]:
        return self.accounts.headers(role, STUDY, countries)

    def register(self, country: str = "KE", letters: str = "A") -> int:
        """A planned interview in the registry (as the participants API would register it)."""
        number = ids.allocate_interview_numbers(self.session, self.study.id, "RA1", country).start
        for letter in letters:
            self.session.add(
                Participant(
                    study_id=self.study.id,
                    activity="RA1",
                    country_code=country,
                    interview_number=number,
                    letter=letter,
                    pid=ids.format_pid("RA1", country, number, letter),
                    agency="Planned agency",
                    status="planned",
                    created_by="tests",
                )
            )
        self.session.flush()
        return number


class Tablet:
    def __init__(self, world: SyncWorld, user: Any, device: Any, headers: dict[str, str]) -> None:
        self.world = world
        self.user = user
        self.device = device
        self.headers = headers
        self.numbers: dict[str, list[int]] = {}

    def renew(self) -> None:
        """A fresh access token (they live five minutes; a long test outlives one)."""
        pair = account_services.start_session(
            self.world.session,
            self.user,
            self.world.accounts.tokens,
            self.world.accounts.policy,
            device=self.device,
        )
        self.world.session.flush()
        self.headers = {"Authorization": f"Bearer {pair.access_token}"}

    def reserve(self, country: str, size: int = 10) -> None:
        block = ids.reserve_block(
            self.world.session, self.device.id, self.world.study.id, "RA1", country, size
        )
        self.numbers.setdefault(country, []).extend(range(block.first_number, block.last_number + 1))

    def mint(self, country: str = "KE") -> int:
        """The next unused number of this tablet's blocks (offline ID minting)."""
        if not self.numbers.get(country):
            self.reserve(country)
        return self.numbers[country].pop(0)

    def push(
        self, testapp: webtest.TestApp, changes: list[dict[str, Any]], status: int | str = 200
    ) -> webtest.TestResponse:
        return post_json(testapp, "/api/v1/sync", {"changes": changes}, self.headers, status)


def make_interview(
    session: Session, user_id: int, study: str = STUDY, country: str = "KE"
) -> tuple[str, dict[str, Any], Any]:
    """A new record of ``study``/``country`` stored through the services: (uuid, record, caller).

    Creates what it needs (activity RA1, the study's sync instrument, a planned interview); the
    record is pushed as a global admin with the id ``user_id``.
    """
    from surveykit.accounts.identity import GrantScope
    from surveykit.sync import services

    target = session.scalar(select(Study).where(Study.slug == study))
    assert target is not None
    if not session.scalar(
        select(ResearchActivity.id).where(
            ResearchActivity.study_id == target.id, ResearchActivity.code == "RA1"
        )
    ):
        session.add(ResearchActivity(study_id=target.id, code="RA1", name="Duty bearers"))
    slug = f"sync-{study}"
    if instruments.instrument_study(session, slug) == (False, None):
        instruments.publish(session, instruments.validate_definition(sync_definition(slug, study)))
    number = ids.allocate_interview_numbers(session, target.id, "RA1", country).start
    session.add(
        Participant(
            study_id=target.id,
            activity="RA1",
            country_code=country,
            interview_number=number,
            letter="A",
            pid=ids.format_pid("RA1", country, number, "A"),
            agency="Planned agency",
            status="planned",
            created_by="tests",
        )
    )
    session.flush()
    caller = services.Caller(user_id, "sync-tests", None, (GrantScope("admin", "*", None),))
    record = make_record(number, country=country, study=study, instrument={"slug": slug, "version": 1})
    uuid = new_uuid()
    (result,) = services.push_batch(session, caller, [change(uuid, 0, record)]).results
    assert result.result == "created", result
    return uuid, record, caller


def make_conflict(session: Session, user_id: int, study: str = STUDY, country: str = "KE") -> int:
    """An open conflict on a new record of ``study``/``country`` (see ``make_interview``)."""
    from surveykit.sync import services

    uuid, record, caller = make_interview(session, user_id, study, country)
    services.push_batch(session, caller, [change(uuid, 1, dict(record, notes="first edit"))])
    outcome = services.push_batch(session, caller, [change(uuid, 1, dict(record, notes="second edit"))])
    (result,) = outcome.results
    assert result.result == "conflict" and result.conflict_id is not None, result
    return result.conflict_id


def make_field_conflict(session: Session, user_id: int, study: str = STUDY, country: str = "KE") -> int:
    """An open field conflict in ``study``/``country``, made through the services: a record pushed,
    its participant's agency corrected in the registry, then a push that still carries the old one."""
    from surveykit.accounts.identity import GrantScope
    from surveykit.participants import services as participants
    from surveykit.sync import services

    make_conflict(session, user_id, study, country)  # the activity, the instrument
    target = session.scalar(select(Study).where(Study.slug == study))
    assert target is not None
    number = ids.allocate_interview_numbers(session, target.id, "RA1", country).start
    person = Participant(
        study_id=target.id,
        activity="RA1",
        country_code=country,
        interview_number=number,
        letter="A",
        pid=ids.format_pid("RA1", country, number, "A"),
        agency="Ministry of ICT",
        status="planned",
        created_by="tests",
    )
    session.add(person)
    session.flush()
    caller = services.Caller(user_id, "sync-tests", None, (GrantScope("admin", "*", None),))
    record = make_record(
        number, country=country, study=study, instrument={"slug": f"sync-{study}", "version": 1}
    )
    uuid = new_uuid()
    services.push_batch(session, caller, [change(uuid, 0, record)])
    participants.update_participant(session, person, {"agency": "Ministry of ICT and Innovation"})
    outcome = services.push_batch(session, caller, [change(uuid, 1, dict(record, notes="stale"))])
    (result,) = outcome.results
    assert result.result == "updated" and result.field_conflicts, result.as_json()
    return result.field_conflicts[0]["id"]
