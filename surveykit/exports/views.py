"""GET /api/v1/exports/{study}/{country}.xlsx and /api/v1/exports/{study}/ALL.xlsx.

The ETag is the content hash of the data that goes in (``services.content_tag``), computed from
light queries before anything is built: a client sending it back in ``If-None-Match`` is answered
304 at once. A 200 carries the hash computed while the workbook was written, so the tag always
names exactly what the body holds. Both are audited (``export.download``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import IO, Any, TypeVar

import colander
from pyramid.request import Request
from pyramid.response import FileIter, Response
from pyramid.view import view_config

from surveykit.audit import services as audit
from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.exports import services
from surveykit.instruments.schemas import LANGUAGE_PATTERN, StrictString
from surveykit.security import Permission
from surveykit.studies import services as studies
from surveykit.web import client_holds, query_params

CACHE_CONTROL = "private, no-cache"
Written = TypeVar("Written")


class ExportQuerySchema(colander.MappingSchema):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, typ=colander.Mapping(unknown="raise"), **kw)

    activity = colander.SchemaNode(
        StrictString(),
        validator=colander.Regex(services.ACTIVITY.pattern, "must be a research activity, RA1 to RA9"),
        missing=None,
    )
    lang = colander.SchemaNode(
        StrictString(),
        validator=colander.Regex(LANGUAGE_PATTERN, "must be a language code like 'en' or 'pt-BR'"),
        missing=None,
    )


def export_scope(request: Request, country: str) -> services.Scope:
    """The scope of the export in the URL and its query string, or the JSON error that refuses it."""
    query = query_params(request, ExportQuerySchema())
    study = request.matchdict["study"]
    try:
        return services.resolve_scope(request.dbsession, study, country, query["activity"], query["lang"])
    except studies.StudyNotFound as exc:
        raise APIError(
            404, ErrorCode.STUDY_NOT_FOUND, str(exc), [field_error("study", str(exc), "path")]
        ) from exc
    except studies.CountryNotFound as exc:
        raise APIError(
            404, ErrorCode.COUNTRY_NOT_FOUND, str(exc), [field_error("country", str(exc), "path")]
        ) from exc
    except studies.ActivityNotFound as exc:
        raise APIError(
            404, ErrorCode.ACTIVITY_NOT_FOUND, str(exc), [field_error("activity", str(exc), "querystring")]
        ) from exc
    except services.LanguageNotOffered as exc:
        raise APIError(
            422, ErrorCode.INVALID_INPUT, str(exc), [field_error("lang", str(exc), "querystring")]
        ) from exc


def written_to_temporary_file(
    prefix: str, write: Callable[[IO[bytes]], Written]
) -> tuple[IO[bytes], int, Written]:
    """Run ``write`` into a temporary file (closed if it fails): the file rewound, its size, and
    what ``write`` returned. The body is written while the request's transaction is open, and sent
    from the file after it ends."""
    body = tempfile.TemporaryFile(prefix=prefix)
    try:
        result = write(body)
        size = body.tell()
        body.seek(0)
    except BaseException:
        body.close()
        raise
    return body, size, result


def export_response(request: Request, country: str) -> Response:
    """The workbook of ``country`` (or ``ALL``) of the study in the URL, or 304 (also for the console)."""
    scope = export_scope(request, country)
    session = request.dbsession
    tag = services.content_tag(session, scope)
    if client_holds(request, tag):
        return not_modified(request, scope, tag)
    body, size, result = written_to_temporary_file(
        "surveykit-export-",
        lambda out: services.write_workbook(session, scope, out, request.identity.username),
    )
    audit.record_in_request(
        request,
        "export.download",
        target=scope.target,
        not_modified=False,
        etag=result.content_hash,
        interviews=result.total.interviews,
        participants=result.total.participants,
    )
    response = Response(content_type=services.XLSX_MEDIA_TYPE)
    response.app_iter = FileIter(body)
    response.content_length = size
    response.headers["ETag"] = f'"{result.content_hash}"'
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["Vary"] = "Authorization"
    response.headers["Content-Disposition"] = f'attachment; filename="{services.file_name(scope, result)}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def not_modified(request: Request, scope: services.Scope, tag: str, **details: Any) -> Response:
    """The audited 304 for a client that holds the export tagged ``tag``."""
    audit.record_in_request(
        request, "export.download", target=scope.target, not_modified=True, etag=tag, **details
    )
    response = Response(status=304)
    response.headers["ETag"] = f'"{tag}"'
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["Vary"] = "Authorization"
    return response


@view_config(route_name="export_country", request_method="GET", permission=Permission.EXPORTS_READ)
def export_country(request: Request) -> Response:
    return export_response(request, request.matchdict["country"])


@view_config(route_name="export_study", request_method="GET", permission=Permission.EXPORTS_READ)
def export_study(request: Request) -> Response:
    return export_response(request, services.ALL_COUNTRIES)
