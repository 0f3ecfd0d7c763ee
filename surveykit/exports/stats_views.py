"""GET /api/v1/exports/{study}/{country}.csv, .sps and .do (and ALL.csv, ALL.sps, ALL.do).

The same grants, scope, query string (``activity``, ``lang``), 304 and audit as the workbook
(``views``); each file has its own ETag. The CSV is generated row by row from the database cursors
into a temporary file while the transaction is open, then sent from that file: the request's
session is committed and closed before the server iterates a response body, so a body read from
the cursors themselves would outlive its transaction. Memory stays flat either way.
"""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import FileIter, Response
from pyramid.view import view_config

from surveykit.audit import services as audit
from surveykit.exports import csv_export, services, stats_syntax
from surveykit.exports.views import (
    CACHE_CONTROL,
    export_scope,
    not_modified,
    written_to_temporary_file,
)
from surveykit.security import Permission
from surveykit.web import client_holds


def _headers(response: Response, tag: str, file_name: str) -> Response:
    response.headers["ETag"] = f'"{tag}"'
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["Vary"] = "Authorization"
    response.headers["Content-Disposition"] = f'attachment; filename="{file_name}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def csv_response(request: Request, country: str) -> Response:
    scope = export_scope(request, country)
    session = request.dbsession
    tag = services.content_tag(session, scope, csv_export.ARTIFACT)
    if client_holds(request, tag):
        return not_modified(request, scope, tag, format="csv")
    body, size, result = written_to_temporary_file(
        "surveykit-csv-", lambda out: csv_export.write_csv(session, scope, out)
    )
    audit.record_in_request(
        request,
        "export.download",
        target=scope.target,
        not_modified=False,
        etag=result.content_hash,
        format="csv",
        rows=result.rows,
    )
    response = Response(content_type="text/csv", charset="utf-8")
    response.app_iter = FileIter(body)
    response.content_length = size
    return _headers(response, result.content_hash, f"{csv_export.file_stem(scope)}.csv")


def syntax_response(request: Request, country: str, artifact: str) -> Response:
    scope = export_scope(request, country)
    session = request.dbsession
    text, tag = stats_syntax.syntax_file(session, scope, artifact)
    if client_holds(request, tag):
        return not_modified(request, scope, tag, format=artifact)
    audit.record_in_request(
        request, "export.download", target=scope.target, not_modified=False, etag=tag, format=artifact
    )
    response = Response(body=text.encode("utf-8"), content_type="text/plain", charset="utf-8")
    return _headers(response, tag, f"{csv_export.file_stem(scope)}.{artifact}")


@view_config(route_name="export_country_csv", request_method="GET", permission=Permission.EXPORTS_READ)
def export_country_csv(request: Request) -> Response:
    return csv_response(request, request.matchdict["country"])


@view_config(route_name="export_study_csv", request_method="GET", permission=Permission.EXPORTS_READ)
def export_study_csv(request: Request) -> Response:
    return csv_response(request, services.ALL_COUNTRIES)


@view_config(route_name="export_country_sps", request_method="GET", permission=Permission.EXPORTS_READ)
def export_country_sps(request: Request) -> Response:
    return syntax_response(request, request.matchdict["country"], "sps")


@view_config(route_name="export_study_sps", request_method="GET", permission=Permission.EXPORTS_READ)
def export_study_sps(request: Request) -> Response:
    return syntax_response(request, services.ALL_COUNTRIES, "sps")


@view_config(route_name="export_country_do", request_method="GET", permission=Permission.EXPORTS_READ)
def export_country_do(request: Request) -> Response:
    return syntax_response(request, request.matchdict["country"], "do")


@view_config(route_name="export_study_do", request_method="GET", permission=Permission.EXPORTS_READ)
def export_study_do(request: Request) -> Response:
    return syntax_response(request, services.ALL_COUNTRIES, "do")
