"""HTTP views of the sync protocol: thin wrappers over ``services``.

Every answer is computed before the request's transaction commits (pyramid_tm commits after the
view returns); if the commit fails the client receives an error instead, never a receipt for
something that was not stored.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import zope.sqlalchemy
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config
from sqlalchemy import select

from surveykit.audit import services as audit
from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.instruments import services as instrument_services
from surveykit.instruments.views import VERSION_CACHE_CONTROL, VERSION_NUMBER
from surveykit.security import Permission
from surveykit.studies.models import Study
from surveykit.sync import record_schema, schemas, services
from surveykit.sync.services import Caller, covers
from surveykit.web import json_body, query_params, representation

# The records of a batch obey the text rule too, but each is checked on its own (services.validate):
# a bad record is answered ``rejected`` and the rest of the batch is stored.
RECORD_PATHS = re.compile(r"changes\[\d+\]\.record(?:$|[.\[])")


def _no_store(request: Request) -> None:
    request.response.cache_control = "no-store"


def _study(request: Request, slug: str) -> Study:
    study = request.dbsession.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        raise APIError(404, ErrorCode.STUDY_NOT_FOUND, f"no study {slug!r}")
    return study


def _scope(
    request: Request, action: str, study: str, country: str | None, roles: frozenset[str]
) -> set[str] | None:
    """The countries of ``study`` the caller may see with these roles, narrowed to ``country``."""
    caller = Caller.from_identity(request.identity)
    countries = caller.countries(study, roles)
    if country is not None:
        countries = {country} if covers(countries, country) else set()
    if countries is not None and not countries:
        audit.record_refusal(
            request, action, target=study, study=study, country=country, reason="out_of_scope"
        )
        where = f"{study}/{country}" if country else study
        raise APIError(403, ErrorCode.FORBIDDEN, f"your grants do not cover {where}")
    return countries


def _audit_reanchoring(request: Request, reanchoring: Any) -> None:
    """One event per batch whose new revisions moved or vanished coded passages."""
    if reanchoring is not None and reanchoring.flagged:
        audit.record_in_request(request, "coding.reanchored", **reanchoring.audit_details())


@view_config(route_name="sync", request_method="POST", renderer="json", permission=Permission.SYNC_PUSH)
def push(request: Request) -> dict[str, Any]:
    body = json_body(request, schemas.SyncBatchSchema(), text_checked_by_view=RECORD_PATHS)
    changes = body["changes"]
    limit = request.registry.settings["surveykit.sync_max_batch"]
    if len(changes) > limit:
        raise APIError(
            413,
            ErrorCode.SYNC_BATCH_TOO_LARGE,
            f"a batch may hold at most {limit} changes and this one holds {len(changes)}: "
            "send them in several batches",
            [field_error("changes", f"at most {limit} changes per request")],
        )
    caller = Caller.from_identity(request.identity)
    session = request.dbsession

    def audit_batch(outcome: services.BatchOutcome) -> None:
        for refusal in outcome.refusals:
            details = dict(refusal)
            audit.record_refusal(request, details.pop("action"), **details)
        for kept in outcome.field_conflicts:
            details = dict(kept)
            audit.record_in_request(request, details.pop("action"), device=caller.device_id, **details)
        _audit_reanchoring(request, outcome.reanchoring)
        studies = sorted(
            {
                c["record"].get("study")
                for c in changes
                if isinstance(c, dict)
                and isinstance(c.get("record"), dict)
                and isinstance(c["record"].get("study"), str)
            }
        )
        audit.record_in_request(
            request,
            "sync.batch",
            target=",".join(studies)[:300] or None,
            changes=len(changes),
            counts=outcome.counts,
            device=caller.device_id,
        )

    # The audit events are written before the batch takes its feed numbers (see push_batch).
    outcome = services.push_batch(session, caller, changes, before_publishing=audit_batch)
    # The writes went through Core statements, which zope.sqlalchemy does not notice: without this
    # the request's transaction would roll back a session it believes untouched.
    zope.sqlalchemy.mark_changed(session, request.tm)
    _no_store(request)
    return outcome.as_json()


@view_config(route_name="sync_changes", request_method="GET", permission=Permission.SYNC_PULL)
def pull(request: Request) -> Response:
    max_limit = request.registry.settings["surveykit.sync_max_pull"]
    query = query_params(request, schemas.pull_query_schema(max_limit))
    countries = _scope(request, "sync.scope_refused", query["study"], query["country"], services.READ_ROLES)
    study = _study(request, query["study"])
    try:
        body = services.pull(request.dbsession, study, countries, query["cursor"], query["limit"])
    except services.CursorAhead as exc:
        raise APIError(
            409,
            ErrorCode.SYNC_CURSOR_AHEAD,
            f"{exc}: the server's data was restored from an earlier state; pull again from cursor 0",
            [field_error("cursor", f"at most {exc.top}", "querystring")],
        ) from exc
    # The records inside are the stored JSON text (orjson.Fragment): serialised by orjson, not the
    # json renderer, which would need them parsed first.
    response = Response(body=orjson.dumps(body), content_type="application/json", charset=None)
    response.cache_control = "no-store"
    return response


@view_config(
    route_name="conflicts", request_method="GET", renderer="json", permission=Permission.CONFLICTS_READ
)
def list_conflicts(request: Request) -> dict[str, Any]:
    query = query_params(request, schemas.ConflictsQuerySchema())
    countries = _scope(
        request, "sync.conflicts_refused", query["study"], query["country"], services.MANAGER_ROLES
    )
    study = _study(request, query["study"])
    _no_store(request)
    return services.list_conflicts(
        request.dbsession, study, countries, query["status"], query["after"], query["limit"]
    )


@view_config(
    route_name="conflict_resolve",
    request_method="POST",
    renderer="json",
    permission=Permission.CONFLICTS_RESOLVE,
)
def resolve(request: Request) -> dict[str, Any]:
    body = json_body(request, schemas.ResolveSchema())
    conflict_id = request.context.conflict_id
    if conflict_id is None:
        wanted = request.matchdict["conflict_id"]
        raise APIError(404, ErrorCode.SYNC_CONFLICT_NOT_FOUND, f"no conflict {wanted!r}")
    caller = Caller.from_identity(request.identity)
    session = request.dbsession
    try:
        resolution = services.resolve_conflict(
            session, caller, conflict_id, body["resolution"], body["record"], body["base_revision"]
        )
    except services.ConflictNotFound as exc:
        raise APIError(404, ErrorCode.SYNC_CONFLICT_NOT_FOUND, str(exc)) from exc
    except services.ConflictAlreadyResolved as exc:
        raise APIError(409, ErrorCode.SYNC_CONFLICT_RESOLVED, str(exc)) from exc
    except services.StaleResolution as exc:
        raise APIError(
            409,
            ErrorCode.SYNC_STALE_BASE,
            f"{exc}, not {body['base_revision']}: look at the current record and resolve again",
            [field_error("base_revision", f"the current revision is {exc.current['revision']}")],
        ) from exc
    except services.ResolutionInvalid as exc:
        raise APIError(
            422, ErrorCode.SYNC_RECORD_INVALID, f"invalid resolution: {exc}", exc.as_details()
        ) from exc
    zope.sqlalchemy.mark_changed(session, request.tm)
    audit.record_in_request(
        request,
        "sync.conflict_resolved",
        target=str(conflict_id),
        uuid=resolution.current["uuid"],
        resolution=body["resolution"],
        revision=resolution.current["revision"],
        new_revision=resolution.new_revision,
    )
    for kept in resolution.field_conflicts:
        details = dict(kept)
        audit.record_in_request(request, details.pop("action"), **details)
    _audit_reanchoring(request, resolution.reanchoring)
    _no_store(request)
    return {"conflict": resolution.conflict, "current": resolution.current}


@view_config(
    route_name="field_conflicts", request_method="GET", renderer="json", permission=Permission.CONFLICTS_READ
)
def list_field_conflicts(request: Request) -> dict[str, Any]:
    query = query_params(request, schemas.ConflictsQuerySchema())
    countries = _scope(
        request, "sync.conflicts_refused", query["study"], query["country"], services.MANAGER_ROLES
    )
    study = _study(request, query["study"])
    _no_store(request)
    return services.list_field_conflicts(
        request.dbsession, study, countries, query["status"], query["after"], query["limit"]
    )


@view_config(
    route_name="field_conflict_resolve",
    request_method="POST",
    renderer="json",
    permission=Permission.CONFLICTS_RESOLVE,
)
def resolve_field_conflict(request: Request) -> dict[str, Any]:
    body = json_body(request, schemas.FieldResolveSchema())
    conflict_id = request.context.conflict_id
    if conflict_id is None:
        wanted = request.matchdict["conflict_id"]
        raise APIError(404, ErrorCode.SYNC_CONFLICT_NOT_FOUND, f"no field conflict {wanted!r}")
    caller = Caller.from_identity(request.identity)
    extra = {"expected": body["registry"]} if "registry" in body else {}
    try:
        resolution = services.resolve_field_conflict(
            request.dbsession, caller, conflict_id, body["resolution"], **extra
        )
    except services.FieldConflictNotFound as exc:
        raise APIError(404, ErrorCode.SYNC_CONFLICT_NOT_FOUND, str(exc)) from exc
    except services.ConflictAlreadyResolved as exc:
        raise APIError(409, ErrorCode.SYNC_CONFLICT_RESOLVED, str(exc)) from exc
    except services.StaleFieldResolution as exc:
        raise APIError(
            409,
            ErrorCode.SYNC_STALE_BASE,
            f"{exc}: look at the registry again and resolve again",
            [field_error("registry", f"the registry's value is now {exc.current!r}")],
        ) from exc
    audit.record_in_request(
        request,
        "sync.field_conflict_resolved",
        target=str(conflict_id),
        pid=resolution.conflict["pid"],
        field=resolution.conflict["field"],
        resolution=body["resolution"],
        changed=resolution.changed,
    )
    _no_store(request)
    return {"field_conflict": resolution.conflict, "participant": resolution.participant}


@view_config(
    route_name="instrument_record_schema", request_method="GET", permission=Permission.INSTRUMENTS_READ
)
def instrument_record_schema(request: Request) -> Any:
    """The JSON Schema of a record collected with one instrument version (docs/api.md)."""
    slug, raw = request.matchdict["slug"], request.matchdict["version"]
    if not VERSION_NUMBER.match(raw) or int(raw) < 1:
        raise APIError(404, ErrorCode.VERSION_NOT_FOUND, f"{raw!r} is not a version number")
    try:
        rep = record_schema.version_record_schema(request.dbsession, slug, int(raw))
    except instrument_services.VersionNotFound as exc:
        raise APIError(404, ErrorCode.VERSION_NOT_FOUND, str(exc)) from exc
    except instrument_services.InstrumentNotFound as exc:
        raise APIError(404, ErrorCode.INSTRUMENT_NOT_FOUND, f"no instrument {slug!r}") from exc
    return representation(request, rep, VERSION_CACHE_CONTROL)
