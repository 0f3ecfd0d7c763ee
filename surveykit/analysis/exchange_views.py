"""REFI-QDA exchange: .qdpx projects and .qdc codebooks, downloaded and imported.

- ``GET  /api/v1/studies/{study}/countries/{country}/analysis.qdpx``: a country's project
  (``ANALYSIS_READ`` on the country);
- ``GET  /api/v1/studies/{study}/analysis.qdpx``: the study's project (a grant over the whole study);
- ``GET  /api/v1/studies/{study}/codebook.qdc``: the codebook alone;
- ``POST /api/v1/studies/{study}/codebook.qdc``: import a codebook (``CODEBOOK_EDIT``), ``?dry_run=true``;
- ``POST /api/v1/studies/{study}/countries/{country}/analysis.qdpx``: import the codings of a project
  surveykit exported and a QDA tool changed (``ANALYSIS_CODE``), ``?dry_run=true``.

The files are deterministic, so their SHA-256 is a strong ETag and ``If-None-Match`` answers 304.
Downloads and imports are audited (``analysis.exchange_download``, ``analysis.codebook_import``,
``analysis.codings_import``).
"""

from __future__ import annotations

import tempfile
from typing import IO, Any

import colander
from pyramid.request import Request
from pyramid.response import FileIter, Response
from pyramid.view import view_config

from surveykit.analysis import (
    CodebookResource,
    CountryAnalysisResource,
    StudyAnalysisResource,
    exchange,
    exchange_import,
)
from surveykit.analysis import refi_read as reader
from surveykit.analysis import refi_write as writer
from surveykit.audit import services as audit
from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.participants.schemas import QueryBoolean
from surveykit.security import Permission
from surveykit.studies import services as studies
from surveykit.web import client_holds, query_params

QDPX_MEDIA_TYPE = "application/vnd.refi-qda.qdpx+zip"
QDC_MEDIA_TYPE = "application/xml"
QDPX_UPLOAD_TYPES = (
    "application/zip",
    "application/x-zip-compressed",
    "application/octet-stream",
    QDPX_MEDIA_TYPE,
)
QDC_UPLOAD_TYPES = ("application/xml", "text/xml", "application/octet-stream")
CACHE_CONTROL = "private, no-cache"


class _Strict(colander.MappingSchema):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, typ=colander.Mapping(unknown="raise"), **kw)


class DownloadQuerySchema(_Strict):
    pass


class ImportQuerySchema(_Strict):
    dry_run = colander.SchemaNode(QueryBoolean(), missing=False)


def _scope(request: Request, country: str | None) -> exchange.ExchangeScope:
    try:
        return exchange.resolve_scope(request.dbsession, request.matchdict["study"], country)
    except studies.StudyNotFound as exc:
        raise APIError(
            404, ErrorCode.STUDY_NOT_FOUND, str(exc), [field_error("study", str(exc), "path")]
        ) from exc
    except studies.CountryNotFound as exc:
        raise APIError(
            404, ErrorCode.COUNTRY_NOT_FOUND, str(exc), [field_error("country", str(exc), "path")]
        ) from exc


def _file_response(
    request: Request, body: bytes | IO[bytes], media_type: str, file_name: str, target: str, kind: str
) -> Response:
    """The file (bytes, or a temporary file this response closes) or a 304 if the client holds it."""
    if isinstance(body, bytes):
        tag, size = exchange.content_tag(body), len(body)
    else:
        tag, size = exchange.file_tag(body), body.tell()
    held = client_holds(request, tag)
    audit.record_in_request(
        request, "analysis.exchange_download", target=target, file=kind, not_modified=held, etag=tag
    )
    if held:
        response = Response(status=304)
        if not isinstance(body, bytes):
            body.close()
    elif isinstance(body, bytes):
        response = Response(body=body, content_type=media_type)
    else:
        body.seek(0)
        response = Response(content_type=media_type)
        response.app_iter = FileIter(body)
        response.content_length = size
    if not held:
        response.headers["Content-Disposition"] = f'attachment; filename="{file_name}"'
        response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["ETag"] = f'"{tag}"'
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["Vary"] = "Authorization"
    return response


def _project_response(request: Request, country: str | None) -> Response:
    query_params(request, DownloadQuerySchema())
    scope = _scope(request, country)
    # Written to a temporary file batch by batch: a study's project does not fit in memory.
    body = tempfile.TemporaryFile(prefix="surveykit-qdpx-")  # noqa: SIM115 - closed by the response
    try:
        exchange.write_project_qdpx(request.dbsession, scope, body)
        name = f"{scope.study_slug}-{country or 'ALL'}-analysis.qdpx"
        return _file_response(request, body, QDPX_MEDIA_TYPE, name, scope.target, "qdpx")
    except BaseException:
        body.close()
        raise


@view_config(
    route_name="analysis_country_qdpx",
    request_method="GET",
    permission=Permission.EXPORTS_READ,
)
def download_country_project(request: Request) -> Response:
    return _project_response(request, request.matchdict["country"])


@view_config(route_name="analysis_study_qdpx", request_method="GET", permission=Permission.EXPORTS_READ)
def download_study_project(request: Request) -> Response:
    return _project_response(request, None)


@view_config(route_name="analysis_codebook_qdc", request_method="GET", permission=Permission.EXPORTS_READ)
def download_codebook(request: Request) -> Response:
    query_params(request, DownloadQuerySchema())
    scope = _scope(request, None)
    codebook = exchange.build_codebook(request.dbsession, scope.study_id)
    if not codebook.codes:
        # The standard's codebook holds at least one code: an empty one would not be valid.
        raise APIError(404, ErrorCode.NOT_FOUND, f"the study {scope.study_slug} has no codes yet")
    body = writer.codebook_xml(codebook)
    return _file_response(
        request, body, QDC_MEDIA_TYPE, f"{scope.study_slug}-codebook.qdc", scope.study_slug, "qdc"
    )


def _upload(request: Request, accepted: tuple[str, ...], what: str) -> bytes:
    if request.content_type not in accepted:
        raise APIError(
            415,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"send the {what} as the request body with Content-Type {', '.join(accepted)}, "
            f"not {request.content_type or 'no content type'}",
        )
    body = request.body
    if not body:
        raise APIError(
            422,
            ErrorCode.IMPORT_INVALID,
            f"the body is empty: send the {what}",
            [field_error("", "empty body")],
        )
    return body


def _refused(message: str, problems: list[reader.Problem]) -> APIError:
    details = [field_error(problem.path, problem.message) for problem in problems]
    first = f": {problems[0].path}: {problems[0].message}" if problems else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return APIError(422, ErrorCode.IMPORT_INVALID, f"{message}{first}{more}", details)


@view_config(
    route_name="analysis_codebook_qdc",
    request_method="POST",
    renderer="json",
    permission=Permission.CODEBOOK_EDIT,
)
def import_codebook(request: Request) -> dict[str, Any]:
    params = query_params(request, ImportQuerySchema())
    scope = _scope(request, None)
    data = _upload(request, QDC_UPLOAD_TYPES, ".qdc codebook")
    try:
        codebook = reader.read_qdc(data)
        changes = exchange_import.import_codebook(
            request.dbsession, scope.study_id, codebook, request.identity.username, dry_run=params["dry_run"]
        )
    except (reader.RefiError, exchange_import.ImportRefused) as exc:
        raise _refused(exc.message, exc.problems) from exc
    if not params["dry_run"]:
        audit.record_in_request(
            request,
            "analysis.codebook_import",
            target=scope.study_slug,
            created=[item["guid"] for item in changes.created],
            updated=[item["guid"] for item in changes.updated],
            unchanged=changes.unchanged,
        )
    return {"dry_run": params["dry_run"], **changes.as_json()}


@view_config(
    route_name="analysis_country_qdpx",
    request_method="POST",
    renderer="json",
    permission=Permission.ANALYSIS_CODE,
)
def import_codings(request: Request) -> dict[str, Any]:
    params = query_params(request, ImportQuerySchema())
    scope = _scope(request, request.matchdict["country"])
    data = _upload(request, QDPX_UPLOAD_TYPES, ".qdpx project")
    identity = request.identity
    try:
        project = reader.read_qdpx(data)
        changes = exchange_import.import_codings(
            request.dbsession, scope, project, identity.user_id, identity.username, dry_run=params["dry_run"]
        )
    except (reader.RefiError, exchange_import.ImportRefused) as exc:
        raise _refused(exc.message, exc.problems) from exc
    if not params["dry_run"]:
        audit.record_in_request(
            request,
            "analysis.codings_import",
            target=scope.target,
            created=[item["guid"] for item in changes.created],
            already_there=changes.already_there,
        )
    return {"dry_run": params["dry_run"], **changes.as_json()}


def includeme(config: Any) -> None:
    config.add_route(
        "analysis_country_qdpx",
        "/api/v1/studies/{study}/countries/{country:[A-Z]{2}}/analysis.qdpx",
        factory=CountryAnalysisResource,
    )
    config.add_route(
        "analysis_study_qdpx", "/api/v1/studies/{study}/analysis.qdpx", factory=StudyAnalysisResource
    )
    config.add_route(
        "analysis_codebook_qdc", "/api/v1/studies/{study}/codebook.qdc", factory=CodebookResource
    )
    config.scan("surveykit.analysis.exchange_views")
