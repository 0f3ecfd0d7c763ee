"""Writing and reading the audit log.

A successful action is recorded in the request's own transaction, so the event and the change it
describes commit together. A refusal is recorded after the request's transaction has ended, in a
transaction of its own: the refused request rolls back, its audit record must not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyramid.request import Request
from pyramid_retry import is_error_retryable
from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.audit.models import AuditEvent
from surveykit.db import utcnow

log = logging.getLogger(__name__)

MAX_PAGE = 1000


def record(
    session: Session,
    action: str,
    *,
    actor: str,
    outcome: str = "success",
    target: str | None = None,
    device_id: str | None = None,
    remote_addr: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        at=utcnow(),
        action=action,
        outcome=outcome,
        actor=actor,
        target=target,
        device_id=device_id,
        remote_addr=remote_addr,
        details=details or {},
    )
    session.add(event)
    return event


def request_actor(request: Request) -> tuple[str, str | None]:
    identity = request.identity
    if identity is None:
        return "anonymous", None
    return identity.actor, identity.device_id


def record_in_request(
    request: Request,
    action: str,
    *,
    outcome: str = "success",
    target: str | None = None,
    actor: str | None = None,
    **details: Any,
) -> None:
    """Record an event in the request's transaction: it commits or rolls back with the change."""
    default_actor, device_id = request_actor(request)
    token_id = getattr(request.identity, "access_token_id", None)
    if token_id is not None:
        # Done with a personal access token, not a login session: say which.
        details = {**details, "access_token": token_id}
    record(
        request.dbsession,
        action,
        actor=actor or default_actor,
        outcome=outcome,
        target=target,
        device_id=device_id,
        remote_addr=request.remote_addr,
        details=details,
    )


def record_refusal(
    request: Request,
    action: str,
    *,
    target: str | None = None,
    actor: str | None = None,
    device_id: str | None = None,
    **details: Any,
) -> None:
    """Queue a refusal to be written once the request's transaction is over, whatever its fate."""
    pending: list[dict[str, Any]] | None = getattr(request, "_surveykit_refusals", None)
    if pending is None:
        pending = []
        request._surveykit_refusals = pending
        request.add_finished_callback(_write_refusals)
    if actor is None:
        try:
            actor, identity_device = request_actor(request)
            device_id = device_id or identity_device
        except Exception:  # identity itself failed: the refusal is about that
            actor = "anonymous"
    pending.append(
        dict(
            action=action,
            actor=actor,
            outcome="refused",
            target=target,
            device_id=device_id,
            remote_addr=request.remote_addr,
            details=details,
        )
    )


def _write_refusals(request: Request) -> None:
    exception = getattr(request, "exception", None)
    if exception is not None and is_error_retryable(request, exception):
        # pyramid_retry replays this request; the attempt that answers records its own refusals.
        return
    session = request.registry["dbsession_factory"]()
    try:
        for event in request._surveykit_refusals:
            record(session, **event)
        session.commit()
    except Exception:
        # The response has been decided already; losing the record must not turn it into a 500.
        log.exception("could not write %d audit refusal(s)", len(request._surveykit_refusals))
        session.rollback()
    finally:
        session.close()


def query(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """Newest first; ``action`` ending in ``.*`` matches a family (``auth.*``)."""
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(min(max(limit, 1), MAX_PAGE + 1))
    if actor:
        statement = statement.where(AuditEvent.actor == actor)
    if action:
        if action.endswith(".*"):
            statement = statement.where(AuditEvent.action.startswith(action[:-1], autoescape=True))
        else:
            statement = statement.where(AuditEvent.action == action)
    if since:
        statement = statement.where(AuditEvent.at >= since)
    if until:
        statement = statement.where(AuditEvent.at < until)
    if before_id:
        statement = statement.where(AuditEvent.id < before_id)
    return list(session.scalars(statement))


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    # The ``before_id`` of the next page, when there are older events matching the filters.
    next_before: int | None


def query_page(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> AuditPage:
    """One page of ``query``, newest first, and where the next one starts (keyset paging on the id:
    events written meanwhile never shift a page)."""
    limit = min(max(limit, 1), MAX_PAGE)
    events = query(
        session, actor=actor, action=action, since=since, until=until, before_id=before_id, limit=limit + 1
    )
    if len(events) > limit:
        return AuditPage(events[:limit], events[limit - 1].id)
    return AuditPage(events, None)


def as_json(events: Iterable[AuditEvent]) -> list[dict[str, Any]]:
    return [
        {
            "id": event.id,
            "at": event.at.isoformat(),
            "action": event.action,
            "outcome": event.outcome,
            "actor": event.actor,
            "device_id": event.device_id,
            "target": event.target,
            "remote_addr": event.remote_addr,
            "details": event.details,
        }
        for event in events
    ]
