"""Codings of a country's interview answers, and agreement between two coders (docs/coding.md).

A coder reads the answers they code through the sync pull (``GET /api/v1/sync/changes``), which
gives analysts the current records of their countries.
"""

from __future__ import annotations

from typing import Any

import colander
from pyramid.request import Request
from pyramid.view import view_config

from surveykit.analysis import CountryAnalysisResource
from surveykit.analysis import coding as services
from surveykit.analysis.codebook import MAX_ID
from surveykit.analysis.models import ANCHORS
from surveykit.audit import services as audit
from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.instruments.schemas import StrictBoolean, StrictString
from surveykit.participants.schemas import StrictInteger
from surveykit.security import Permission
from surveykit.studies import services as studies
from surveykit.studies.models import Study
from surveykit.studies.schemas import Strict
from surveykit.studies.views import load_study
from surveykit.web import json_body, query_params

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _uuid_node(name: str, **kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(
        StrictString(),
        name=name,
        validator=colander.Regex(UUID_PATTERN, "must be a lower-case hyphenated UUID"),
        **kw,
    )


def _offset_node(name: str, **kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(StrictInteger(), name=name, validator=colander.Range(min=0), **kw)


def _code_node(**kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(
        StrictInteger(),
        name="code_id",
        validator=colander.Range(1, MAX_ID, max_err="no code has so large an id"),
        **kw,
    )


class MemoText(colander.String):
    """A memo: text over several lines (the text rule's, as ``StrictString``), or "" (blank) for
    none, which is how a memo is cleared."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if isinstance(cstruct, str) and not cstruct.strip():
            return ""
        return StrictString(multiline=True).deserialize(node, cstruct)


def _memo_node(**kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(
        MemoText(), name="memo", validator=colander.Length(max=services.MEMO_MAX), **kw
    )


def _question_node(**kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(StrictString(), name="question_id", validator=colander.Length(1, 64), **kw)


class NewCodingSchema(Strict):
    interview_uuid = _uuid_node("interview_uuid")
    question_id = _question_node(missing=None)
    start = _offset_node("start", missing=None)
    end = _offset_node("end", missing=None)
    quote_id = _uuid_node("quote_id", missing=None)
    code_id = _code_node()
    memo = _memo_node(missing="")


class CodingChangeSchema(Strict):
    code_id = _code_node(missing=colander.drop)
    memo = _memo_node(missing=colander.drop)
    start = _offset_node("start", missing=colander.drop)
    end = _offset_node("end", missing=colander.drop)
    confirm = colander.SchemaNode(StrictBoolean(), name="confirm", missing=colander.drop)

    def validator(self, node: colander.SchemaNode, value: dict[str, Any]) -> None:
        if not value:
            raise colander.Invalid(node, "give at least one of code_id, memo, start and end, confirm")


class QueryInteger(colander.Integer):
    """A whole number written in digits only (no sign, no spaces), as ids and page sizes are."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        if cstruct is colander.null:
            return colander.null
        if not (isinstance(cstruct, str) and cstruct.isascii() and cstruct.isdigit() and len(cstruct) < 10):
            raise colander.Invalid(node, "must be a whole number")
        return int(cstruct)


class ListQuerySchema(Strict):
    coder = colander.SchemaNode(StrictString(), validator=colander.Length(1, 64), missing=None)
    code_id = colander.SchemaNode(QueryInteger(), missing=None)
    interview_uuid = _uuid_node("interview_uuid", missing=None)
    question_id = _question_node(missing=None)
    anchor = colander.SchemaNode(StrictString(), validator=colander.OneOf(ANCHORS), missing=None)
    after = colander.SchemaNode(QueryInteger(), missing=None)
    limit = colander.SchemaNode(
        QueryInteger(), validator=colander.Range(1, services.MAX_PAGE), missing=services.DEFAULT_PAGE
    )


def _study_and_country(request: Request) -> tuple[Study, str]:
    study = load_study(request)
    country = request.matchdict["country"]
    try:
        studies.get_country(request.dbsession, study, country)
    except studies.CountryNotFound as exc:
        raise APIError(
            404, ErrorCode.COUNTRY_NOT_FOUND, str(exc), [field_error("country", str(exc), "path")]
        ) from exc
    return study, country


def _coder(request: Request, study: Study, country: str) -> services.Coder:
    identity = request.identity
    return services.Coder(
        identity.user_id, identity.username, identity.has_role("admin", study.slug, country)
    )


def _service_error(exc: Exception) -> APIError:
    if isinstance(exc, services.InterviewNotFound):
        return APIError(
            404, ErrorCode.INTERVIEW_NOT_FOUND, str(exc), [field_error("interview_uuid", str(exc))]
        )
    if isinstance(exc, services.CodingNotFound):
        return APIError(
            404, ErrorCode.CODING_NOT_FOUND, str(exc), [field_error("coding_id", str(exc), "path")]
        )
    if isinstance(exc, services.NotYourCoding):
        return APIError(403, ErrorCode.FORBIDDEN, str(exc))
    assert isinstance(exc, services.CodingInvalid)
    return APIError(422, ErrorCode.INVALID_INPUT, f"{exc.path}: {exc}", [field_error(exc.path, str(exc))])


def _target(study: Study, country: str, coding_id: int) -> str:
    return f"{study.slug}/{country}/codings/{coding_id}"


def _load(request: Request, study: Study, country: str) -> Any:
    raw = request.matchdict["coding_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        raise APIError(404, ErrorCode.CODING_NOT_FOUND, f"no coding {raw!r}")
    try:
        return services.get_coding(request.dbsession, study, country, int(raw))
    except services.CodingNotFound as exc:
        raise _service_error(exc) from exc


@view_config(route_name="codings", request_method="GET", renderer="json", permission=Permission.ANALYSIS_READ)
def list_codings(request: Request) -> dict[str, Any]:
    query = query_params(request, ListQuerySchema())
    study, country = _study_and_country(request)
    filters = services.CodingFilter(
        coder=query["coder"],
        code_id=query["code_id"],
        interview_uuid=query["interview_uuid"],
        question_id=query["question_id"],
        anchor=query["anchor"],
    )
    page = services.coding_page(request.dbsession, study, country, filters, query["after"], query["limit"])
    body: dict[str, Any] = {"codings": [services.describe_coding(row) for row in page.codings]}
    if page.next_after is not None:
        body["next_after"] = page.next_after
        params = {key: value for key, value in request.GET.items() if key != "after"}
        body["next"] = request.route_path(
            "codings", study=study.slug, country=country, _query={**params, "after": page.next_after}
        )
    return body


@view_config(
    route_name="codings", request_method="POST", renderer="json", permission=Permission.ANALYSIS_CODE
)
def create_coding(request: Request) -> dict[str, Any]:
    body = json_body(request, NewCodingSchema())
    study, country = _study_and_country(request)
    passage = services.Passage(
        body["interview_uuid"], body["question_id"], body["start"], body["end"], body["quote_id"]
    )
    try:
        coding = services.create_coding(
            request.dbsession,
            study,
            country,
            _coder(request, study, country),
            passage,
            body["code_id"],
            body["memo"],
        )
    except (services.InterviewNotFound, services.CodingInvalid) as exc:
        raise _service_error(exc) from exc
    audit.record_in_request(
        request,
        "coding.created",
        target=_target(study, country, coding.id),
        interview=coding.interview_uuid,
        question_id=coding.question_id,
        code_id=coding.code_id,
        quote_id=coding.quote_id,
    )
    request.response.status = 201
    return services.describe_coding(coding)


@view_config(route_name="coding", request_method="GET", renderer="json", permission=Permission.ANALYSIS_READ)
def get_coding(request: Request) -> dict[str, Any]:
    study, country = _study_and_country(request)
    return services.describe_coding(_load(request, study, country))


@view_config(
    route_name="coding", request_method="PATCH", renderer="json", permission=Permission.ANALYSIS_CODE
)
def update_coding(request: Request) -> dict[str, Any]:
    body = json_body(request, CodingChangeSchema())
    study, country = _study_and_country(request)
    coding = _load(request, study, country)
    try:
        changed = services.update_coding(
            request.dbsession, study, coding, _coder(request, study, country), body
        )
    except services.NotYourCoding as exc:
        audit.record_refusal(
            request, "coding.updated", target=_target(study, country, coding.id), coder=coding.coder
        )
        raise _service_error(exc) from exc
    except (services.CodingInvalid, services.CodingNotFound) as exc:
        raise _service_error(exc) from exc
    if changed:
        audit.record_in_request(
            request,
            "coding.updated",
            target=_target(study, country, coding.id),
            changed=changed,
            coder=coding.coder,
        )
    return services.describe_coding(coding)


@view_config(
    route_name="coding", request_method="DELETE", renderer="json", permission=Permission.ANALYSIS_CODE
)
def delete_coding(request: Request) -> dict[str, Any]:
    study, country = _study_and_country(request)
    coding = _load(request, study, country)
    described = services.describe_coding(coding)
    try:
        services.delete_coding(request.dbsession, coding, _coder(request, study, country))
    except services.NotYourCoding as exc:
        audit.record_refusal(
            request, "coding.deleted", target=_target(study, country, coding.id), coder=coding.coder
        )
        raise _service_error(exc) from exc
    audit.record_in_request(
        request,
        "coding.deleted",
        target=_target(study, country, described["id"]),
        coder=described["coder"],
        interview=described["interview_uuid"],
        code_id=described["code_id"],
    )
    return {"deleted": described}


def _agreement_query(request: Request) -> tuple[str, str, int | None]:
    for key in request.GET:
        if key not in ("coder", "code"):
            raise APIError(
                422,
                ErrorCode.INVALID_INPUT,
                f"unknown query parameter {key!r}",
                [field_error(key, "unknown parameter: coder (twice) and code are known", "querystring")],
            )
    coders = request.GET.getall("coder")
    if len(coders) != 2 or coders[0] == coders[1] or not all(0 < len(c) <= 64 for c in coders):
        raise APIError(
            422,
            ErrorCode.INVALID_INPUT,
            "name two different coders: ?coder=a&coder=b",
            [field_error("coder", "give two different coders' usernames", "querystring")],
        )
    codes = request.GET.getall("code")
    if len(codes) > 1:
        raise APIError(
            422,
            ErrorCode.INVALID_INPUT,
            "query parameter 'code' is given twice",
            [field_error("code", "given twice", "querystring")],
        )
    code_id = None
    if codes:
        if not (codes[0].isascii() and codes[0].isdigit() and len(codes[0]) < 10):
            raise APIError(
                422,
                ErrorCode.INVALID_INPUT,
                "code: must be a whole number",
                [field_error("code", "must be a whole number", "querystring")],
            )
        code_id = int(codes[0])
    return coders[0], coders[1], code_id


@view_config(
    route_name="coding_agreement", request_method="GET", renderer="json", permission=Permission.ANALYSIS_READ
)
def agreement(request: Request) -> dict[str, Any]:
    first, second, code_id = _agreement_query(request)
    study, country = _study_and_country(request)
    return services.coder_agreement(request.dbsession, study, country, first, second, code_id)


def includeme(config: Any) -> None:
    base = "/api/v1/studies/{study}/countries/{country}"
    config.add_route("codings", f"{base}/codings", factory=CountryAnalysisResource)
    config.add_route("coding", f"{base}/codings/{{coding_id}}", factory=CountryAnalysisResource)
    config.add_route("coding_agreement", f"{base}/agreement", factory=CountryAnalysisResource)
    config.scan("surveykit.analysis.coding_views")
