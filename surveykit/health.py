"""``GET /api/v1/health``: for load balancers, systemd and container probes.

Public and cheap: one query on a pooled connection. 200 when the database answers and its schema is
at the newest migration this code knows, 503 with the reason otherwise. No token is needed and none
is read.
"""

from __future__ import annotations

from typing import Any

from pyramid.authorization import Allow, Everyone
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from surveykit.errors import ErrorCode, error_response
from surveykit.security import Permission


class HealthResource:
    __acl__ = [(Allow, Everyone, Permission.PUBLIC)]

    def __init__(self, request: Request) -> None:
        self.request = request


def head_revision(registry: Any) -> str | None:
    """The newest migration of this code, read from the migration scripts once per process."""
    if "surveykit.head_revision" not in registry:
        from surveykit import migrate

        registry["surveykit.head_revision"] = migrate.head_revision(registry["db_engine"])
    return registry["surveykit.head_revision"]


def database_revision(request: Request) -> str | None:
    """The revision the database is at (None: no schema); raises SQLAlchemyError if it does not answer."""
    with request.registry["dbsession_factory"]() as session:
        try:
            return session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            session.rollback()
            # A database that answers but has no alembic_version table has no schema at all.
            session.execute(text("SELECT 1"))
            return None


@view_config(route_name="health", request_method="GET", renderer="json", permission=Permission.PUBLIC)
def health_view(request: Request) -> Any:
    head = head_revision(request.registry)
    try:
        current = database_revision(request)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0][:200]
        return _unavailable(f"the database does not answer: {reason}")
    if current != head:
        return _unavailable(
            f"the database schema is at {current or 'no revision'}, this code needs {head}: "
            "run `surveykit db upgrade`"
        )
    request.response.cache_control = "no-store"
    return {"status": "ok", "database": "ok", "schema_revision": current}


def _unavailable(message: str) -> Response:
    return error_response(503, ErrorCode.SERVICE_UNAVAILABLE, message)


def includeme(config: Any) -> None:
    config.add_route("health", "/api/v1/health", factory=HealthResource)
    config.scan("surveykit.health")
