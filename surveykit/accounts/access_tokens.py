"""Personal access tokens: read-only, revocable credentials for unattended export downloads.

Excel Power Query and scripts cannot renew a five-minute access token, so a person may create a
long-lived token of their own (``skpat_`` and 43 random characters, 256 bits). Only its SHA-256 is
stored; the secret is answered once, at creation. A token acts with its owner's grants as they are
at each request (a grant taken away narrows it at once; a deactivated or deleted owner's tokens stop)
and only for what ``surveykit.security.ACCESS_TOKEN_PERMISSIONS`` allows: the security policy
refuses it everywhere else, so no view has to remember to.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from surveykit.accounts import throttle
from surveykit.accounts.identity import ALL, GrantScope, Identity, IdentityRefused
from surveykit.accounts.models import AccessToken, AttemptCounter, Grant, User
from surveykit.db import UTCDateTime, utcnow
from surveykit.studies.models import Study

SECRET_PREFIX = "skpat_"
# How many characters of a token (after ``skpat_``) are kept and shown so its owner recognises it.
SHOWN_CHARACTERS = 6
DEFAULT_DAYS = 90
MAX_DAYS = 366
MAX_ACTIVE_PER_USER = 20
NAME_MAX_LENGTH = 100
LAST_USED_RESOLUTION = timedelta(minutes=1)


class AccessTokenError(ValueError):
    """A token request that cannot be carried out: ``field`` names the input at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TooManyAccessTokens(AccessTokenError):
    """The owner already holds the most active tokens allowed."""


class AccessTokenNotFound(LookupError):
    pass


@dataclass(frozen=True)
class CreatedAccessToken:
    token: AccessToken
    secret: str  # shown once, never stored


def is_access_token(credential: str) -> bool:
    return credential.startswith(SECRET_PREFIX)


def secret_hash(secret: str) -> str:
    # 256 random bits: a fast hash is enough, there is nothing to brute-force.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def shown_prefix(secret: str) -> str:
    return secret[: len(SECRET_PREFIX) + SHOWN_CHARACTERS]


def active_count(session: Session, user_id: int, now: datetime) -> int:
    return session.scalar(
        select(func.count())
        .select_from(AccessToken)
        .where(
            AccessToken.user_id == user_id,
            AccessToken.revoked_at.is_(None),
            AccessToken.expires_at > now,
        )
    )


def create_access_token(
    session: Session,
    owner: User,
    name: str,
    expires_in_days: int = DEFAULT_DAYS,
    created_by: str | None = None,
    now: datetime | None = None,
) -> CreatedAccessToken:
    now = now or utcnow()
    name = name.strip()
    if not name:
        raise AccessTokenError("give the token a name, to recognise it later", "name")
    if len(name) > NAME_MAX_LENGTH:
        raise AccessTokenError(f"a name has at most {NAME_MAX_LENGTH} characters", "name")
    if not 1 <= expires_in_days <= MAX_DAYS:
        raise AccessTokenError(f"a token lasts from 1 to {MAX_DAYS} days", "expires_in_days")
    if active_count(session, owner.id, now) >= MAX_ACTIVE_PER_USER:
        raise TooManyAccessTokens(
            f"{owner.username} already has {MAX_ACTIVE_PER_USER} active tokens: revoke one first", "name"
        )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    token = AccessToken(
        user_id=owner.id,
        name=name,
        token_hash=secret_hash(secret),
        prefix=shown_prefix(secret),
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days),
        created_by=created_by or owner.username,
    )
    session.add(token)
    session.flush()
    return CreatedAccessToken(token, secret)


def list_access_tokens(session: Session, owner: User) -> list[AccessToken]:
    return list(
        session.scalars(
            select(AccessToken).where(AccessToken.user_id == owner.id).order_by(AccessToken.id.desc())
        )
    )


def get_access_token(session: Session, owner: User, token_id: str | int) -> AccessToken:
    """The owner's token ``token_id``; AccessTokenNotFound for anyone else's (or none)."""
    raw = str(token_id)
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise AccessTokenNotFound(raw)
    token = session.get(AccessToken, int(raw))
    if token is None or token.user_id != owner.id:
        raise AccessTokenNotFound(raw)
    return token


def revoke_access_token(
    session: Session, token: AccessToken, revoked_by: str, now: datetime | None = None
) -> bool:
    """Revoke ``token``; False when it was revoked already (nothing changes)."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = now or utcnow()
    token.revoked_by = revoked_by
    session.flush()
    return True


def revoke_owner_tokens(session: Session, user_id: int, revoked_by: str, now: datetime | None = None) -> int:
    """Revoke every token of ``user_id`` still in force (a password change or reset: whoever held
    the old password may have made one); returns how many."""
    result = session.execute(
        update(AccessToken)
        .where(AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None))
        .values(revoked_at=now or utcnow(), revoked_by=revoked_by)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def describe_access_token(token: AccessToken) -> dict[str, Any]:
    """A token as its owner sees it: never the secret nor its hash."""
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "status": token.status,
        "created_at": token.created_at.isoformat(),
        "expires_at": token.expires_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


@dataclass(frozen=True)
class TokenUse:
    """A token found valid for this request, and when it was last used before it."""

    identity: Identity
    token_id: int
    last_used_at: datetime | None


_TOKEN_QUERY = (
    select(
        AccessToken.id,
        AccessToken.token_hash,
        AccessToken.prefix,
        AccessToken.expires_at,
        AccessToken.revoked_at,
        AccessToken.last_used_at,
        User.id.label("user_id"),
        User.username,
        User.active,
        Grant.role,
        Grant.countries,
        Study.slug,
    )
    .join(User, User.id == AccessToken.user_id)
    .outerjoin(Grant, Grant.user_id == User.id)
    .outerjoin(Study, Study.id == Grant.study_id)
    .where(AccessToken.token_hash == bindparam("token_hash"))
    .order_by(Grant.id)
)
_LOCKED = select(AttemptCounter.attempts).where(
    AttemptCounter.kind == throttle.LOCKOUT,
    AttemptCounter.client_addr == bindparam("client_addr"),
    AttemptCounter.username == bindparam("username"),
    AttemptCounter.attempts >= bindparam("threshold"),
    AttemptCounter.window_ends_at > bindparam("now", type_=UTCDateTime()),
)


def load_token_identity(
    session: Session, secret: str, client_addr: str | None, lockout_threshold: int, now: datetime
) -> TokenUse:
    """The owner's identity behind a presented token, with the owner's grants as they are now.

    IdentityRefused (reason ``unknown_access_token``, ``access_token_revoked``,
    ``access_token_expired``, ``inactive`` or ``locked``) when it must not be honoured; the reason
    and the token's prefix are safe to log, the secret never is.
    """
    presented = secret_hash(secret)
    rows = session.connection().execute(_TOKEN_QUERY, {"token_hash": presented}).all()
    row = rows[0] if rows else None
    # The index finds the row; the secret's hash is then compared in constant time all the same.
    if row is None or not hmac.compare_digest(row.token_hash, presented):
        raise IdentityRefused("unknown_access_token")
    if row.revoked_at is not None:
        raise IdentityRefused("access_token_revoked", row.user_id, None, row.username)
    if row.expires_at <= now:
        raise IdentityRefused("access_token_expired", row.user_id, None, row.username)
    if not row.active:
        raise IdentityRefused("inactive", row.user_id, None, row.username)
    locked = session.connection().execute(
        _LOCKED,
        {
            "client_addr": throttle.address_key(client_addr),
            "username": row.username,
            "threshold": lockout_threshold,
            "now": now,
        },
    )
    if locked.first() is not None:
        raise IdentityRefused("locked", row.user_id, None, row.username)
    grants = tuple(
        GrantScope(r.role, r.slug or ALL, tuple(r.countries) if r.countries is not None else None)
        for r in rows
        if r.role is not None
    )
    identity = Identity(row.user_id, row.username, "", None, grants, access_token_id=row.id)
    return TokenUse(identity, row.id, row.last_used_at)


def used_long_ago(last_used: datetime | None, now: datetime) -> bool:
    """Whether a token's last use is worth writing again (once a minute at most)."""
    return last_used is None or now - last_used > LAST_USED_RESOLUTION


_TOUCH = (
    update(AccessToken)
    .where(AccessToken.id == bindparam("token_id"))
    .values(last_used_at=bindparam("now", type_=UTCDateTime()))
)


def touch_access_token(session: Session, token_id: int, now: datetime) -> None:
    session.connection().execute(_TOUCH, {"token_id": token_id, "now": now})
