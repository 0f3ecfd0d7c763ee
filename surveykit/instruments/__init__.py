"""Interview instruments: definitions, immutable published versions, and serving them to tablets."""

from __future__ import annotations

from typing import Any

from pyramid.authorization import Allow, Everyone

from surveykit.security import Permission


class InstrumentsResource:
    """Route context for every instrument URL; access is decided by its ACL."""

    def __init__(self, request: Any) -> None:
        self.request = request

    @property
    def __acl__(self) -> list[tuple[str, str, str]]:
        return [
            (Allow, Everyone, Permission.INSTRUMENTS_READ),
            (Allow, Everyone, Permission.INSTRUMENTS_VALIDATE),
            (Allow, "role:coordinator", Permission.INSTRUMENTS_PUBLISH),
            (Allow, "role:admin", Permission.INSTRUMENTS_PUBLISH),
        ]


def includeme(config: Any) -> None:
    factory = InstrumentsResource
    config.add_route("instruments", "/api/v1/instruments", factory=factory)
    config.add_route("instruments_validate", "/api/v1/instruments/validate", factory=factory)
    config.add_route("instrument", "/api/v1/instruments/{slug}", factory=factory)
    config.add_route("instrument_version", "/api/v1/instruments/{slug}/versions/{version}", factory=factory)
    config.add_route("instrument_retire", "/api/v1/instruments/{slug}/retire", factory=factory)
    config.scan(".views")
