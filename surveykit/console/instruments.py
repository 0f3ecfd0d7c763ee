"""Instruments: the published instruments a person's studies use, their versions, and retiring one
(as ``POST /api/v1/instruments/{slug}/retire``). Uploading, checking, previewing, comparing and
publishing are the studio's pages (``studio.py``); these link to them."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

from surveykit.audit import services as audit
from surveykit.console.errors import error_page
from surveykit.console.web import _, console_view, flash, translate
from surveykit.instruments import InstrumentsResource, services
from surveykit.instruments import drafts as drafts_service
from surveykit.security import Permission


@console_view(
    route_name="console.instruments",
    request_method="GET",
    permission=Permission.INSTRUMENTS_READ,
    renderer="surveykit.console:templates/instruments/list.jinja2",
)
def instruments_page(request: Request) -> dict[str, Any]:
    listed = services.list_instruments(
        request.dbsession, include_retired=True, studies=request.identity.studies()
    )
    may_upload = bool(request.has_permission(Permission.INSTRUMENTS_PUBLISH, InstrumentsResource(request)))
    drafts = drafts_service.visible_drafts(request.dbsession, request.identity) if may_upload else []
    return {"instruments": listed, "may_upload": may_upload, "drafts": drafts}


def _not_found(request: Request) -> Response:
    return error_page(
        request,
        404,
        translate(request, _("No such instrument")),
        translate(request, _("There is no instrument ${slug}."), slug=request.matchdict["slug"]),
    )


@console_view(route_name="console.instrument", request_method="GET", permission=Permission.INSTRUMENTS_READ)
def instrument_page(request: Request) -> Response:
    from pyramid.renderers import render_to_response

    slug = request.matchdict["slug"]
    try:
        instrument = services.get_instrument(request.dbsession, slug)
        versions = services.list_versions(request.dbsession, slug)
    except services.InstrumentNotFound:
        return _not_found(request)
    values = {
        "instrument": instrument,
        "versions": versions,
        "may_retire": bool(request.has_permission(Permission.INSTRUMENTS_PUBLISH, request.context)),
    }
    return render_to_response(
        "surveykit.console:templates/instruments/detail.jinja2", values, request=request
    )


@console_view(
    route_name="console.instrument_retire", request_method="POST", permission=Permission.INSTRUMENTS_PUBLISH
)
def retire(request: Request) -> Response:
    slug = request.matchdict["slug"]
    try:
        services.retire(request.dbsession, slug)
    except services.InstrumentNotFound:
        return _not_found(request)
    audit.record_in_request(request, "instrument.retire", target=slug, via="console")
    flash(
        request,
        translate(
            request, _("${slug} is retired: tablets no longer start new interviews with it."), slug=slug
        ),
    )
    return HTTPSeeOther(location=request.route_path("console.instrument", slug=slug))
