"""The authenticated caller of one request, and the principals its grants give it.

Principals, for a grant of ROLE in study S (``*`` for every study) over country C (``*`` for all):
``study:S`` (may read the study's instruments), ``role:ROLE`` (holds the role somewhere),
``role:ROLE:S`` and ``role:ROLE:S:C``. A device's session carries only its owner's fieldworker
grants, so a lost tablet can never act as its owner's coordinator account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pyramid.authorization import Authenticated, Everyone
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from surveykit.accounts.models import AuthSession, Device, Grant, User
from surveykit.studies.models import Study

ALL = "*"
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class GrantScope:
    role: str
    study: str  # a study slug, or ALL
    countries: tuple[str, ...] | None  # None: every country of the study

    def covers(self, study: str, country: str | None = None) -> bool:
        if self.study not in (ALL, study):
            return False
        return country is None or self.countries is None or country in self.countries


@dataclass(frozen=True)
class Identity:
    user_id: int
    username: str
    session_id: str
    device_id: str | None
    grants: tuple[GrantScope, ...]

    @property
    def actor(self) -> str:
        return self.username

    def principals(self) -> list[str]:
        principals = {Everyone, Authenticated, f"user:{self.user_id}"}
        if self.device_id:
            principals.add("device")
        for grant in self.grants:
            principals.add(f"study:{grant.study}")
            principals.add(f"role:{grant.role}")
            principals.add(f"role:{grant.role}:{grant.study}")
            for country in grant.countries or (ALL,):
                principals.add(f"role:{grant.role}:{grant.study}:{country}")
        return sorted(principals)

    def has_role(self, roles: set[str] | str, study: str | None = None, country: str | None = None) -> bool:
        roles = {roles} if isinstance(roles, str) else roles
        return any(
            grant.role in roles and (study is None or grant.covers(study, country)) for grant in self.grants
        )

    @property
    def is_global_admin(self) -> bool:
        return any(grant.role == "admin" and grant.study == ALL for grant in self.grants)

    def studies(self) -> set[str] | None:
        """The studies this caller has any grant in; None means every study."""
        slugs = {grant.study for grant in self.grants}
        return None if ALL in slugs else slugs


class IdentityRefused(Exception):
    def __init__(
        self,
        reason: str,
        user_id: int | None = None,
        device_id: str | None = None,
        username: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.user_id = user_id
        self.device_id = device_id
        self.username = username


def load_identity(session: Session, claims: dict, now: datetime) -> Identity:
    """The identity behind verified token claims, checked against revocation on every request."""
    user_id = int(claims["sub"])
    row = session.execute(
        select(
            AuthSession.revoked_at,
            AuthSession.device_id,
            User.username,
            User.active,
            Device.revoked_at.label("device_revoked_at"),
            Device.last_seen_at,
        )
        .join(User, User.id == AuthSession.user_id)
        .outerjoin(Device, Device.id == AuthSession.device_id)
        .where(AuthSession.id == claims["sid"], AuthSession.user_id == user_id)
    ).first()
    device_id = claims.get("dev")
    if row is None or row.device_id != device_id:
        raise IdentityRefused("unknown_session", user_id, device_id)
    # Most specific reason first: revoking a device or a user also ends their sessions.
    if device_id is not None and row.device_revoked_at is not None:
        raise IdentityRefused("device_revoked", user_id, device_id, row.username)
    if not row.active:
        raise IdentityRefused("inactive", user_id, device_id, row.username)
    if row.revoked_at is not None:
        raise IdentityRefused("session_revoked", user_id, device_id, row.username)
    if device_id is not None and (row.last_seen_at is None or now - row.last_seen_at > LAST_SEEN_RESOLUTION):
        session.execute(
            update(Device)
            .where(Device.id == device_id)
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
    grants = session.execute(
        select(Grant.role, Study.slug, Grant.countries)
        .outerjoin(Study, Study.id == Grant.study_id)
        .where(Grant.user_id == user_id)
    ).all()
    scopes = tuple(
        GrantScope(role, slug or ALL, tuple(countries) if countries is not None else None)
        for role, slug, countries in grants
        if device_id is None or role == "fieldworker"
    )
    return Identity(user_id, row.username, claims["sid"], device_id, scopes)
