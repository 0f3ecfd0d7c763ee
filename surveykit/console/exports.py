"""Workbooks for analysts (and coordinators and admins): each country they may export, and the
study-wide workbook where their grants cover the whole study, with when each was last exported
and whether its data changed since. Downloads go through the API's own export code."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.response import Response

from surveykit.accounts.identity import grants_coverage
from surveykit.console.web import console_view
from surveykit.exports import EXPORT_ROLES, history
from surveykit.exports.services import ALL_COUNTRIES
from surveykit.exports.views import export_response
from surveykit.security import Permission
from surveykit.studies import services as studies

ROLES = frozenset(EXPORT_ROLES)


@console_view(
    route_name="console.exports",
    request_method="GET",
    permission=Permission.ACCOUNT_READ,
    renderer="surveykit.console:templates/exports/list.jinja2",
)
def workbooks_page(request: Request) -> dict[str, Any]:
    """Only what the caller may download is listed (the download itself is checked again)."""
    identity = request.identity
    session = request.dbsession
    listed = []
    for study in studies.list_studies(session, identity.studies()):
        coverage = grants_coverage(identity.grants, ROLES, study.slug)
        if coverage == ():
            continue
        described = studies.describe_study(session, study)
        countries = [c for c in described["countries"] if coverage is None or c["code"] in coverage]
        workbooks = [
            {
                "label": country["name"],
                "code": country["code"],
                "state": history.workbook_state(session, study.slug, country["code"]),
                "url": request.route_path(
                    "console.export_country", study=study.slug, country=country["code"]
                ),
            }
            for country in countries
        ]
        if coverage is None:
            workbooks.append(
                {
                    "label": None,
                    "code": ALL_COUNTRIES,
                    "state": history.workbook_state(session, study.slug, ALL_COUNTRIES),
                    "url": request.route_path("console.export_study", study=study.slug),
                }
            )
        listed.append({"slug": study.slug, "name": study.name, "workbooks": workbooks})
    return {"studies": listed}


@console_view(route_name="console.export_country", request_method="GET", permission=Permission.EXPORTS_READ)
def download_country(request: Request) -> Response:
    return export_response(request, request.matchdict["country"])


@console_view(route_name="console.export_study", request_method="GET", permission=Permission.EXPORTS_READ)
def download_study(request: Request) -> Response:
    return export_response(request, ALL_COUNTRIES)
