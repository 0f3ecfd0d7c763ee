"""Creating, configuring and looking up studies, their countries and their research activities.

Plain functions over a Session; the HTTP views and the CLI are thin shells over them. Validation
lives here too (not only in the colander schemas) because the CLI calls these functions directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

# Research activities are part of a study's configuration; the model sits with the registry whose
# IDs begin with the activity code. It depends on nothing but the declarative base.
from surveykit.studies.models import Country, ResearchActivity, Study

STUDY_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")
ACTIVITY_CODE = re.compile(r"^RA[1-9]$")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")

STUDY_NAME_MAX = 300
COUNTRY_NAME_MAX = 200
REGION_MAX = 200
ACTIVITY_NAME_MAX = 300
MAX_LANGUAGES = 20

# "Leave as it is" for optional arguments whose None means "clear".
UNCHANGED: Any = object()


class StudyError(ValueError):
    """A configuration change that is not valid; ``field`` names the offending input when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class StudyExists(StudyError):
    """The study, country or activity already exists."""


class StudyNotFound(LookupError):
    pass


class CountryNotFound(LookupError):
    pass


class ActivityNotFound(LookupError):
    pass


# ------------------------------------------------------------------------------------------ studies


def get_study(session: Session, slug: str) -> Study:
    study = session.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        raise StudyNotFound(f"no study {slug!r}")
    return study


def create_study(session: Session, slug: str, name: str | None = None) -> Study:
    if not isinstance(slug, str) or not STUDY_SLUG.match(slug):
        raise StudyError(f"study slug {slug!r} must be 2-64 lower-case letters, digits or hyphens", "slug")
    if session.scalar(select(Study.id).where(Study.slug == slug)) is not None:
        raise StudyExists(f"study {slug!r} already exists", "slug")
    study = Study(slug=slug, name=_text(name or slug, STUDY_NAME_MAX, "name"))
    session.add(study)
    session.flush()
    return study


def ensure_study(session: Session, slug: str) -> Study:
    try:
        return get_study(session, slug)
    except StudyNotFound:
        return create_study(session, slug)


def list_studies(session: Session, slugs: Iterable[str] | None = None) -> list[Study]:
    """Every study, or only those named in ``slugs`` (a caller's grants), by slug."""
    statement = select(Study).options(selectinload(Study.countries)).order_by(Study.slug)
    if slugs is not None:
        statement = statement.where(Study.slug.in_(sorted(slugs)))
    return list(session.scalars(statement))


# ---------------------------------------------------------------------------------------- countries


def add_country(
    session: Session,
    study: Study,
    code: str,
    name: str,
    region: str | None = None,
    languages: list[str] | None = None,
) -> Country:
    if not isinstance(code, str) or not COUNTRY_CODE.match(code):
        raise StudyError(f"country code {code!r} must be two capital letters", "code")
    if code in country_codes(session, study):
        raise StudyExists(f"{study.slug} already has a country {code}", "code")
    country = Country(
        study_id=study.id,
        code=code,
        name=_text(name, COUNTRY_NAME_MAX, "name"),
        region=_optional_text(region, REGION_MAX, "region"),
        languages=_languages(languages or []),
    )
    session.add(country)
    session.flush()
    return country


def get_country(session: Session, study: Study, code: str) -> Country:
    country = session.scalar(select(Country).where(Country.study_id == study.id, Country.code == code))
    if country is None:
        raise CountryNotFound(f"{study.slug} has no country {code!r}")
    return country


def update_country(
    session: Session,
    country: Country,
    *,
    name: Any = UNCHANGED,
    region: Any = UNCHANGED,
    languages: Any = UNCHANGED,
) -> dict[str, Any]:
    """Apply the given changes; returns ``{field: new value}`` for those that differ."""
    wanted: dict[str, Any] = {}
    if name is not UNCHANGED:
        wanted["name"] = _text(name, COUNTRY_NAME_MAX, "name")
    if region is not UNCHANGED:
        wanted["region"] = _optional_text(region, REGION_MAX, "region")
    if languages is not UNCHANGED:
        wanted["languages"] = _languages(languages or [])
    changed = {field: value for field, value in wanted.items() if getattr(country, field) != value}
    for field, value in changed.items():
        setattr(country, field, value)
    session.flush()
    return changed


def country_codes(session: Session, study: Study) -> set[str]:
    return set(session.scalars(select(Country.code).where(Country.study_id == study.id)))


# --------------------------------------------------------------------------------------- activities


def add_activity(session: Session, study: Study, code: str, name: str) -> ResearchActivity:
    if not isinstance(code, str) or not ACTIVITY_CODE.match(code):
        raise StudyError(f"research activity code {code!r} must be RA1 to RA9", "code")
    if session.scalar(
        select(ResearchActivity.id).where(
            ResearchActivity.study_id == study.id, ResearchActivity.code == code
        )
    ):
        raise StudyExists(f"{study.slug} already has a research activity {code}", "code")
    activity = ResearchActivity(study_id=study.id, code=code, name=_text(name, ACTIVITY_NAME_MAX, "name"))
    session.add(activity)
    session.flush()
    return activity


def get_activity(session: Session, study: Study, code: str) -> ResearchActivity:
    activity = session.scalar(
        select(ResearchActivity).where(ResearchActivity.study_id == study.id, ResearchActivity.code == code)
    )
    if activity is None:
        raise ActivityNotFound(f"{study.slug} has no research activity {code!r}")
    return activity


def update_activity(session: Session, activity: ResearchActivity, *, name: Any = UNCHANGED) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    if name is not UNCHANGED:
        value = _text(name, ACTIVITY_NAME_MAX, "name")
        if value != activity.name:
            activity.name = changed["name"] = value
    session.flush()
    return changed


def list_activities(session: Session, study: Study) -> list[ResearchActivity]:
    return list(
        session.scalars(
            select(ResearchActivity)
            .where(ResearchActivity.study_id == study.id)
            .order_by(ResearchActivity.code)
        )
    )


# ----------------------------------------------------------------------------------- representation


def describe_country(country: Country) -> dict[str, Any]:
    return {
        "code": country.code,
        "name": country.name,
        "region": country.region,
        "languages": list(country.languages or []),
    }


def describe_activity(activity: ResearchActivity) -> dict[str, Any]:
    return {"code": activity.code, "name": activity.name}


def describe_study(session: Session, study: Study) -> dict[str, Any]:
    """A study with its research activities and countries, as the API and ``studies show`` give it."""
    countries = session.scalars(select(Country).where(Country.study_id == study.id).order_by(Country.code))
    return {
        "slug": study.slug,
        "name": study.name,
        "created_at": study.created_at.isoformat(),
        "activities": [describe_activity(activity) for activity in list_activities(session, study)],
        "countries": [describe_country(country) for country in countries],
    }


def summarise_studies(session: Session, studies: list[Study]) -> list[dict[str, Any]]:
    """Studies as listed: slug, name and the codes of their countries and activities."""
    activities: dict[int, list[str]] = {}
    if studies:
        rows = session.execute(
            select(ResearchActivity.study_id, ResearchActivity.code)
            .where(ResearchActivity.study_id.in_([study.id for study in studies]))
            .order_by(ResearchActivity.code)
        )
        for study_id, code in rows:
            activities.setdefault(study_id, []).append(code)
    return [
        {
            "slug": study.slug,
            "name": study.name,
            "created_at": study.created_at.isoformat(),
            "countries": [country.code for country in study.countries],
            "activities": activities.get(study.id, []),
        }
        for study in studies
    ]


# --------------------------------------------------------------------------------------- validation


def _text(value: Any, max_length: int, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StudyError(f"{field} must be non-empty text", field)
    value = value.strip()
    if len(value) > max_length:
        raise StudyError(f"{field} is longer than {max_length} characters", field)
    if _has_control_characters(value):
        raise StudyError(f"{field} contains control characters", field)
    return value


def _optional_text(value: Any, max_length: int, field: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value, max_length, field)


def _languages(values: Iterable[Any]) -> list[str]:
    languages: list[str] = []
    for value in values:
        if not isinstance(value, str) or not LANGUAGE_CODE.match(value):
            raise StudyError(f"{value!r} is not a language code like 'en' or 'pt-BR'", "languages")
        if value in languages:
            raise StudyError(f"language {value} is listed twice", "languages")
        languages.append(value)
    if len(languages) > MAX_LANGUAGES:
        raise StudyError(f"at most {MAX_LANGUAGES} languages", "languages")
    return languages


def _has_control_characters(text: str) -> bool:
    return any(ord(char) < 32 or 127 <= ord(char) < 160 for char in text)
