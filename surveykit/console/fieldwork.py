"""What the coordinators' pages share: the contexts of their routes, the study and country of a page,
and the fieldwork start page (which studies and countries the caller may work on, and where).

The pages themselves: ``dashboard`` (progress), ``registry`` (participants and the import),
``tablets`` (enrolment), ``conflicts`` (review and resolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyramid.authorization import Allow
from pyramid.httpexceptions import HTTPNotFound
from pyramid.request import Request

from surveykit.accounts.identity import DEVICE_MANAGING_ROLES, Identity, grants_coverage
from surveykit.console.web import _, console_view, translate
from surveykit.participants import READER_ROLES, WRITER_ROLES
from surveykit.security import Permission
from surveykit.studies import PROGRESS_ROLES
from surveykit.studies import services as studies
from surveykit.studies.models import Country, Study
from surveykit.sync import conflict_acl
from surveykit.sync.callers import MANAGER_ROLES


def _country_principals(study: str, country: str, roles: tuple[str, ...] | frozenset[str]) -> list[str]:
    return [
        f"role:{role}:{grant_study}:{grant_country}"
        for role in sorted(roles)
        for grant_study in (study, "*")
        for grant_country in (country, "*")
    ]


class CountryConflictsResource:
    """The conflict queue of one country: its coordinators and admins (as resolving its conflicts)."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.study: str = request.matchdict["study"]
        self.country: str = request.matchdict["cc"]
        self.__acl__ = [
            *conflict_acl(self.study, self.country),
            *[
                (Allow, principal, Permission.CONFLICTS_READ)
                for principal in _country_principals(self.study, self.country, MANAGER_ROLES)
            ],
        ]


class CountryTabletsResource:
    """The tablets of one country: its coordinators and admins enrol, re-enrol and revoke them
    (each device is checked again against the caller's grants, as the API does)."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.study: str = request.matchdict["study"]
        self.country: str = request.matchdict["cc"]
        self.__acl__ = [
            (Allow, principal, Permission.DEVICES_ENROL)
            for principal in _country_principals(self.study, self.country, DEVICE_MANAGING_ROLES)
        ]


# ------------------------------------------------------------------------------ page's study/country


def page_study(request: Request) -> Study:
    """The study named in the URL, or the console's 404 page."""
    try:
        return studies.get_study(request.dbsession, request.matchdict["study"])
    except studies.StudyNotFound as exc:
        raise HTTPNotFound(
            translate(request, _("There is no study ${study}."), study=request.matchdict["study"])
        ) from exc


def page_country(request: Request, study: Study) -> Country:
    """The country named in the URL (of the page's study), or the console's 404 page."""
    try:
        return studies.get_country(request.dbsession, study, request.matchdict["cc"])
    except studies.CountryNotFound as exc:
        raise HTTPNotFound(
            translate(
                request,
                _("Study ${study} has no country ${code}."),
                study=study.slug,
                code=request.matchdict["cc"],
            )
        ) from exc


# ------------------------------------------------------------------------------------- start page


@dataclass(frozen=True)
class CountryLinks:
    code: str
    name: str
    registry: bool
    manage: bool  # registry edits, tablets and conflicts


@dataclass(frozen=True)
class StudyLinks:
    slug: str
    name: str
    progress: bool
    countries: list[CountryLinks]


def _covers(coverage: tuple[str, ...] | None, code: str) -> bool:
    return coverage is None or code in coverage


def fieldwork_areas(identity: Identity, all_studies: list[Study]) -> list[StudyLinks]:
    """For each study the caller holds a grant in: whether it may read the progress dashboard, and
    per country whether it may read the registry and manage fieldwork there."""
    areas = []
    for study in all_studies:
        progress = grants_coverage(identity.grants, PROGRESS_ROLES, study.slug)
        readers = grants_coverage(identity.grants, frozenset(READER_ROLES), study.slug)
        managers = grants_coverage(identity.grants, frozenset(WRITER_ROLES), study.slug)
        countries = [
            CountryLinks(
                country.code, country.name, _covers(readers, country.code), _covers(managers, country.code)
            )
            for country in sorted(study.countries, key=lambda c: c.code)
            if _covers(readers, country.code) or _covers(managers, country.code)
        ]
        if countries or progress != ():
            areas.append(StudyLinks(study.slug, study.name or study.slug, progress != (), countries))
    return areas


@console_view(
    route_name="console.fieldwork",
    request_method="GET",
    permission=Permission.ACCOUNT_READ,
    renderer="surveykit.console:templates/fieldwork/index.jinja2",
)
def fieldwork_index(request: Request) -> dict[str, Any]:
    identity = request.identity
    slugs = identity.studies()
    return {"areas": fieldwork_areas(identity, studies.list_studies(request.dbsession, slugs))}
