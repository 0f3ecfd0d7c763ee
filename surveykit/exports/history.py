"""When a workbook was last exported, and whether its data changed since.

Every workbook that leaves the server is audited: ``export.download`` (API and console, with the
content hash as ``etag``; a 304 is marked ``not_modified``) and ``export.create`` (the ``surveykit
export`` command, with ``content_hash``). The newest such event of a target says when and which
content; comparing its hash with ``services.content_tag`` now says whether the data changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.audit.models import AuditEvent
from surveykit.exports import services

EXPORT_ACTIONS = ("export.download", "export.create")


@dataclass(frozen=True)
class LastExport:
    at: datetime
    actor: str
    content_hash: str | None


@dataclass(frozen=True)
class WorkbookState:
    scope: services.Scope
    last: LastExport | None
    content_hash: str

    @property
    def changed_since(self) -> bool | None:
        """Whether the data differs from the last export (None: never exported)."""
        if self.last is None:
            return None
        return self.last.content_hash != self.content_hash


def last_export(session: Session, target: str) -> LastExport | None:
    """The newest export of ``target`` (``study/country`` or ``study/ALL``) that sent or wrote a file."""
    rows = session.execute(
        select(AuditEvent.at, AuditEvent.actor, AuditEvent.action, AuditEvent.details)
        .where(
            AuditEvent.target == target,
            AuditEvent.action.in_(EXPORT_ACTIONS),
            AuditEvent.outcome == "success",
        )
        .order_by(AuditEvent.id.desc())
        .limit(200)
    )
    for row in rows:
        details = row.details or {}
        if details.get("not_modified"):
            continue  # the client already held that content: no new file went out
        if details.get("format", "xlsx") != "xlsx":
            continue  # the CSV or a syntax file, not the workbook
        digest = details.get("etag") if row.action == "export.download" else details.get("content_hash")
        return LastExport(row.at, row.actor, digest)
    return None


def workbook_state(session: Session, study_slug: str, country: str) -> WorkbookState:
    """The workbook of ``country`` (or ``services.ALL_COUNTRIES``) of a study: its content hash now
    and its last export. Raises the lookup errors of ``services.resolve_scope``."""
    scope = services.resolve_scope(session, study_slug, country)
    return WorkbookState(scope, last_export(session, scope.target), services.content_tag(session, scope))
