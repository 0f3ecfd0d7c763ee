"""HTTP views for studies, their countries and research activities: thin wrappers over ``services``."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.view import view_config

from surveykit.accounts.identity import grants_coverage
from surveykit.audit import services as audit
from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.security import Permission
from surveykit.studies import PROGRESS_ROLES, progress, schemas, services
from surveykit.studies.models import Study
from surveykit.web import json_body


def load_study(request: Request) -> Study:
    slug = request.matchdict["study"]
    try:
        return services.get_study(request.dbsession, slug)
    except services.StudyNotFound as exc:
        raise APIError(404, ErrorCode.STUDY_NOT_FOUND, f"no study {slug!r}") from exc


def study_error(exc: services.StudyError) -> APIError:
    status, code = (
        (409, ErrorCode.CONFLICT) if isinstance(exc, services.StudyExists) else (422, ErrorCode.INVALID_INPUT)
    )
    return APIError(status, code, str(exc), [field_error(exc.field or "", str(exc))])


@view_config(route_name="studies", request_method="GET", renderer="json", permission=Permission.STUDIES_READ)
def list_studies(request: Request) -> dict[str, Any]:
    visible = request.identity.studies()
    studies = services.list_studies(request.dbsession, visible)
    return {"studies": services.summarise_studies(request.dbsession, studies)}


@view_config(
    route_name="studies", request_method="POST", renderer="json", permission=Permission.STUDIES_CREATE
)
def create_study(request: Request) -> dict[str, Any]:
    body = json_body(request, schemas.StudyCreateSchema())
    try:
        study = services.create_study(request.dbsession, body["slug"], body["name"])
    except services.StudyError as exc:
        raise study_error(exc) from exc
    audit.record_in_request(request, "study.create", target=study.slug, name=study.name)
    request.response.status = 201
    return services.describe_study(request.dbsession, study)


@view_config(route_name="study", request_method="GET", renderer="json", permission=Permission.STUDIES_READ)
def get_study(request: Request) -> dict[str, Any]:
    return services.describe_study(request.dbsession, load_study(request))


@view_config(
    route_name="study_countries",
    request_method="POST",
    renderer="json",
    permission=Permission.STUDIES_CONFIGURE,
)
def add_country(request: Request) -> dict[str, Any]:
    study = load_study(request)
    body = json_body(request, schemas.CountryCreateSchema())
    try:
        country = services.add_country(
            request.dbsession, study, body["code"], body["name"], body["region"], list(body["languages"])
        )
    except services.StudyError as exc:
        raise study_error(exc) from exc
    described = services.describe_country(country)
    audit.record_in_request(request, "study.add_country", target=f"{study.slug}/{country.code}", **described)
    request.response.status = 201
    return described


@view_config(
    route_name="study_country",
    request_method="PATCH",
    renderer="json",
    permission=Permission.STUDIES_CONFIGURE,
)
def update_country(request: Request) -> dict[str, Any]:
    study = load_study(request)
    body = json_body(request, schemas.CountryUpdateSchema())
    code = request.matchdict["cc"]
    try:
        country = services.get_country(request.dbsession, study, code)
    except services.CountryNotFound as exc:
        raise APIError(404, ErrorCode.COUNTRY_NOT_FOUND, str(exc)) from exc
    try:
        changed = services.update_country(request.dbsession, country, **body)
    except services.StudyError as exc:
        raise study_error(exc) from exc
    if changed:
        audit.record_in_request(
            request, "study.update_country", target=f"{study.slug}/{code}", changed=changed
        )
    return services.describe_country(country)


@view_config(
    route_name="study_activities",
    request_method="POST",
    renderer="json",
    permission=Permission.STUDIES_CONFIGURE,
)
def add_activity(request: Request) -> dict[str, Any]:
    study = load_study(request)
    body = json_body(request, schemas.ActivityCreateSchema())
    try:
        activity = services.add_activity(request.dbsession, study, body["code"], body["name"])
    except services.StudyError as exc:
        raise study_error(exc) from exc
    audit.record_in_request(
        request, "study.add_activity", target=f"{study.slug}/{activity.code}", name=activity.name
    )
    request.response.status = 201
    return services.describe_activity(activity)


@view_config(
    route_name="study_activity",
    request_method="PATCH",
    renderer="json",
    permission=Permission.STUDIES_CONFIGURE,
)
def update_activity(request: Request) -> dict[str, Any]:
    study = load_study(request)
    body = json_body(request, schemas.ActivityUpdateSchema())
    code = request.matchdict["code"]
    try:
        activity = services.get_activity(request.dbsession, study, code)
    except services.ActivityNotFound as exc:
        raise APIError(404, ErrorCode.ACTIVITY_NOT_FOUND, str(exc)) from exc
    try:
        changed = services.update_activity(request.dbsession, activity, **body)
    except services.StudyError as exc:
        raise study_error(exc) from exc
    if changed:
        audit.record_in_request(
            request, "study.update_activity", target=f"{study.slug}/{code}", changed=changed
        )
    return services.describe_activity(activity)


@view_config(
    route_name="study_progress", request_method="GET", renderer="json", permission=Permission.PROGRESS_READ
)
def study_progress(request: Request) -> dict[str, Any]:
    """Fieldwork progress of the study, in the countries the caller's grants cover."""
    study = load_study(request)
    covered = grants_coverage(request.identity.grants, PROGRESS_ROLES, study.slug)
    countries = list(covered) if covered is not None else None
    return progress.study_progress(request.dbsession, study.slug, countries).to_json()
