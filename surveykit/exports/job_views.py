"""Export jobs over HTTP (docs/export-jobs.md).

- ``POST /api/v1/exports/{study}/{country}.xlsx/jobs`` (and ``ALL.xlsx/jobs``): queue the workbook
  the synchronous route would send; ``202`` with ``Location`` and the job. Same grants, same query.
- ``GET /api/v1/export-jobs/{id}``: state and progress; ``DELETE``: cancel it, or remove its file.
- ``GET /api/v1/export-jobs/{id}/file``: the workbook once done (``409`` before).

A job is its owner's alone: anyone else gets ``404``, as for an id that does not exist. The owner
also still needs the export grant of the job's scope, checked on every call.
"""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.response import FileIter, Response
from pyramid.view import view_config

from surveykit.audit import services as audit
from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.exports import export_acl, jobs, services
from surveykit.exports.models import ExportJob
from surveykit.exports.views import CACHE_CONTROL, export_scope
from surveykit.security import Permission
from surveykit.web import client_holds


def _not_found(job_id: str) -> APIError:
    message = f"no export job {job_id!r} of yours (it may have expired)"
    return APIError(404, ErrorCode.NOT_FOUND, message, [field_error("job", message, "path")])


class ExportJobResource:
    """One job of the caller, found before the permission check (which needs its scope)."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.job: ExportJob | None = None
        identity = request.identity
        if identity is None:
            self.__acl__: list[tuple[str, str, str]] = []  # 401 from the permission check
            return
        job_id = request.matchdict["job"]
        job = jobs.owned_job(request.dbsession, job_id, identity.user_id)
        if job is None:
            raise _not_found(job_id)
        self.job = job
        self.__acl__ = export_acl(
            job.study_slug, None if job.country == services.ALL_COUNTRIES else job.country
        )


def _settings(request: Request) -> jobs.JobSettings:
    return jobs.JobSettings.from_settings(request.registry.settings)


def _job_body(request: Request, job: ExportJob) -> dict[str, Any]:
    return jobs.job_json(
        job,
        request.route_path("export_job", job=job.id),
        request.route_path("export_job_file", job=job.id),
    )


def _wake_worker_after_commit(request: Request) -> None:
    worker = request.registry.get("export_worker")
    if worker is None:
        return
    request.tm.get().addAfterCommitHook(lambda committed: committed and worker.wake())


def start_job(request: Request, country: str) -> Response:
    scope = export_scope(request, country)
    identity = request.identity
    job = jobs.new_job(request.dbsession, identity.user_id, identity.username, scope)
    audit.record_in_request(request, "export_job.created", target=scope.target, job=job.id, format=job.format)
    _wake_worker_after_commit(request)
    response = Response(json_body=_job_body(request, job), status=202, charset="utf-8")
    response.headers["Location"] = request.route_path("export_job", job=job.id)
    response.headers["Cache-Control"] = "no-store"
    return response


@view_config(route_name="export_country_jobs", request_method="POST", permission=Permission.EXPORTS_READ)
def start_country_job(request: Request) -> Response:
    return start_job(request, request.matchdict["country"])


@view_config(route_name="export_study_jobs", request_method="POST", permission=Permission.EXPORTS_READ)
def start_study_job(request: Request) -> Response:
    return start_job(request, services.ALL_COUNTRIES)


@view_config(
    route_name="export_job", request_method="GET", permission=Permission.EXPORTS_READ, renderer="json"
)
def show_job(request: Request) -> dict[str, Any]:
    request.response.headers["Cache-Control"] = "no-store"
    return _job_body(request, request.context.job)


@view_config(route_name="export_job", request_method="DELETE", permission=Permission.EXPORTS_READ)
def delete_job(request: Request) -> Response:
    job = request.context.job
    audit.record_in_request(
        request, "export_job.deleted", target=jobs.job_target(job), job=job.id, state=job.state
    )
    jobs.remove_job(request.dbsession, job, _settings(request))
    return Response(status=204)


@view_config(route_name="export_job_file", request_method="GET", permission=Permission.EXPORTS_READ)
def job_file(request: Request) -> Response:
    job: ExportJob = request.context.job
    path = jobs.result_path(job, _settings(request))
    if job.state != "done" or path is None:
        message = f"the export job is {job.state}; its file can be downloaded once it is done"
        if job.state == "failed":
            message = f"the export job failed: {job.error}"
        raise APIError(409, ErrorCode.CONFLICT, message, [field_error("job", message, "path")])
    target = jobs.job_target(job)
    if client_holds(request, job.etag or ""):
        audit.record_in_request(
            request, "export.download", target=target, not_modified=True, etag=job.etag, job=job.id
        )
        response = Response(status=304)
    else:
        try:
            body = open(path, "rb")  # noqa: SIM115 - closed by the FileIter
        except FileNotFoundError as exc:
            raise _not_found(job.id) from exc
        audit.record_in_request(
            request, "export.download", target=target, not_modified=False, etag=job.etag, job=job.id
        )
        response = Response(content_type=services.XLSX_MEDIA_TYPE)
        response.app_iter = FileIter(body)
        response.content_length = job.file_size
        response.headers["Content-Disposition"] = f'attachment; filename="{job.file_name}"'
        response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["ETag"] = f'"{job.etag}"'
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["Vary"] = "Authorization"
    return response
