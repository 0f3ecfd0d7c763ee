"""Creating and looking up studies and countries."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.studies.models import Country, Study

STUDY_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")


class StudyError(ValueError):
    pass


class StudyNotFound(LookupError):
    pass


def get_study(session: Session, slug: str) -> Study:
    study = session.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        raise StudyNotFound(f"no study {slug!r}")
    return study


def create_study(session: Session, slug: str, name: str | None = None) -> Study:
    if not STUDY_SLUG.match(slug):
        raise StudyError(f"study slug {slug!r} must be 2-64 lower-case letters, digits or hyphens")
    if session.scalar(select(Study.id).where(Study.slug == slug)) is not None:
        raise StudyError(f"study {slug!r} already exists")
    study = Study(slug=slug, name=(name or slug).strip())
    session.add(study)
    session.flush()
    return study


def ensure_study(session: Session, slug: str) -> Study:
    try:
        return get_study(session, slug)
    except StudyNotFound:
        return create_study(session, slug)


def add_country(
    session: Session,
    study: Study,
    code: str,
    name: str,
    region: str | None = None,
    languages: list[str] | None = None,
) -> Country:
    if not COUNTRY_CODE.match(code):
        raise StudyError(f"country code {code!r} must be two capital letters")
    if code in country_codes(session, study):
        raise StudyError(f"{study.slug} already has a country {code}")
    country = Country(
        study_id=study.id, code=code, name=name.strip(), region=region, languages=list(languages or [])
    )
    session.add(country)
    session.flush()
    return country


def country_codes(session: Session, study: Study) -> set[str]:
    return set(session.scalars(select(Country.code).where(Country.study_id == study.id)))


def list_studies(session: Session) -> list[Study]:
    return list(session.scalars(select(Study).order_by(Study.slug)))
