"""The append-only audit log of security-relevant events, readable by admins."""

from __future__ import annotations

from typing import Any

from pyramid.authorization import Allow

from surveykit.security import Permission


class AuditResource:
    __acl__ = [(Allow, "role:admin:*", Permission.AUDIT_READ)]

    def __init__(self, request: Any) -> None:
        self.request = request


def includeme(config: Any) -> None:
    config.add_route("audit", "/api/v1/audit", factory=AuditResource)
    config.scan(".views")
