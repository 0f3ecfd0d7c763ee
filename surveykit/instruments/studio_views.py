"""HTTP views of the instrument studio: previewing a version or a draft, and comparing versions.

Thin wrappers over ``preview`` and ``compare``; the printable interview guide (a console page,
``surveykit.console.instrument_guide``) renders the same preview.
"""

from __future__ import annotations

from typing import Any

import colander
from pyramid.request import Request
from pyramid.view import view_config

from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.instruments import compare, services
from surveykit.instruments.preview import preview
from surveykit.instruments.schemas import LANGUAGE_PATTERN, StrictString
from surveykit.instruments.views import VERSION_NUMBER, _validated
from surveykit.security import Permission
from surveykit.web import query_params

VERSION_QUERY = r"^[1-9][0-9]{0,8}$"


def _strict(schema: colander.MappingSchema) -> colander.MappingSchema:
    schema.typ = colander.Mapping(unknown="raise")
    return schema


def _version_node(name: str) -> colander.SchemaNode:
    return colander.SchemaNode(
        StrictString(),
        name=name,
        missing=None,
        validator=colander.Regex(VERSION_QUERY, "must be a version number (1, 2, ...)"),
    )


def preview_query_schema() -> colander.MappingSchema:
    schema = _strict(colander.MappingSchema())
    schema.add(
        colander.SchemaNode(
            StrictString(),
            name="lang",
            missing=None,
            validator=colander.Regex(LANGUAGE_PATTERN, "must be a language code like 'en' or 'pt-BR'"),
        )
    )
    return schema


def compare_query_schema() -> colander.MappingSchema:
    """``from`` and ``to`` (a Python keyword, hence built node by node)."""
    schema = _strict(colander.MappingSchema())
    schema.add(_version_node("from"))
    schema.add(_version_node("to"))
    return schema


def compare_draft_query_schema() -> colander.MappingSchema:
    schema = _strict(colander.MappingSchema())
    schema.add(_version_node("from"))
    return schema


def _query(request: Request, schema: colander.SchemaNode) -> dict[str, Any]:
    """The query string, or a 400 naming each parameter at fault."""
    try:
        return query_params(request, schema)
    except APIError as exc:
        raise APIError(400, ErrorCode.BAD_REQUEST, exc.message, exc.details) from exc


def _number(raw: str | None) -> int | None:
    return None if raw is None else int(raw)


def _not_found(slug: str, exc: LookupError) -> APIError:
    if isinstance(exc, services.VersionNotFound):
        return APIError(404, ErrorCode.VERSION_NOT_FOUND, str(exc))
    return APIError(404, ErrorCode.INSTRUMENT_NOT_FOUND, f"no instrument {slug!r}")


def _previewed(definition: dict[str, Any], language: str | None) -> dict[str, Any]:
    try:
        return preview(definition, language)
    except services.LanguageNotOffered as exc:
        raise APIError(
            400,
            ErrorCode.BAD_REQUEST,
            str(exc),
            [field_error("lang", f"choose one of {', '.join(exc.offered)}", "querystring")],
        ) from exc


@view_config(
    route_name="instrument_preview",
    request_method="GET",
    renderer="json",
    permission=Permission.INSTRUMENTS_READ,
)
def preview_version(request: Request) -> dict[str, Any]:
    slug, raw = request.matchdict["slug"], request.matchdict["version"]
    query = _query(request, preview_query_schema())
    if not VERSION_NUMBER.match(raw) or int(raw) < 1:
        raise APIError(404, ErrorCode.VERSION_NOT_FOUND, f"{raw!r} is not a version number")
    try:
        ref = services.find_version(request.dbsession, slug, int(raw))
    except (services.InstrumentNotFound, services.VersionNotFound) as exc:
        raise _not_found(slug, exc) from exc
    outline = _previewed(services.load_definition(request.dbsession, slug, ref.version), query["lang"])
    return {"version": ref.version, "content_hash": ref.content_hash, "draft": False, **outline}


@view_config(
    route_name="instruments_preview",
    request_method="POST",
    renderer="json",
    permission=Permission.INSTRUMENTS_VALIDATE,
)
def preview_draft(request: Request) -> dict[str, Any]:
    query = _query(request, preview_query_schema())
    definition, _ = _validated(request)
    outline = _previewed(definition, query["lang"])
    return {"version": None, "content_hash": services.content_hash(definition), "draft": True, **outline}


@view_config(
    route_name="instrument_compare",
    request_method="GET",
    renderer="json",
    permission=Permission.INSTRUMENTS_READ,
)
def compare_stored(request: Request) -> dict[str, Any]:
    slug = request.matchdict["slug"]
    query = _query(request, compare_query_schema())
    try:
        return compare.compare_versions(request.dbsession, slug, _number(query["from"]), _number(query["to"]))
    except (services.InstrumentNotFound, services.VersionNotFound) as exc:
        raise _not_found(slug, exc) from exc


@view_config(
    route_name="instrument_compare",
    request_method="POST",
    renderer="json",
    permission=Permission.INSTRUMENTS_READ,
)
def compare_draft(request: Request) -> dict[str, Any]:
    slug = request.matchdict["slug"]
    query = _query(request, compare_draft_query_schema())
    try:
        services.find_version(request.dbsession, slug, _number(query["from"]))
    except (services.InstrumentNotFound, services.VersionNotFound) as exc:
        raise _not_found(slug, exc) from exc
    draft, _ = _validated(request)
    if draft["slug"] != slug:
        raise APIError(
            422,
            ErrorCode.INVALID_INPUT,
            f"the draft is of instrument {draft['slug']!r}, not {slug!r}",
            [field_error("slug", f"must be {slug!r}, the instrument compared with")],
        )
    return compare.compare_with_draft(request.dbsession, slug, _number(query["from"]), draft)
