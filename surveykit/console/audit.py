"""The audit log for admins: filters (actor, action, time range) and pages, as ``GET /api/v1/audit``
reads it (the same schema and the same service)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import colander
from pyramid.request import Request

from surveykit.audit import services as audit
from surveykit.audit.schemas import AuditQuerySchema
from surveykit.console.web import _, console_view, translate
from surveykit.security import Permission

FILTERS = ("actor", "action", "since", "until")
PAGE_SIZE = 50


@console_view(
    route_name="console.audit",
    request_method="GET",
    permission=Permission.AUDIT_READ,
    renderer="surveykit.console:templates/admin/audit.jinja2",
)
def audit_page(request: Request) -> dict[str, Any]:
    form = {name: request.GET.get(name, "").strip() for name in FILTERS}
    given = {name: value for name, value in form.items() if value}
    if request.GET.get("before", "").strip():
        given["before"] = request.GET["before"].strip()
    given["limit"] = str(PAGE_SIZE)
    try:
        query = AuditQuerySchema().deserialize(given)
    except colander.Invalid as invalid:
        errors = {path.split(".")[-1]: message for path, message in invalid.asdict().items()}
        request.response.status = 422
        return {"form": form, "errors": errors, "events": [], "page": None}
    page = audit.query_page(
        request.dbsession,
        actor=query["actor"],
        action=query["action"],
        since=query["since"],
        until=query["until"],
        before_id=query["before"],
        limit=PAGE_SIZE,
    )
    filters = {name: value for name, value in form.items() if value}
    base = request.route_path("console.audit")
    newest = f"{base}?{urlencode(filters)}" if filters else base
    return {
        "form": form,
        "errors": {},
        "events": page.events,
        "page": {
            "label": translate(request, _("Older events"))
            if query["before"]
            else translate(request, _("Newest events")),
            "previous_url": newest if query["before"] else None,
            "next_url": f"{base}?{urlencode({**filters, 'before': page.next_before})}"
            if page.next_before
            else None,
        },
    }
