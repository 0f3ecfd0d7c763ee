"""The authenticated caller of one request, and the principals its grants give it.

Principals, for a grant of ROLE in study S (``*`` for every study) over country C (``*`` for all):
``study:S`` (may read the study's instruments), ``role:ROLE`` (holds the role somewhere),
``role:ROLE:S`` and ``role:ROLE:S:C``. A device's session carries only its owner's fieldworker
grants, and of those only what lies inside the scope the device was enrolled for (the study and
countries its enroller could manage), so a lost tablet can never act as its owner's coordinator
account, and no one reaches through a tablet they enrolled more than they reach themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from pyramid.authorization import Authenticated, Everyone
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from surveykit.accounts.models import AuthSession, Device, Grant, User
from surveykit.db import UTCDateTime
from surveykit.studies.models import Study

ALL = "*"
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
# Roles whose holders enrol, list, re-enrol and revoke tablets.
DEVICE_MANAGING_ROLES = frozenset({"coordinator", "admin"})

# Countries of one study: None means every country of the study, an empty tuple none of them.
Countries = tuple[str, ...] | None


def common_countries(first: Countries, second: Countries) -> Countries:
    if first is None:
        return second
    if second is None:
        return first
    return tuple(sorted(set(first) & set(second)))


def countries_within(inner: Countries, outer: Countries) -> bool:
    if outer is None:
        return True
    return inner is not None and set(inner) <= set(outer)


def grants_coverage(
    grants: tuple[GrantScope, ...] | list[GrantScope], roles: frozenset[str], study: str
) -> Countries:
    """The countries of ``study`` that grants of ``roles`` cover together (None: all, (): none)."""
    covered: set[str] = set()
    for grant in grants:
        if grant.role in roles and grant.study in (ALL, study):
            if grant.countries is None:
                return None
            covered.update(grant.countries)
    return tuple(sorted(covered))


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
    # Set when the caller presented a personal access token (``access_tokens``), not a session's.
    access_token_id: int | None = None

    @property
    def actor(self) -> str:
        return self.username

    def principals(self) -> tuple[str, ...]:
        return self._principals

    @cached_property
    def _principals(self) -> tuple[str, ...]:
        # Worked out once: a process remembers an identity across requests (see the policy).
        principals = {Everyone, Authenticated, f"user:{self.user_id}"}
        if self.device_id:
            principals.add("device")
        for grant in self.grants:
            principals.add(f"study:{grant.study}")
            principals.add(f"role:{grant.role}")
            principals.add(f"role:{grant.role}:{grant.study}")
            for country in grant.countries or (ALL,):
                principals.add(f"role:{grant.role}:{grant.study}:{country}")
        return tuple(sorted(principals))

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

    def manages_scope(self, scope: list[tuple[str, Countries]]) -> bool:
        """Whether this caller's coordinator and admin grants cover the whole of a device's scope
        (pairs of study slug and countries). Only a global admin manages a device that reaches
        nothing: an empty scope must not be everyone's to take over."""
        if not scope:
            return self.is_global_admin
        return all(
            countries_within(countries, grants_coverage(self.grants, DEVICE_MANAGING_ROLES, study))
            for study, countries in scope
        )


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


# Built once: this runs on every authenticated request, and constructing a statement costs more than
# executing it. One round trip answers session, account, device and grants together.
_IDENTITY_QUERY = (
    select(
        AuthSession.revoked_at,
        AuthSession.device_id,
        User.username,
        User.active,
        Device.revoked_at.label("device_revoked_at"),
        Device.last_seen_at,
        Device.scope.label("device_scope"),
        Grant.role,
        Grant.study_id,
        Study.slug,
        Grant.countries,
    )
    .join(User, User.id == AuthSession.user_id)
    .outerjoin(Device, Device.id == AuthSession.device_id)
    .outerjoin(Grant, Grant.user_id == User.id)
    .outerjoin(Study, Study.id == Grant.study_id)
    .where(AuthSession.id == bindparam("sid"), AuthSession.user_id == bindparam("user_id"))
    .order_by(Grant.id)  # /me lists the grants in the order they were given, as the users API does
)
_TOUCH_DEVICE = (
    update(Device)
    .where(Device.id == bindparam("device_id"))
    .values(last_seen_at=bindparam("now", type_=UTCDateTime()))
)


def load_identity(session: Session, claims: dict) -> tuple[Identity, datetime | None]:
    """The identity behind verified token claims, checked against revocation, and when its device
    (if any) was last seen."""
    user_id = int(claims["sub"])
    connection = session.connection()
    rows = connection.execute(_IDENTITY_QUERY, {"sid": claims["sid"], "user_id": user_id}).all()
    device_id = claims.get("dev")
    row = rows[0] if rows else None
    if row is None or row.device_id != device_id:
        raise IdentityRefused("unknown_session", user_id, device_id)
    # Most specific reason first: revoking a device or a user also ends their sessions.
    if device_id is not None and row.device_revoked_at is not None:
        raise IdentityRefused("device_revoked", user_id, device_id, row.username)
    if not row.active:
        raise IdentityRefused("inactive", user_id, device_id, row.username)
    if row.revoked_at is not None:
        raise IdentityRefused("session_revoked", user_id, device_id, row.username)
    if device_id is None:
        scopes = tuple(
            GrantScope(r.role, r.slug or ALL, tuple(r.countries) if r.countries is not None else None)
            for r in rows
            if r.role is not None
        )
    else:
        scopes = _device_grants(rows, row.device_scope or [])
    return Identity(user_id, row.username, claims["sid"], device_id, scopes), row.last_seen_at


def _device_grants(rows: list, device_scope: list[dict]) -> tuple[GrantScope, ...]:
    """The owner's current fieldworker grants, each narrowed to the device's scope: taking a grant
    away shrinks the device at once, and the device never gains what it was not enrolled for."""
    bound: dict[int, Countries] = {
        entry["study_id"]: tuple(entry["countries"]) if entry["countries"] is not None else None
        for entry in device_scope
    }
    grants = []
    for r in rows:
        if r.role != "fieldworker" or r.study_id not in bound:
            continue
        owned = tuple(r.countries) if r.countries is not None else None
        countries = common_countries(owned, bound[r.study_id])
        if countries is None or countries:
            grants.append(GrantScope("fieldworker", r.slug, countries))
    return tuple(grants)


def device_seen_long_ago(last_seen: datetime | None, now: datetime) -> bool:
    """Whether a device's last-seen time is worth writing again (once a minute at most)."""
    return last_seen is None or now - last_seen > LAST_SEEN_RESOLUTION


def touch_device(session: Session, device_id: str, now: datetime) -> None:
    """Record when a device was last seen (called in a transaction of its own, see the policy)."""
    session.connection().execute(_TOUCH_DEVICE, {"device_id": device_id, "now": now})


def device_grants(session: Session, device: Device) -> tuple[GrantScope, ...]:
    """What a session of ``device`` may do now: its owner's fieldworker grants within its scope (the
    same grants its tablet's token carries; for pushing a tablet's backup file at the command line)."""
    rows = session.execute(
        select(Grant.role, Grant.study_id, Study.slug, Grant.countries)
        .join(Study, Study.id == Grant.study_id, isouter=True)
        .where(Grant.user_id == device.user_id)
        .order_by(Grant.id)
    ).all()
    return _device_grants(rows, device.scope or [])
