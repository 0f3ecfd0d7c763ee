"""GET /api/v1/audit: the audit log, newest first, filtered by actor, action and time, paged by id."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.view import view_config

from surveykit.audit import services
from surveykit.audit.schemas import AuditQuerySchema
from surveykit.security import Permission
from surveykit.web import query_params


@view_config(route_name="audit", request_method="GET", renderer="json", permission=Permission.AUDIT_READ)
def list_events(request: Request) -> dict[str, Any]:
    query = query_params(request, AuditQuerySchema())
    page = services.query_page(
        request.dbsession,
        actor=query["actor"],
        action=query["action"],
        since=query["since"],
        until=query["until"],
        before_id=query["before"],
        limit=query["limit"],
    )
    body: dict[str, Any] = {"events": services.as_json(page.events)}
    if page.next_before is not None:
        body["next_before"] = page.next_before
        # The same filters, from where this page ended.
        params = {key: value for key, value in request.GET.items() if key != "before"}
        body["next"] = request.route_path("audit", _query={**params, "before": page.next_before})
    return body
