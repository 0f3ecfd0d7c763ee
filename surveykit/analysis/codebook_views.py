"""The codebook API (docs/codebook.md): thin views over ``surveykit.analysis.codebook``.

Reads need ``ANALYSIS_READ`` (analysts, coordinators and admins of any country of the study, see
``CodebookResource``); changes need ``CODEBOOK_EDIT`` (a grant over the whole study, or its
admins): see ``surveykit.analysis``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import colander
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from surveykit.analysis import (
    CodebookResource,
    codebook,
    codebook_files,
    codebook_import,
)
from surveykit.analysis import codebook_schemas as schemas
from surveykit.analysis.models import Code
from surveykit.audit import services as audit
from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.security import Permission
from surveykit.studies.models import Study
from surveykit.studies.views import load_study
from surveykit.web import (
    Representation,
    form_or_query_params,
    invalid_input,
    json_body,
    representation,
    uploaded_table,
)

CODE_ID = r"{code_id:\d{1,12}}"


def includeme(config: Any) -> None:
    base = "/api/v1/studies/{study}/codebook"
    code = f"{base}/codes/{CODE_ID}"
    for name, pattern in (
        ("codebook", base),
        ("codebook_codes", f"{base}/codes"),
        ("codebook_code", code),
        ("codebook_code_retire", f"{code}/retire"),
        ("codebook_code_reactivate", f"{code}/reactivate"),
        ("codebook_code_merge", f"{code}/merge"),
        ("codebook_code_history", f"{code}/history"),
        ("codebook_import", f"{base}/import"),
    ):
        config.add_route(name, pattern, factory=CodebookResource)
    config.scan(__name__)


# ------------------------------------------------------------------------------------------ helpers


def _codebook_error(exc: codebook.CodebookError) -> APIError:
    details = [field_error(exc.field or "", str(exc))]
    if isinstance(exc, codebook.StaleVersion):
        return APIError(409, ErrorCode.STALE_VERSION, str(exc), details)
    if isinstance(exc, codebook.StatusRefused):
        return APIError(409, ErrorCode.INVALID_STATUS_TRANSITION, str(exc), details)
    if isinstance(exc, codebook.NameTaken):
        return APIError(409, ErrorCode.CONFLICT, str(exc), details)
    return APIError(422, ErrorCode.INVALID_INPUT, str(exc), details)


def _load_code(request: Request, study: Study) -> Code:
    code_id = int(request.matchdict["code_id"])
    changing = request.method != "GET"
    if changing:
        codebook.lock_codebook(request.dbsession, study)
    try:
        return codebook.get_code(request.dbsession, study, code_id, for_update=changing)
    except codebook.CodeNotFound as exc:
        raise APIError(
            404, ErrorCode.CODE_NOT_FOUND, str(exc), [field_error("code_id", str(exc), "path")]
        ) from exc


def _optional_body(request: Request, schema: colander.SchemaNode) -> dict[str, Any]:
    """An action's body may be left out altogether."""
    if not request.body:
        try:
            return schema.deserialize({})
        except colander.Invalid as invalid:
            raise invalid_input(invalid) from invalid
    return json_body(request, schema)


def _expected_version(request: Request, from_body: int | None) -> int | None:
    """The version the caller saw: the body's ``version`` or ``If-Match: "N"`` (they must agree)."""
    header = request.headers.get("If-Match")
    if header is None:
        return from_body
    tag = header.strip().removeprefix("W/").strip('"')
    if not (tag.isascii() and tag.isdigit()) or len(tag) > 9:
        message = 'If-Match must be the code\'s version as an entity tag, such as "3"'
        raise APIError(422, ErrorCode.INVALID_INPUT, message, [field_error("If-Match", message, "header")])
    if from_body is not None and from_body != int(tag):
        message = "the body's version and If-Match disagree"
        raise APIError(422, ErrorCode.INVALID_INPUT, message, [field_error("version", message)])
    return int(tag)


def _record(request: Request, changes: list[codebook.Change]) -> None:
    for change in changes:
        audit.record_in_request(request, change.action, target=change.target, **change.details)


def _answer(request: Request, study: Study, code: Code, status: int = 200) -> dict[str, Any]:
    request.response.status = status
    request.response.headers["ETag"] = f'"{code.version}"'
    request.response.cache_control = "no-store"
    return codebook.describe_one(request.dbsession, study, code)


# -------------------------------------------------------------------------------------------- views


@view_config(route_name="codebook", request_method="GET", permission=Permission.ANALYSIS_READ)
def get_codebook(request: Request) -> Response:
    """The whole tree, with a strong ETag: an unchanged codebook is answered 304."""
    study = load_study(request)
    payload = {"study": study.slug, "codes": codebook.codebook_tree(request.dbsession, study)}
    canonical = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    etag = "cb-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]
    return representation(request, Representation.of_json(etag, payload), "private, no-cache")


@view_config(
    route_name="codebook_codes", request_method="POST", renderer="json", permission=Permission.CODEBOOK_EDIT
)
def create_code(request: Request) -> dict[str, Any]:
    study = load_study(request)
    body = json_body(request, schemas.CodeCreateSchema())
    codebook.lock_codebook(request.dbsession, study)
    try:
        code, change = codebook.create_code(
            request.dbsession,
            study,
            request.identity.actor,
            name=body["name"],
            definition=body["definition"] or "",
            colour=body["colour"],
            parent_id=body["parent_id"],
        )
    except codebook.CodebookError as exc:
        raise _codebook_error(exc) from exc
    _record(request, [change])
    request.response.headers["Location"] = request.route_path(
        "codebook_code", study=study.slug, code_id=code.id
    )
    return _answer(request, study, code, 201)


@view_config(
    route_name="codebook_code", request_method="GET", renderer="json", permission=Permission.ANALYSIS_READ
)
def get_code(request: Request) -> dict[str, Any]:
    study = load_study(request)
    code = _load_code(request, study)
    return _answer(request, study, code)


@view_config(
    route_name="codebook_code", request_method="PATCH", renderer="json", permission=Permission.CODEBOOK_EDIT
)
def update_code(request: Request) -> dict[str, Any]:
    study = load_study(request)
    body = json_body(request, schemas.CodeUpdateSchema())
    expected = _expected_version(request, body.pop("version"))
    if expected is None:
        message = "give the version of the code you changed (body field version, or If-Match)"
        raise APIError(422, ErrorCode.INVALID_INPUT, message, [field_error("version", message)])
    code = _load_code(request, study)
    try:
        change = codebook.update_code(request.dbsession, study, code, expected, body)
    except codebook.CodebookError as exc:
        raise _codebook_error(exc) from exc
    if change is not None:
        _record(request, [change])
    return _answer(request, study, code)


def _status_change(request: Request, change_status: Any) -> dict[str, Any]:
    study = load_study(request)
    body = _optional_body(request, schemas.CodeActionSchema())
    expected = _expected_version(request, body["version"])
    code = _load_code(request, study)
    try:
        change = change_status(request.dbsession, study, code, expected)
    except codebook.CodebookError as exc:
        raise _codebook_error(exc) from exc
    _record(request, [change])
    return _answer(request, study, code)


@view_config(
    route_name="codebook_code_retire",
    request_method="POST",
    renderer="json",
    permission=Permission.CODEBOOK_EDIT,
)
def retire_code(request: Request) -> dict[str, Any]:
    return _status_change(request, codebook.retire_code)


@view_config(
    route_name="codebook_code_reactivate",
    request_method="POST",
    renderer="json",
    permission=Permission.CODEBOOK_EDIT,
)
def reactivate_code(request: Request) -> dict[str, Any]:
    return _status_change(request, codebook.reactivate_code)


@view_config(
    route_name="codebook_code_merge",
    request_method="POST",
    renderer="json",
    permission=Permission.CODEBOOK_EDIT,
)
def merge_code(request: Request) -> dict[str, Any]:
    """Merge the code into ``into``; answers with the code merged into."""
    study = load_study(request)
    body = json_body(request, schemas.CodeMergeSchema())
    expected = _expected_version(request, body["version"])
    source = _load_code(request, study)
    try:
        changes = codebook.merge_code(request.dbsession, study, source, body["into"], expected)
    except codebook.CodebookError as exc:
        raise _codebook_error(exc) from exc
    _record(request, changes)
    target = codebook.get_code(request.dbsession, study, body["into"])
    return {
        "merged": codebook.describe_one(request.dbsession, study, source),
        "into": codebook.describe_one(request.dbsession, study, target),
        "codings_moved": changes[0].details["codings_moved"],
    }


@view_config(
    route_name="codebook_code_history",
    request_method="GET",
    renderer="json",
    permission=Permission.ANALYSIS_READ,
)
def code_history(request: Request) -> dict[str, Any]:
    study = load_study(request)
    code = _load_code(request, study)
    events = codebook.code_history(request.dbsession, study, code)
    return {
        "code": code.id,
        "history": [
            {
                "at": event.at.isoformat(),
                "action": event.action,
                "actor": event.actor,
                "details": event.details,
            }
            for event in events
        ],
    }


@view_config(
    route_name="codebook_import", request_method="POST", renderer="json", permission=Permission.CODEBOOK_EDIT
)
def import_codebook(request: Request) -> dict[str, Any]:
    """A CSV or XLSX codebook (raw, or the multipart field ``file``): all rows or none."""
    study = load_study(request)
    data, content_type, filename, form = uploaded_table(request, "codebook")
    params = form_or_query_params(request, form, schemas.ImportQuerySchema())
    try:
        kind = codebook_files.file_kind(data, content_type, filename)
    except codebook_files.UnsupportedFile as exc:
        raise APIError(
            415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, str(exc), [error.as_detail() for error in exc.errors]
        ) from exc
    try:
        rows = codebook_files.read_file(data, kind)
        codebook.lock_codebook(request.dbsession, study)
        result = codebook_import.import_file(
            request.dbsession, study, rows, request.identity.actor, dry_run=params["dry_run"]
        )
    except codebook_files.UnsupportedFile as exc:
        raise APIError(
            415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, str(exc), [error.as_detail() for error in exc.errors]
        ) from exc
    except codebook_files.FileRejected as exc:
        raise APIError(
            422,
            ErrorCode.IMPORT_INVALID,
            f"nothing was imported: {exc}",
            [error.as_detail() for error in exc.errors],
        ) from exc
    summary = {"file_type": kind, **result.summary()}
    if not result.dry_run:
        _record(request, result.changes)
        audit.record_in_request(
            request, "codebook.imported", target=f"{study.slug}/codebook", filename=filename, **summary
        )
    return {**summary, "codes": [code.as_json() for code in result.codes]}
