"""HTTP views for instruments: thin wrappers over ``services``."""

from __future__ import annotations

import re
from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from surveykit.audit import services as audit
from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.instruments import StudyInstrumentContext, files, services, xlsform
from surveykit.instruments.translations import translation_report
from surveykit.security import Permission
from surveykit.web import JSON_CONTENT_TYPES, json_body, representation

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
    slug, raw = request.matchdict["slug"], request.matchdict["version"]
    if not VERSION_NUMBER.match(raw) or int(raw) < 1:
        raise APIError(404, ErrorCode.VERSION_NOT_FOUND, f"{raw!r} is not a version number")
    try:
        body = xlsform.version_workbook(request.dbsession, slug, int(raw))
    except services.VersionNotFound as exc:
        raise APIError(404, ErrorCode.VERSION_NOT_FOUND, str(exc)) from exc
    except services.InstrumentNotFound as exc:
        raise APIError(404, ErrorCode.INSTRUMENT_NOT_FOUND, f"no instrument {slug!r}") from exc
    response = Response(body=body, content_type=xlsform.XLSX_MEDIA_TYPE)
    response.content_disposition = f'attachment; filename="{slug}-v{int(raw)}.xlsx"'
    response.cache_control = VERSION_CACHE_CONTROL
    return response


def _submitted(request: Request) -> tuple[Any, files.SourceMap | None]:
    """The raw definition in the request, and where its parts are in the file sent: a JSON body
    (as always), a YAML or XLSX body, or a multipart form with a ``file`` part."""
    media_type = request.content_type
    if media_type in JSON_CONTENT_TYPES:
        return json_body(request), files.SourceMap(text=request.body.decode("utf-8"))
    if media_type == "multipart/form-data":
        data, content_type, filename = _file_part(request)
    else:
        data, content_type, filename = request.body, media_type, None
    try:
        upload = files.read_instrument_file(data, content_type, filename)
    except files.UnsupportedFileType as exc:
        raise APIError(415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, exc.message) from exc
    except files.FileTooLarge as exc:
        raise APIError(413, ErrorCode.BODY_TOO_LARGE, exc.message) from exc
    except files.UnreadableFile as exc:
        details = [{"location": "body", **problem} for problem in exc.problems]
        summary = "; ".join(problem["message"] for problem in exc.problems)
        raise APIError(400, ErrorCode.BAD_REQUEST, f"the file cannot be read: {summary}", details) from exc
    if upload.problems or upload.definition is None:
        details = [{"location": "body", "path": "", **problem} for problem in upload.problems]
        summary = "; ".join(files.describe(problem) for problem in upload.problems[:3])
        raise APIError(422, ErrorCode.INVALID_INPUT, f"invalid instrument file: {summary}", details)
    return upload.definition, upload.source_map


def _file_part(request: Request) -> tuple[bytes, str | None, str | None]:
    try:
        part = request.POST.get("file")
    except Exception as exc:  # webob's multipart parser fails in many ways on a broken body
        raise APIError(400, ErrorCode.BAD_REQUEST, "the multipart body cannot be read") from exc
    if part is None:
        raise APIError(
            400,
            ErrorCode.BAD_REQUEST,
            "a multipart upload needs a part named 'file' holding the instrument file",
            [field_error("file", "missing")],
        )
    if not hasattr(part, "file"):
        raise APIError(
            400,
            ErrorCode.BAD_REQUEST,
            "the 'file' part must be a file (Content-Disposition with a filename)",
            [field_error("file", "not a file")],
        )
    return part.file.read(), part.type, part.filename


def submitted_definition(request: Request) -> tuple[dict[str, Any], files.SourceMap | None]:
    raw, source_map = _submitted(request)
    try:
        return services.validate_definition(raw, source_map=source_map), source_map
    except services.DefinitionError as exc:
        raise APIError(
            422, ErrorCode.INVALID_INPUT, f"invalid instrument definition: {exc}", exc.as_details()
        ) from exc


def _translations(request: Request, definition: dict[str, Any]) -> dict[str, Any]:
    """Missing and stale translations; the published versions count only for a caller who may
    read the instrument (others learn nothing about it from the answer)."""
    existing, study = services.instrument_study(request.dbsession, definition["slug"])
    history: list[dict[str, Any]] = []
    if existing and request.has_permission(Permission.INSTRUMENTS_READ, StudyInstrumentContext(study)):
        history = services.published_definitions(request.dbsession, definition["slug"])
    return translation_report(definition, history)


@view_config(
    route_name="instruments_validate",
    request_method="POST",
    renderer="json",
    permission=Permission.INSTRUMENTS_VALIDATE,
)
def validate(request: Request) -> dict[str, Any]:
    definition, _ = submitted_definition(request)
    return {
        "valid": True,
        "slug": definition["slug"],
        "content_hash": services.content_hash(definition),
        "translations": _translations(request, definition),
    }


@view_config(
    route_name="instruments",
    request_method="POST",
    renderer="json",
    permission=Permission.INSTRUMENTS_PUBLISH,
)
def publish(request: Request) -> dict[str, Any]:
    definition, source_map = submitted_definition(request)
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
        located = exc.located(source_map)
        raise APIError(409, ErrorCode.CONFLICT, str(exc), located.as_details()) from exc
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
