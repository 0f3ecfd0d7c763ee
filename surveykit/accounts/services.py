"""Accounts, grants, logins, token rotation and devices, as plain functions over a session."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from surveykit.accounts import access_tokens, passwords, throttle
from surveykit.accounts.identity import (
    DEVICE_MANAGING_ROLES,
    Countries,
    Identity,
    common_countries,
    countries_within,
    grants_coverage,
)
from surveykit.accounts.models import ROLES, AuthSession, Device, Grant, RefreshToken, User
from surveykit.accounts.tokens import (
    TokenSettings,
    issue_access_token,
    new_opaque_token,
    opaque_token_hash,
)
from surveykit.db import begin_write, utcnow
from surveykit.studies.models import Study
from surveykit.studies.services import StudyNotFound, country_codes, get_study

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
# Unambiguous on a phone keyboard and when read aloud: no 0/O, 1/I/L.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10


class AccountError(ValueError):
    """A request about accounts that cannot be carried out, with a message for people."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class AccountExists(AccountError):
    """The username is taken."""


class LoginRefused(Exception):
    """Wrong username or password, a locked or inactive account; ``reason`` is for the audit log
    (``failure``: what was wrong with the attempt that locked the account, for ``locked_now``)."""

    def __init__(
        self,
        reason: str,
        user: User | None = None,
        locked_until: datetime | None = None,
        failure: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.user = user
        self.locked_until = locked_until
        self.failure = failure


class RefreshRefused(Exception):
    def __init__(self, reason: str, session_id: str | None = None, user_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.session_id = session_id
        self.user_id = user_id


class DeviceScopeRefused(AccountError):
    """A device scope that cannot be given: ``beyond_manager`` when it reaches past the enroller's
    own grants (a refusal of authority), otherwise past the owner's fieldworker grants (bad input)."""

    def __init__(self, message: str, field: str, beyond_manager: bool) -> None:
        super().__init__(message, field)
        self.beyond_manager = beyond_manager


class EnrolmentRefused(Exception):
    def __init__(self, reason: str, device_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.device_id = device_id


class ReenrolmentRefused(Exception):
    """A re-enrolment code cannot be issued for this device; ``reason`` is for the audit log."""

    def __init__(self, reason: str, device_id: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.device_id = device_id


@dataclass(frozen=True)
class AccountPolicy:
    password_min_length: int
    lockout_threshold: int
    lockout_seconds: int
    refresh_seconds: int
    device_refresh_seconds: int
    enrolment_seconds: int

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> AccountPolicy:
        return cls(
            password_min_length=settings["surveykit.password_min_length"],
            lockout_threshold=settings["surveykit.lockout_threshold"],
            lockout_seconds=settings["surveykit.lockout_seconds"],
            refresh_seconds=settings["surveykit.refresh_token_seconds"],
            device_refresh_seconds=settings["surveykit.device_refresh_token_seconds"],
            enrolment_seconds=settings["surveykit.enrolment_code_seconds"],
        )


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    session_id: str
    user_id: int
    device_id: str | None

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "token_type": "Bearer",
            "access_token": self.access_token,
            "expires_in": int((self.access_expires_at - now).total_seconds()),
            "refresh_token": self.refresh_token,
            "refresh_expires_at": self.refresh_expires_at.isoformat(),
        }


# ---------------------------------------------------------------------------------------- users


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountError(f"no user {username!r}", "username")
    return user


def create_user(session: Session, username: str, password: str | None, policy: AccountPolicy) -> User:
    if not USERNAME.match(username):
        raise AccountError(
            "username must be 3-64 lower-case letters, digits, '.', '_' or '-', starting with a letter "
            "or digit",
            "username",
        )
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AccountExists(f"user {username!r} already exists", "username")
    user = User(username=username, active=True)
    if password is not None:
        set_password(user, password, policy)
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str, policy: AccountPolicy) -> None:
    try:
        passwords.check_password_rules(password, policy.password_min_length)
    except passwords.PasswordRejected as exc:
        raise AccountError(str(exc), "password") from exc
    user.password_hash = passwords.hash_password(password)


def deactivate_user(session: Session, user: User) -> None:
    user.active = False
    revoke_sessions(session, AuthSession.user_id == user.id, "user deactivated")


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def has_admin(session: Session) -> bool:
    return (
        session.scalar(
            select(Grant.id)
            .join(User, User.id == Grant.user_id)
            .where(Grant.role == "admin", Grant.study_id.is_(None), User.active.is_(True))
            .limit(1)
        )
        is not None
    )


# --------------------------------------------------------------------------------------- grants


def add_grant(
    session: Session,
    user: User,
    role: str,
    study_slug: str | None,
    countries: list[str] | None,
    granted_by: str | None,
) -> Grant:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}", "role")
    study: Study | None = None
    if study_slug is None:
        if role != "admin":
            raise AccountError("only an admin grant may cover every study; name a study", "study")
        if countries:
            raise AccountError("a grant for every study covers every country", "countries")
    else:
        try:
            study = get_study(session, study_slug)
        except StudyNotFound as exc:
            raise AccountError(str(exc), "study") from exc
    if countries is not None:
        if not countries:
            raise AccountError("name at least one country, or grant all countries", "countries")
        known = country_codes(session, study) if study is not None else set()
        unknown = sorted(set(countries) - known)
        if unknown:
            raise AccountError(f"study {study_slug} has no country {', '.join(unknown)}", "countries")
        countries = sorted(set(countries))
    grant = Grant(
        user_id=user.id,
        role=role,
        study_id=study.id if study else None,
        countries=countries,
        granted_by=granted_by,
    )
    session.add(grant)
    session.flush()
    return grant


def remove_grant(session: Session, user: User, grant_id: int) -> Grant:
    grant = session.get(Grant, grant_id)
    if grant is None or grant.user_id != user.id:
        raise AccountError(f"{user.username} has no grant {grant_id}", "grant")
    session.delete(grant)
    session.flush()
    return grant


def describe_grant(session: Session, grant: Grant) -> dict[str, Any]:
    study = session.get(Study, grant.study_id) if grant.study_id is not None else None
    return {
        "id": grant.id,
        "role": grant.role,
        "study": study.slug if study else "*",
        "countries": grant.countries if grant.countries is not None else "*",
    }


# ----------------------------------------------------------------------------------- logging in


@dataclass(frozen=True)
class VerifiedLogin:
    """A password found right, outside any write transaction; ``complete_login`` records it."""

    user_id: int
    username: str
    client_addr: str
    password_hash: str
    # A stronger hash of the same password, computed with the verification when the parameters
    # changed, so the write transaction never waits for argon2.
    new_password_hash: str | None


def authenticate(
    sessions: Callable[[], Session],
    username: str,
    password: str,
    client_addr: str | None,
    policy: AccountPolicy,
    throttle_policy: throttle.ThrottlePolicy,
    now: datetime | None = None,
) -> VerifiedLogin:
    """Check a login without holding a write lock while argon2 runs.

    ``sessions`` opens short transactions of this function's own: a read (the address's throttle and
    the account), then one short write that counts the attempt for the address and reserves an
    attempt for the account from this address, then the verification with no transaction open.

    Raises ``throttle.Throttled`` past the address's limit and ``LoginRefused`` otherwise. The
    lockout counts attempts per account *and* address, keyed by the username as typed, so an unknown
    username gets the same answers in the same order as a known one, and an attacker elsewhere
    cannot lock the owner out. At most ``lockout_threshold`` passwords are ever verified per account
    and address in a lockout window, however many requests run at once: each one takes its number
    in one atomic statement before verifying, and those past the threshold are refused unverified.
    """
    now = now or utcnow()
    address = throttle.address_key(client_addr)
    with sessions() as session:
        throttle.refuse_if_throttled(session, throttle.LOGIN, address, throttle_policy.login_limit, now)
        account = session.execute(
            select(User.id, User.password_hash, User.active).where(User.username == username)
        ).first()
    with sessions() as session:
        begin_write(session)
        try:
            throttle.count_address(session, throttle.LOGIN, address, throttle_policy, now)
        except throttle.Throttled:
            session.commit()
            raise
        attempt = throttle.count_attempt(
            session,
            throttle.LOCKOUT,
            address,
            username,
            window_seconds=policy.lockout_seconds,
            now=now,
            restart_at=policy.lockout_threshold,
        )
        session.commit()
    _purge_now_and_then(sessions, now)
    if attempt.attempts > policy.lockout_threshold:
        raise LoginRefused("locked", locked_until=attempt.window_ends_at)
    if account is None:
        passwords.verify_password(None, password)  # as long as a wrong password takes
        failure = "unknown_user"
    elif not passwords.verify_password(account.password_hash, password):
        failure = "bad_password"
    elif not account.active:
        failure = "inactive"
    else:
        rehashed = (
            passwords.hash_password(password) if passwords.needs_rehash(account.password_hash) else None
        )
        return VerifiedLogin(account.id, username, address, account.password_hash, rehashed)
    if attempt.attempts == policy.lockout_threshold:
        raise LoginRefused("locked_now", locked_until=attempt.window_ends_at, failure=failure)
    raise LoginRefused(failure)


def complete_login(session: Session, verified: VerifiedLogin, now: datetime | None = None) -> User:
    """Record a verified login in ``session`` (a short write): the account's attempts from this
    address start again from zero, and the last login time is set."""
    now = now or utcnow()
    user = session.get(User, verified.user_id)
    # Re-read under the write: deactivated or given a new password while the old one was verified.
    if user is None or user.password_hash != verified.password_hash:
        raise LoginRefused("bad_password")
    if not user.active:
        raise LoginRefused("inactive", user)
    throttle.forget(session, throttle.LOCKOUT, verified.client_addr, verified.username)
    user.last_login_at = now
    if verified.new_password_hash is not None:
        user.password_hash = verified.new_password_hash
    return user


def _purge_now_and_then(sessions: Callable[[], Session], now: datetime) -> None:
    if not throttle.purge_due():
        return
    with sessions() as session:
        begin_write(session)
        throttle.purge_expired(session, now)
        session.commit()


def admit_activation(
    sessions: Callable[[], Session],
    client_addr: str | None,
    throttle_policy: throttle.ThrottlePolicy,
    now: datetime | None = None,
) -> None:
    """Count a device activation from this address in a short transaction of its own; raises
    ``throttle.Throttled`` past the limit."""
    now = now or utcnow()
    address = throttle.address_key(client_addr)
    with sessions() as session:
        throttle.refuse_if_throttled(
            session, throttle.ACTIVATE, address, throttle_policy.activation_limit, now
        )
    with sessions() as session:
        begin_write(session)
        try:
            throttle.count_address(session, throttle.ACTIVATE, address, throttle_policy, now)
        except throttle.Throttled:
            session.commit()
            raise
        session.commit()
    _purge_now_and_then(sessions, now)


def start_session(
    session: Session,
    user: User,
    tokens: TokenSettings,
    policy: AccountPolicy,
    device: Device | None = None,
    now: datetime | None = None,
) -> TokenPair:
    now = now or utcnow()
    auth_session = AuthSession(
        id=str(uuid.uuid4()), user_id=user.id, device_id=device.id if device else None, created_at=now
    )
    session.add(auth_session)
    session.flush()
    return _issue_pair(session, auth_session, tokens, policy, now)


def _issue_pair(
    session: Session, auth_session: AuthSession, tokens: TokenSettings, policy: AccountPolicy, now: datetime
) -> TokenPair:
    lifetime = policy.device_refresh_seconds if auth_session.device_id else policy.refresh_seconds
    refresh = new_opaque_token()
    refresh_expires = now + timedelta(seconds=lifetime)
    session.add(
        RefreshToken(
            session_id=auth_session.id,
            token_hash=opaque_token_hash(refresh),
            issued_at=now,
            expires_at=refresh_expires,
        )
    )
    access, access_expires = issue_access_token(
        tokens,
        user_id=auth_session.user_id,
        session_id=auth_session.id,
        device_id=auth_session.device_id,
        now=now,
    )
    session.flush()
    return TokenPair(
        access,
        access_expires,
        refresh,
        refresh_expires,
        auth_session.id,
        auth_session.user_id,
        auth_session.device_id,
    )


def rotate_refresh_token(
    session: Session,
    refresh_token: str,
    tokens: TokenSettings,
    policy: AccountPolicy,
    now: datetime | None = None,
) -> TokenPair:
    """Exchange a refresh token for a new pair; a token presented twice ends its whole session."""
    now = now or utcnow()
    stored = session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == opaque_token_hash(refresh_token))
    )
    if stored is None:
        raise RefreshRefused("unknown")
    auth_session = session.get(AuthSession, stored.session_id)
    # Claim the token atomically: of two concurrent refreshes with one token, only one wins.
    claimed = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == stored.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        revoke_sessions(session, AuthSession.id == auth_session.id, "refresh token reused")
        raise RefreshRefused("reused", auth_session.id, auth_session.user_id)
    if auth_session.revoked_at is not None:
        raise RefreshRefused("session_revoked", auth_session.id, auth_session.user_id)
    if stored.expires_at <= now:
        raise RefreshRefused("expired", auth_session.id, auth_session.user_id)
    user = session.get(User, auth_session.user_id)
    if user is None or not user.active:
        raise RefreshRefused("inactive", auth_session.id, auth_session.user_id)
    if auth_session.device_id is not None:
        device = session.get(Device, auth_session.device_id)
        if device is None or device.revoked_at is not None:
            raise RefreshRefused("device_revoked", auth_session.id, auth_session.user_id)
    return _issue_pair(session, auth_session, tokens, policy, now)


def end_session_by_refresh_token(session: Session, refresh_token: str) -> AuthSession | None:
    stored = session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == opaque_token_hash(refresh_token))
    )
    if stored is None:
        return None
    auth_session = session.get(AuthSession, stored.session_id)
    revoke_sessions(session, AuthSession.id == auth_session.id, "logout")
    return auth_session


def revoke_sessions(session: Session, condition: Any, reason: str, now: datetime | None = None) -> int:
    return session.execute(
        update(AuthSession)
        .where(condition, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow(), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount


# -------------------------------------------------------------------------------------- devices


def new_enrolment_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalise_code(code: str) -> str:
    cleaned = re.sub(r"[\s-]", "", code.upper())
    return f"{cleaned[:5]}-{cleaned[5:]}"


def enrolment_payload(server_url: str, code: str) -> str:
    """What the enrolment QR code holds: where the server is and the one-time code."""
    return "surveykit://enrol?" + urlencode({"server": server_url, "code": code})


def fieldworker_coverage(session: Session, user_id: int) -> dict[int, tuple[str, Countries]]:
    """Study id -> (slug, countries) that the user's fieldworker grants cover together."""
    rows = session.execute(
        select(Grant.study_id, Study.slug, Grant.countries)
        .join(Study, Study.id == Grant.study_id)
        .where(Grant.user_id == user_id, Grant.role == "fieldworker")
    )
    coverage: dict[int, tuple[str, Countries]] = {}
    for study_id, slug, countries in rows:
        owned = tuple(countries) if countries is not None else None
        if study_id in coverage:
            earlier = coverage[study_id][1]
            owned = None if earlier is None or owned is None else tuple(sorted({*earlier, *owned}))
        coverage[study_id] = (slug, owned)
    return coverage


def enrolment_scope(
    session: Session,
    owner: User,
    manager: Identity | None,
    study: str | None = None,
    countries: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The scope of a device enrolled now for ``owner`` by ``manager`` (None: the operator at the
    command line, who manages everything), in the form ``Device.scope`` stores.

    By default it is what the owner's fieldworker grants and the manager's coordinator and admin
    grants cover in common, study by study. A requested ``study`` (and ``countries`` of it) narrows
    that; asking for more than the manager manages is ``DeviceScopeRefused`` with
    ``beyond_manager``, more than the owner holds is ``DeviceScopeRefused`` without. An empty list
    means the manager may not enrol a device for this owner at all.
    """
    if countries is not None and study is None:
        raise DeviceScopeRefused("name the study these countries belong to", "study", beyond_manager=False)
    owned = fieldworker_coverage(session, owner.id)

    def managed(slug: str) -> Countries:
        return None if manager is None else grants_coverage(manager.grants, DEVICE_MANAGING_ROLES, slug)

    if study is not None:
        if managed(study) == ():
            raise DeviceScopeRefused(
                f"you do not manage devices in study {study}", "study", beyond_manager=True
            )
        owned = {study_id: entry for study_id, entry in owned.items() if entry[0] == study}
        if not owned:
            raise DeviceScopeRefused(
                f"{owner.username} holds no fieldworker grant in study {study}", "study", beyond_manager=False
            )
    scope = []
    for study_id, (slug, owner_countries) in sorted(owned.items(), key=lambda item: item[1][0]):
        common = common_countries(owner_countries, managed(slug))
        if countries is not None:
            requested = tuple(sorted(set(countries)))
            allowed = managed(slug)
            outside = [] if allowed is None else sorted(set(requested) - set(allowed))
            if outside:
                raise DeviceScopeRefused(
                    f"you do not manage devices in {', '.join(outside)} of study {slug}",
                    "countries",
                    beyond_manager=True,
                )
            if not countries_within(requested, owner_countries):
                missing = sorted(set(requested) - set(owner_countries or ()))
                raise DeviceScopeRefused(
                    f"{owner.username} holds no fieldworker grant for {', '.join(missing)} in study {slug}",
                    "countries",
                    beyond_manager=False,
                )
            common = requested
        if common is None or common:
            scope.append({"study_id": study_id, "countries": list(common) if common is not None else None})
    if study is not None and not scope:
        raise DeviceScopeRefused(
            f"you manage none of {owner.username}'s countries in study {study}", "study", beyond_manager=True
        )
    return scope


def study_slugs(session: Session) -> dict[int, str]:
    return {study_id: slug for study_id, slug in session.execute(select(Study.id, Study.slug))}


def scope_by_slug(scope: list[dict[str, Any]], slugs: dict[int, str]) -> list[tuple[str, Countries]]:
    """A stored device scope as (study slug, countries) pairs; a removed study reaches nothing."""
    return [
        (slugs[entry["study_id"]], tuple(entry["countries"]) if entry["countries"] is not None else None)
        for entry in scope
        if entry["study_id"] in slugs
    ]


def describe_scope(scope: list[dict[str, Any]], slugs: dict[int, str]) -> list[dict[str, Any]]:
    """A device scope as the API shows it: study slugs, ``"*"`` for every country of a study."""
    return [
        {"study": study, "countries": list(countries) if countries is not None else "*"}
        for study, countries in scope_by_slug(scope, slugs)
    ]


def enrol_device(
    session: Session,
    owner: User,
    label: str,
    enrolled_by: str | None,
    policy: AccountPolicy,
    now: datetime | None = None,
    scope: list[dict[str, Any]] | None = None,
) -> tuple[Device, str]:
    """A pending device for ``owner`` and its one-time enrolment code (returned once, stored hashed).

    ``scope`` comes from ``enrolment_scope``; without it the device gets all of the owner's
    fieldworker grants (the operator's enrolment at the command line).
    """
    now = now or utcnow()
    label = label.strip()
    if not label or len(label) > 200:
        raise AccountError("label must be 1-200 characters", "label")
    if not owner.active:
        raise AccountError(f"user {owner.username} is deactivated", "username")
    if scope is None:
        scope = enrolment_scope(session, owner, None)
    if not scope:
        raise AccountError(f"{owner.username} has no fieldworker grant", "username")
    code = new_enrolment_code()
    device = Device(
        id=str(uuid.uuid4()),
        user_id=owner.id,
        label=label,
        scope=scope,
        enrolled_by=enrolled_by,
        created_at=now,
        enrolment_code_hash=opaque_token_hash(code),
        enrolment_expires_at=now + timedelta(seconds=policy.enrolment_seconds),
    )
    session.add(device)
    session.flush()
    return device, code


def reenrol_device(
    session: Session,
    device: Device,
    actor: str | None,
    policy: AccountPolicy,
    now: datetime | None = None,
) -> str:
    """A fresh one-time enrolment code for an existing ``device`` (returned once, stored hashed).

    Activating it starts a new session for the same device id, so the device's number blocks stay
    its own; it also ends every earlier session of the device (an in-doubt refresh token included).
    A new code replaces any unused earlier one. A revoked device stays revoked (``ReenrolmentRefused``);
    a deactivated owner, or one without a fieldworker grant, is an ``AccountError`` as for enrolment.
    ``actor`` (who asked) is not stored on the device, which keeps its original ``enrolled_by``:
    callers record it in the audit log (``device.reenrol``).
    """
    now = now or utcnow()
    if device.revoked_at is not None:
        raise ReenrolmentRefused("revoked", device.id)
    owner = session.get(User, device.user_id)
    if not owner.active:
        raise AccountError(f"user {owner.username} is deactivated", "device")
    if not any(grant.role == "fieldworker" for grant in owner.grants):
        raise AccountError(f"{owner.username} has no fieldworker grant", "device")
    code = new_enrolment_code()
    expires = now + timedelta(seconds=policy.enrolment_seconds)
    # In SQL, on the condition that the device is still not revoked: a revocation committed since the
    # device was read (PostgreSQL re-checks the condition once the revoking transaction commits)
    # leaves no usable code behind.
    issued = session.execute(
        update(Device)
        .where(Device.id == device.id, Device.revoked_at.is_(None))
        .values(enrolment_code_hash=opaque_token_hash(code), enrolment_expires_at=expires)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(device)
    if issued != 1:
        raise ReenrolmentRefused("revoked", device.id)
    return code


@dataclass(frozen=True)
class Activation:
    device: Device
    pair: TokenPair
    # Whether the device had been activated before (a re-enrolment), and how many of its sessions
    # the activation ended.
    reenrolment: bool
    sessions_ended: int


def activate_device(
    session: Session, code: str, tokens: TokenSettings, policy: AccountPolicy, now: datetime | None = None
) -> tuple[Device, TokenPair]:
    activation = activate(session, code, tokens, policy, now)
    return activation.device, activation.pair


def activate(
    session: Session, code: str, tokens: TokenSettings, policy: AccountPolicy, now: datetime | None = None
) -> Activation:
    """Exchange a one-time enrolment code (a first one, or a re-enrolment's) for a device session.

    Every earlier session of the device is ended first, so after a re-enrolment only the newly
    activated tablet holds a working token for the device id; its number blocks stay valid.
    """
    now = now or utcnow()
    code_hash = opaque_token_hash(normalise_code(code))
    device = session.scalar(select(Device).where(Device.enrolment_code_hash == code_hash))
    if device is None:
        raise EnrolmentRefused("unknown_or_used")
    # The code is spent whatever happens next. Claimed in SQL, as a refresh token is: of two
    # concurrent activations with one code (or an activation racing a revocation or a newer
    # re-enrolment code), only the one whose UPDATE still finds the code goes on.
    claimed = session.execute(
        update(Device)
        .where(Device.id == device.id, Device.enrolment_code_hash == code_hash)
        .values(enrolment_code_hash=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    # The row as it is now (and, on PostgreSQL, locked by the claim until commit).
    session.refresh(device)
    if claimed != 1:
        raise EnrolmentRefused("unknown_or_used", device.id)
    if device.revoked_at is not None:
        raise EnrolmentRefused("revoked", device.id)
    if device.enrolment_expires_at is None or device.enrolment_expires_at <= now:
        raise EnrolmentRefused("expired", device.id)
    owner = session.get(User, device.user_id)
    if owner is None or not owner.active:
        raise EnrolmentRefused("inactive", device.id)
    reenrolment = device.activated_at is not None
    ended = revoke_sessions(session, AuthSession.device_id == device.id, "device re-enrolled", now)
    device.activated_at = now
    device.last_seen_at = now
    pair = start_session(session, owner, tokens, policy, device=device, now=now)
    return Activation(device, pair, reenrolment, ended)


def revoke_device(session: Session, device: Device, now: datetime | None = None) -> Device:
    now = now or utcnow()
    if device.revoked_at is None:
        device.revoked_at = now
        device.enrolment_code_hash = None
    revoke_sessions(session, AuthSession.device_id == device.id, "device revoked", now)
    return device


def describe_device(device: Device, username: str, slugs: dict[int, str]) -> dict[str, Any]:
    return {
        "id": device.id,
        "label": device.label,
        "user": username,
        "status": device.status,
        "scope": describe_scope(device.scope, slugs),
        "created_at": device.created_at.isoformat(),
        "activated_at": device.activated_at.isoformat() if device.activated_at else None,
        "revoked_at": device.revoked_at.isoformat() if device.revoked_at else None,
        "last_seen_at": device.last_seen_at.isoformat() if device.last_seen_at else None,
        # Until a pending device is activated, or while a re-enrolment code is outstanding.
        "enrolment_expires_at": (
            device.enrolment_expires_at.isoformat()
            if device.enrolment_expires_at
            and (device.activated_at is None or device.enrolment_code_hash is not None)
            else None
        ),
    }


# ------------------------------------------------------------------ passwords and lockouts by hand


class PasswordChangeRefused(Exception):
    """The current password given to change one's own was wrong (``reason`` ``bad_password``), or
    too many wrong ones were given from this address (``locked``, with ``locked_until``).

    The attempt has been counted in the session: callers must commit it (answer, don't raise)."""

    def __init__(self, reason: str, locked_until: datetime | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.locked_until = locked_until


def _staff_sessions_of(user: User) -> Any:
    # Tablets' sessions come from enrolment, not from the password: they are not ended here.
    return (AuthSession.user_id == user.id) & AuthSession.device_id.is_(None)


def change_own_password(
    session: Session,
    user: User,
    current: str,
    new: str,
    policy: AccountPolicy,
    keep_session_id: str | None = None,
    *,
    client_addr: str | None = None,
    throttle_policy: throttle.ThrottlePolicy | None = None,
    now: datetime | None = None,
) -> PasswordChange:
    """Set ``user``'s password to ``new`` after checking ``current``; ends the user's other login
    sessions (every one but ``keep_session_id``; tablets keep theirs) and revokes their personal
    access tokens, and says how many of each.

    The new password must meet the policy (``AccountError`` with field ``new_password``, nothing
    counted). The current password is checked like a login: the attempt counts against the
    account's lockout for ``client_addr`` and the address's login throttle (``throttle.Throttled``),
    and a locked account is refused unverified. A wrong or refused one raises
    ``PasswordChangeRefused`` with the attempt counted: commit the session all the same.
    """
    now = now or utcnow()
    try:
        passwords.check_password_rules(new, policy.password_min_length)
    except passwords.PasswordRejected as exc:
        raise AccountError(str(exc), "new_password") from exc
    address = throttle.address_key(client_addr)
    if throttle_policy is not None:
        throttle.count_address(session, throttle.LOGIN, address, throttle_policy, now)
    attempt = throttle.count_attempt(
        session,
        throttle.LOCKOUT,
        address,
        user.username,
        window_seconds=policy.lockout_seconds,
        now=now,
        restart_at=policy.lockout_threshold,
    )
    if attempt.attempts > policy.lockout_threshold:
        raise PasswordChangeRefused("locked", attempt.window_ends_at)
    if not passwords.verify_password(user.password_hash, current):
        if attempt.attempts == policy.lockout_threshold:
            raise PasswordChangeRefused("locked_now", attempt.window_ends_at)
        raise PasswordChangeRefused("bad_password")
    throttle.forget(session, throttle.LOCKOUT, address, user.username)
    user.password_hash = passwords.hash_password(new)
    others = _staff_sessions_of(user)
    if keep_session_id is not None:
        others = others & (AuthSession.id != keep_session_id)
    ended = revoke_sessions(session, others, "password changed", now)
    return PasswordChange(ended, access_tokens.revoke_owner_tokens(session, user.id, "password changed", now))


def generate_password() -> str:
    return secrets.token_urlsafe(15)


@dataclass(frozen=True)
class PasswordChange:
    # The user's other login sessions ended, and their personal access tokens revoked.
    sessions_ended: int
    access_tokens_revoked: int


@dataclass(frozen=True)
class PasswordReset:
    # The generated password (shown once), or None when the admin chose it.
    generated: str | None
    sessions_ended: int
    lockouts_cleared: int
    access_tokens_revoked: int


def reset_password(
    session: Session, user: User, new: str | None, policy: AccountPolicy, now: datetime | None = None
) -> PasswordReset:
    """An admin gives ``user`` a new password (``new``, or a generated one when None): every login
    session of the user ends (tablets keep theirs), their personal access tokens are revoked, and
    the account's lockouts are cleared, since they counted guesses at the old password."""
    generated = generate_password() if new is None else None
    set_password(user, generated or new, policy)
    ended = revoke_sessions(session, _staff_sessions_of(user), "password reset", now)
    cleared = unlock_account(session, user)
    revoked = access_tokens.revoke_owner_tokens(session, user.id, "password reset", now)
    return PasswordReset(generated, ended, cleared, revoked)


def unlock_account(session: Session, user: User) -> int:
    """Clear the account's login lockout from every address; returns how many counters went."""
    return throttle.forget_account(session, throttle.LOCKOUT, user.username)


def account_lock_state(
    session: Session, username: str, policy: AccountPolicy, now: datetime | None = None
) -> datetime | None:
    """Until when ``username`` is locked from some address (the latest such time), or None."""
    return locked_accounts(session, policy, [username], now).get(username)


def locked_accounts(
    session: Session, policy: AccountPolicy, usernames: list[str] | None = None, now: datetime | None = None
) -> dict[str, datetime]:
    """Username -> until when it is locked from some address, for the accounts locked now (of
    ``usernames``, or all), in one query."""
    return throttle.locked_until(
        session, throttle.LOCKOUT, policy.lockout_threshold, now or utcnow(), usernames
    )


def describe_user(session: Session, user: User, locked_until: datetime | None) -> dict[str, Any]:
    return {
        "username": user.username,
        "active": user.active,
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
        "locked_until": locked_until.isoformat() if locked_until else None,
        "grants": [describe_grant(session, grant) for grant in user.grants],
    }
