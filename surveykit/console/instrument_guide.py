"""The printable interview guide: one published version of an instrument in one language, laid out
for paper (``static/guide.css``: no navigation when printed, a new page for each section, room for
notes under each open question, probes as tick boxes). It renders the preview the API serves at
``GET /api/v1/instruments/{slug}/versions/{version}/preview`` (``surveykit.instruments.preview``)."""

from __future__ import annotations

import colander
from pyramid.renderers import render_to_response
from pyramid.request import Request
from pyramid.response import Response

from surveykit.console.errors import error_page
from surveykit.console.web import _, console_view, translate
from surveykit.instruments import services
from surveykit.instruments.preview import preview
from surveykit.instruments.studio_views import preview_query_schema
from surveykit.instruments.views import VERSION_NUMBER
from surveykit.security import Permission

TEMPLATE = "surveykit.console:templates/instruments/guide.jinja2"


@console_view(
    route_name="console.instrument_guide", request_method="GET", permission=Permission.INSTRUMENTS_READ
)
def interview_guide(request: Request) -> Response:
    slug, raw = request.matchdict["slug"], request.matchdict["version"]
    try:
        if not VERSION_NUMBER.match(raw) or int(raw) < 1:
            raise services.VersionNotFound(raw)
        ref = services.find_version(request.dbsession, slug, int(raw))
    except (services.InstrumentNotFound, services.VersionNotFound):
        return error_page(
            request,
            404,
            translate(request, _("No such version")),
            translate(request, _("Instrument ${slug} has no version ${version}."), slug=slug, version=raw),
        )
    try:
        language = preview_query_schema().deserialize(dict(request.GET.items()))["lang"]
    except colander.Invalid as invalid:
        return error_page(
            request,
            400,
            translate(request, _("Not a guide's address")),
            "; ".join(f"{name or 'query'}: {message}" for name, message in sorted(invalid.asdict().items())),
        )
    definition = services.load_definition(request.dbsession, slug, ref.version)
    try:
        outline = preview(definition, language)
    except services.LanguageNotOffered as exc:
        return error_page(
            request,
            400,
            translate(request, _("Language not offered")),
            translate(
                request,
                _("This instrument is not offered in ${language}; choose one of ${languages}."),
                language=exc.language,
                languages=", ".join(exc.offered),
            ),
        )
    values = {"guide": outline, "version": ref.version, "content_hash": ref.content_hash}
    return render_to_response(TEMPLATE, values, request=request)
