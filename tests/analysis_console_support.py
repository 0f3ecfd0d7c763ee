"""Data for the analysis pages' tests (WebTest and browser): an instrument with text questions, an
interview of it with answers in several scripts, quotes, and codes."""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

from instrument_samples import minimal_definition
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from surveykit.analysis.models import Code
from surveykit.instruments import services as instruments
from surveykit.participants import services as participants
from surveykit.studies import services as studies
from surveykit.studies.models import Study
from surveykit.sync.models import Interview, Quote

SLUG = "analysis-debrief"
# Before the passage: a word with a non-ASCII letter (one code point, two UTF-8 bytes) and an emoji
# (one code point, two UTF-16 units), so offsets in bytes or UTF-16 units would be wrong.
DETAILS = "O Ministério 📱 treina polícias todos os anos em exploração online."
PASSAGE = "treina polícias"
AGENCY = "Ministério da Justiça"


def publish_instrument(session: Session, study: str) -> None:
    definition = minimal_definition(SLUG)
    definition["study"] = study
    definition["sections"][0]["questions"][1]["prompt"] = {
        "en": "What training is given?",
        "pt": "Que formação?",
    }
    instruments.publish(session, instruments.validate_definition(definition), "tests")


def add_interview(
    session: Session, study: Study, country: str, interviewer_id: int, details: str = DETAILS
) -> Interview:
    """A complete interview (and its participant in the registry) with text answers and a quote."""
    try:
        studies.get_activity(session, study, "RA1")
    except studies.ActivityNotFound:
        studies.add_activity(session, study, "RA1", "Duty bearers")
    registered = participants.register_interview(
        session, study, country, "RA1", [participants.NewParticipant(AGENCY)], "tests"
    )
    number = registered[0].interview_number
    interview = Interview(
        uuid=str(uuid_module.uuid4()),
        study_id=study.id,
        country_code=country,
        activity="RA1",
        interview_number=number,
        revision=1,
        content_hash="0" * 64,
        record={
            "participants": [{"letter": "A", "agency": AGENCY}],
            "answers": {"agency": AGENCY, "consent": True, "details": details, "mode": "in_person"},
        },
        status="complete",
        instrument_slug=SLUG,
        instrument_version=1,
        interviewer_id=interviewer_id,
    )
    session.add(interview)
    session.flush()
    if PASSAGE not in details:
        return interview
    start = details.index(PASSAGE)
    session.add(
        Quote(
            id=str(uuid_module.uuid4()),
            interview_uuid=interview.uuid,
            study_id=study.id,
            country_code=country,
            revision=1,
            question_id="details",
            text=PASSAGE,
            start_offset=start,
            end_offset=start + len(PASSAGE),
            tags=[],
        )
    )
    session.flush()
    return interview


def add_code(
    session: Session,
    study: Study,
    name: str,
    colour: str = "#1f77b4",
    parent: int | None = None,
    status: str = "active",
    merged_into: int | None = None,
    definition: str = "",
) -> int:
    code = Code(
        guid=str(uuid_module.uuid4()),
        study_id=study.id,
        parent_id=parent,
        name=name,
        colour=colour,
        definition=definition,
        status=status,
        merged_into_id=merged_into,
        created_by="tests",
    )
    session.add(code)
    session.flush()
    return code.id


def count(session: Session, model: Any) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))
