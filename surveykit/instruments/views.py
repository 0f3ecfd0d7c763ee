"""HTTP views for instruments: thin wrappers over ``services``."""

from __future__ import annotations

import re
from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from surveykit.audit import services as audit
from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.instruments import StudyInstrumentContext, services
from surveykit.security import Permission
from surveykit.web import json_body, representation

# Tablets may keep what they downloaded; they revalidate the current version with its ETag,
# while a numbered version never changes and may be kept for good.
VERSION_NUMBER = re.compile(r"^[0-9]{1,9}$")
CURRENT_CACHE_CONTROL = "private, no-cache"
VERSION_CACHE_CONTROL = "private, max-age=31536000, immutable"


def _language(request: Request) -> str | None:
    language = request.GET.get("lang")
    if language is None:
        return None
    if not services.LANGUAGE_QUERY.match(language):
        raise APIError(
            422,
            ErrorCode.INVALID_INPUT,
            f"lang {language!r} is not a language code",
            [field_error("lang", "must be a language code like 'en' or 'pt-BR'", "querystring")],
        )
    return language


def _serve(request: Request, slug: str, version: int | None, cache_control: str) -> Response:
    try:
        if version is None:
            current = request.context.current()
            if current is None:
                raise services.InstrumentNotFound(slug)
            ref = current.current
        else:
            ref = services.find_version(request.dbsession, slug, version)
    except services.VersionNotFound as exc:
        raise APIError(404, ErrorCode.VERSION_NOT_FOUND, str(exc)) from exc
    except services.InstrumentNotFound as exc:
        raise APIError(404, ErrorCode.INSTRUMENT_NOT_FOUND, f"no instrument {slug!r}") from exc
    language = _language(request)
    try:
        rep = services.remembered_representation(ref, language) or services.version_representation(
            request.dbsession, ref, language
        )
    except services.LanguageNotOffered as exc:
        raise APIError(
            422, ErrorCode.INVALID_INPUT, str(exc), [field_error("lang", str(exc), "querystring")]
        ) from exc
    return representation(request, rep, cache_control)


@view_config(
    route_name="instruments", request_method="GET", renderer="json", permission=Permission.INSTRUMENTS_READ
)
def list_instruments(request: Request) -> dict[str, Any]:
    studies = request.identity.studies() if request.identity is not None else set()
    return {"instruments": services.list_instruments(request.dbsession, studies=studies)}


@view_config(route_name="instrument", request_method="GET", permission=Permission.INSTRUMENTS_READ)
def current_version(request: Request) -> Response:
    return _serve(request, request.matchdict["slug"], None, CURRENT_CACHE_CONTROL)


@view_config(route_name="instrument_version", request_method="GET", permission=Permission.INSTRUMENTS_READ)
def numbered_version(request: Request) -> Response:
    raw = request.matchdict["version"]
    # isdigit() also accepts characters such as '²' that int() refuses; only ASCII digits count here.
    if not VERSION_NUMBER.match(raw) or int(raw) < 1:
        raise APIError(404, ErrorCode.VERSION_NOT_FOUND, f"{raw!r} is not a version number")
    return _serve(request, request.matchdict["slug"], int(raw), VERSION_CACHE_CONTROL)


@view_config(
    route_name="instrument_version_xlsx", request_method="GET", permission=Permission.INSTRUMENTS_READ
)
def numbered_version_workbook(request: Request) -> Response:
    """A published version as an XLSForm workbook (docs/xlsform.md)."""
    from surveykit.instruments.xlsform import XLSX_MEDIA_TYPE, version_workbook

    slug, raw = request.matchdict["slug"], request.matchdict["version"]
    if not VERSION_NUMBER.match(raw) or int(raw) < 1:
        raise APIError(404, ErrorCode.VERSION_NOT_FOUND, f"{raw!r} is not a version number")
    try:
        body = version_workbook(request.dbsession, slug, int(raw))
    except services.VersionNotFound as exc:
        raise APIError(404, ErrorCode.VERSION_NOT_FOUND, str(exc)) from exc
    except services.InstrumentNotFound as exc:
        raise APIError(404, ErrorCode.INSTRUMENT_NOT_FOUND, f"no instrument {slug!r}") from exc
    response = Response(body=body, content_type=XLSX_MEDIA_TYPE)
    response.content_disposition = f'attachment; filename="{slug}-v{int(raw)}.xlsx"'
    response.cache_control = VERSION_CACHE_CONTROL
    return response


def _validated(request: Request) -> dict[str, Any]:
    raw = json_body(request)
    try:
        return services.validate_definition(raw)
    except services.DefinitionError as exc:
        raise APIError(
            422, ErrorCode.INVALID_INPUT, f"invalid instrument definition: {exc}", exc.as_details()
        ) from exc


@view_config(
    route_name="instruments_validate",
    request_method="POST",
    renderer="json",
    permission=Permission.INSTRUMENTS_VALIDATE,
)
def validate(request: Request) -> dict[str, Any]:
    definition = _validated(request)
    return {"valid": True, "slug": definition["slug"], "content_hash": services.content_hash(definition)}


@view_config(
    route_name="instruments",
    request_method="POST",
    renderer="json",
    permission=Permission.INSTRUMENTS_PUBLISH,
)
def publish(request: Request) -> dict[str, Any]:
    definition = _validated(request)
    study = definition.get("study")
    if not request.has_permission(Permission.INSTRUMENTS_PUBLISH, StudyInstrumentContext(study)):
        audit.record_refusal(request, "instrument.publish", target=definition["slug"], study=study)
        raise APIError(
            403,
            ErrorCode.FORBIDDEN,
            f"publishing for {'study ' + study if study else 'every study'} needs a coordinator "
            "or admin grant there",
        )
    existing, existing_study = services.instrument_study(request.dbsession, definition["slug"])
    if existing and existing_study != study:
        raise APIError(
            409,
            ErrorCode.CONFLICT,
            f"instrument {definition['slug']!r} belongs to {existing_study or 'every study'}; "
            "a new version cannot move it",
            [field_error("study", "differs from the published versions")],
        )
    try:
        result = services.publish(request.dbsession, definition, request.authenticated_userid)
    except services.DefinitionError as exc:
        raise APIError(409, ErrorCode.CONFLICT, str(exc), exc.as_details()) from exc
    if result.created:
        audit.record_in_request(
            request,
            "instrument.publish",
            target=f"{result.slug}@{result.version}",
            content_hash=result.content_hash,
        )
    request.response.status = 201 if result.created else 200
    return {
        "slug": result.slug,
        "version": result.version,
        "content_hash": result.content_hash,
        "created": result.created,
    }


@view_config(
    route_name="instrument_retire",
    request_method="POST",
    renderer="json",
    permission=Permission.INSTRUMENTS_PUBLISH,
)
def retire(request: Request) -> dict[str, Any]:
    slug = request.matchdict["slug"]
    try:
        instrument = services.retire(request.dbsession, slug)
    except services.InstrumentNotFound as exc:
        raise APIError(404, ErrorCode.INSTRUMENT_NOT_FOUND, f"no instrument {slug!r}") from exc
    audit.record_in_request(request, "instrument.retire", target=slug)
    return {"slug": instrument.slug, "retired": True, "retired_at": instrument.retired_at.isoformat()}
