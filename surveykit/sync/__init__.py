"""Offline sync: interview records with full revision history, conflicts, receipts and a change feed.

Who may do what, by the principals of ``surveykit.accounts.identity``:
- push (``POST /api/v1/sync``): tablets (their fieldworker grants), and coordinators and admins at a
  desk; each change is checked against the caller's countries on its own;
- pull (``GET /api/v1/sync/changes``): every grant holder, within the countries of their grants;
- conflicts (record conflicts, and field conflicts of registry fields): coordinators and admins of
  the record's (the participant's) study and country list and resolve them.
"""

from __future__ import annotations

from typing import Any

from pyramid.authorization import Allow

from surveykit.security import Permission


class SyncResource:
    __acl__ = [
        (Allow, "device", Permission.SYNC_PUSH),
        (Allow, "role:coordinator", Permission.SYNC_PUSH),
        (Allow, "role:admin", Permission.SYNC_PUSH),
        (Allow, "role:fieldworker", Permission.SYNC_PULL),
        (Allow, "role:coordinator", Permission.SYNC_PULL),
        (Allow, "role:analyst", Permission.SYNC_PULL),
        (Allow, "role:admin", Permission.SYNC_PULL),
        (Allow, "role:coordinator", Permission.CONFLICTS_READ),
        (Allow, "role:admin", Permission.CONFLICTS_READ),
    ]

    def __init__(self, request: Any) -> None:
        self.request = request


def conflict_acl(study: str | None, country: str | None) -> list[tuple[str, str, str]]:
    """Managers of the conflict's study and country resolve it (an unknown id: any manager, for a 404)."""
    if study is None or country is None:
        return [
            (Allow, "role:coordinator", Permission.CONFLICTS_RESOLVE),
            (Allow, "role:admin", Permission.CONFLICTS_RESOLVE),
        ]
    return [
        (Allow, f"role:{role}:{grant_study}:{grant_country}", Permission.CONFLICTS_RESOLVE)
        for role in ("coordinator", "admin")
        for grant_study in (study, "*")
        for grant_country in (country, "*")
    ]


class ConflictResource:
    """One conflict by id; its ACL comes from the study and country of its record."""

    def __init__(self, request: Any) -> None:
        self.request = request
        raw = request.matchdict["conflict_id"]
        self.conflict_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None
        self._acl: list[tuple[str, str, str]] | None = None

    @property
    def __acl__(self) -> list[tuple[str, str, str]]:
        if self._acl is None:
            from surveykit.sync.services import conflict_scope

            scope = None
            if self.conflict_id is not None:
                scope = conflict_scope(self.request.dbsession, self.conflict_id)
            self._acl = conflict_acl(*(scope or (None, None)))
        return self._acl


class FieldConflictResource(ConflictResource):
    """One field conflict by id; its ACL comes from the study and country of its participant."""

    @property
    def __acl__(self) -> list[tuple[str, str, str]]:
        if self._acl is None:
            from surveykit.sync.services import field_conflict_scope

            scope = None
            if self.conflict_id is not None:
                scope = field_conflict_scope(self.request.dbsession, self.conflict_id)
            self._acl = conflict_acl(*(scope or (None, None)))
        return self._acl


def includeme(config: Any) -> None:
    from surveykit.instruments import InstrumentResource

    config.add_route("sync", "/api/v1/sync", factory=SyncResource)
    config.add_route(
        "instrument_record_schema",
        "/api/v1/instruments/{slug}/versions/{version}/record-schema",
        factory=InstrumentResource,
    )
    config.add_route("sync_changes", "/api/v1/sync/changes", factory=SyncResource)
    config.add_route("conflicts", "/api/v1/conflicts", factory=SyncResource)
    config.add_route("conflict_resolve", "/api/v1/conflicts/{conflict_id}/resolve", factory=ConflictResource)
    config.add_route("field_conflicts", "/api/v1/field-conflicts", factory=SyncResource)
    config.add_route(
        "field_conflict_resolve",
        "/api/v1/field-conflicts/{conflict_id}/resolve",
        factory=FieldConflictResource,
    )
    config.scan(".views")
