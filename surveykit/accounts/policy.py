"""The Pyramid 2 security policy: bearer access tokens, checked against revocation on every request."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pyramid.authorization import ACLHelper, Everyone
from pyramid.request import Request, RequestLocalCache
from pyramid.security import Denied

from surveykit.accounts import access_tokens, browser
from surveykit.accounts.identity import (
    Identity,
    IdentityRefused,
    device_seen_long_ago,
    load_identity,
    touch_device,
)
from surveykit.accounts.tokens import TokenRejected, TokenSettings, VerifiedTokens
from surveykit.audit import services as audit
from surveykit.cache_epoch import MISSING, EpochCache
from surveykit.db import SQLITE_IMMEDIATE, utcnow

log = logging.getLogger(__name__)

AUTH_PROBLEM = "surveykit.auth_problem"

_REFUSAL_MESSAGES = {
    "unknown_session": "the token's session is unknown",
    "session_revoked": "the token's session has ended (logged out, revoked or refresh token reused)",
    "inactive": "the account is deactivated",
    "device_revoked": "this device has been revoked",
    "unknown_access_token": "the personal access token is unknown",
    "access_token_revoked": "the personal access token has been revoked",
    "access_token_expired": "the personal access token has expired",
    "locked": "the account is locked after failed logins from this address",
}


class AccessTokenDenied(Denied):
    """A personal access token asked for something outside what such tokens may do."""

    permission: str

    def __new__(cls, permission: str, method: str) -> AccessTokenDenied:
        # A PermitsResult is an int: built in __new__, not __init__.
        denied = super().__new__(cls, "a personal access token may not use %s on %s", permission, method)
        denied.permission = permission
        return denied


class KnownIdentity:
    """An identity that passed the revocation check under some cache epoch."""

    __slots__ = ("identity", "device_seen_at")

    def __init__(self, identity: Identity, device_seen_at: datetime | None) -> None:
        self.identity = identity
        self.device_seen_at = device_seen_at


class TokenSecurityPolicy:
    """Bearer tokens: the signature is checked once per token while it is in date, and the session,
    account, device and grants behind it on every request, against the database or against what
    this process remembers from an earlier request under the same cache epoch (see
    ``surveykit.cache_epoch``): either way, a revocation committed before the request is seen."""

    def __init__(
        self, tokens: TokenSettings, access_token_may: Callable[[str, str], bool] | None = None
    ) -> None:
        self.tokens = tokens
        # Whether a personal access token may use a permission with a request method: the allow-list
        # lives in surveykit.security (handed in, as this module must not import it). None: nothing.
        self.access_token_may = access_token_may or (lambda method, permission: False)
        self.verified = VerifiedTokens(tokens)
        self.acl = ACLHelper()
        self.known = EpochCache()
        self._identity_cache = RequestLocalCache(self._load_identity)

    def identity(self, request: Request) -> Identity | None:
        return self._identity_cache.get_or_create(request)

    def known_identity(self, request: Request) -> Identity | None:
        """The identity if this request already computed it (for the access log), else None."""
        return self._identity_cache.get(request, None)

    def _load_identity(self, request: Request) -> Identity | None:
        if browser.is_console_request(request):
            # Console pages know the sign-in cookie only; the API knows bearer tokens only.
            value = request.cookies.get(browser.COOKIE_NAME)
            if not value:
                return None
            try:
                claims = browser.decode_cookie_value(self.tokens, value)
            except TokenRejected as exc:
                return self._refuse(request, exc.reason, exc.message)
            return self._checked_identity(request, claims)
        header = request.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self._refuse(request, "bad_scheme", "send 'Authorization: Bearer <access token>'")
        token = token.strip()
        if access_tokens.is_access_token(token):
            return self._access_token_identity(request, token)
        try:
            claims = self.verified.decode(token)
        except TokenRejected as exc:
            return self._refuse(request, exc.reason, exc.message)
        return self._checked_identity(request, claims)

    def _access_token_identity(self, request: Request, secret: str) -> Identity | None:
        """A personal access token's owner, checked on every request (never remembered: revoking a
        token moves no cache epoch), its last use written at most once a minute."""
        now = utcnow()
        threshold = request.registry.settings["surveykit.lockout_threshold"]
        try:
            use = access_tokens.load_token_identity(
                request.dbsession, secret, request.remote_addr, threshold, now
            )
        except IdentityRefused as exc:
            return self._refuse(
                request,
                exc.reason,
                _REFUSAL_MESSAGES.get(exc.reason, "token refused"),
                actor=exc.username or "anonymous",
                action="access_token.refused",
            )
        if access_tokens.used_long_ago(use.last_used_at, now):
            request.add_finished_callback(_touch_access_token)
        return use.identity

    def _checked_identity(self, request: Request, claims: dict[str, Any]) -> Identity | None:
        """The identity behind verified claims, checked against revocation (or remembered)."""
        epoch = request.cache_epoch
        key = (claims["sid"], claims["sub"], claims.get("dev"))
        known = self.known.get(key, epoch)
        if known is MISSING:
            try:
                known = KnownIdentity(*load_identity(request.dbsession, claims))
            except IdentityRefused as exc:
                return self._refused_identity(request, exc)
            self.known.put(key, epoch, known)
        identity = known.identity
        if identity.device_id is not None:
            now = utcnow()
            if device_seen_long_ago(known.device_seen_at, now):
                known.device_seen_at = now
                request.add_finished_callback(_touch_device)
        return identity

    def remembered_identity(self, request: Request) -> Identity | None:
        """The caller's identity when this process already holds it under the request's cache
        epoch and the request needs nothing written for it: an API bearer token whose signature
        holds and whose session, account, device and grants passed the check under that same
        epoch, with the device's last-seen time recent enough. None otherwise; the request then
        takes the usual way (``identity``), which gives the same answer and does the writes this
        one leaves out (a refusal's audit event, the device's last-seen time). Found, it is this
        request's identity from then on (``permits``, the access log)."""
        header = request.environ.get("HTTP_AUTHORIZATION")
        if not header or browser.is_console_request(request):
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or access_tokens.is_access_token(token):
            return None
        try:
            claims = self.verified.decode(token)
        except TokenRejected:
            return None
        known = self.known.get((claims["sid"], claims["sub"], claims.get("dev")), request.cache_epoch)
        if known is MISSING:
            return None
        identity = known.identity
        if identity.device_id is not None and device_seen_long_ago(known.device_seen_at, utcnow()):
            return None
        self._identity_cache.set(request, identity)
        return identity

    def _refused_identity(self, request: Request, exc: IdentityRefused) -> None:
        return self._refuse(
            request,
            exc.reason,
            _REFUSAL_MESSAGES.get(exc.reason, "token refused"),
            actor=exc.username or f"user:{exc.user_id}",
            device_id=exc.device_id,
        )

    def _refuse(
        self,
        request: Request,
        reason: str,
        message: str,
        actor: str = "anonymous",
        device_id: str | None = None,
        action: str = "auth.token_refused",
    ) -> None:
        request.environ[AUTH_PROBLEM] = message
        audit.record_refusal(
            request,
            action,
            actor=actor,
            device_id=device_id,
            target=request.path,
            reason=reason,
        )
        return None

    def authenticated_userid(self, request: Request) -> str | None:
        identity = self.identity(request)
        return None if identity is None else identity.username

    def principals(self, request: Request) -> list[str]:
        identity = self.identity(request)
        return [Everyone] if identity is None else identity.principals()

    def permits(self, request: Request, context: Any, permission: str) -> Any:
        return self.permits_identity(self.identity(request), request.method, context, permission)

    def permits_identity(self, identity: Identity | None, method: str, context: Any, permission: str) -> Any:
        """The access rule itself, for an identity already known."""
        if (
            identity is not None
            and identity.access_token_id is not None
            and not self.access_token_may(method, permission)
        ):
            return AccessTokenDenied(permission, method)
        principals = [Everyone] if identity is None else identity.principals()
        return self.acl.permits(context, principals, permission)

    def remember(self, request: Request, userid: str, **kw: Any) -> list[tuple[str, str]]:
        return []

    def forget(self, request: Request, **kw: Any) -> list[tuple[str, str]]:
        return []


class AllowEveryonePolicy(TokenSecurityPolicy):
    """Grants everything to everyone. Only for the benchmark that measures what authorisation costs;
    it can be installed from Python code, never from a setting."""

    def permits_identity(self, identity: Identity | None, method: str, context: Any, permission: str) -> Any:
        from pyramid.security import Allowed

        return Allowed("authorisation off (benchmark)")


def _touch_device(request: Request) -> None:
    """Update the device's last-seen time after the response, in a short write transaction of its
    own: a tablet's read must neither take SQLite's write lock nor fail because it is busy."""
    identity = request.identity
    session = request.registry["dbsession_factory"]()
    try:
        if session.get_bind().dialect.name == "sqlite":
            session.connection(execution_options={SQLITE_IMMEDIATE: True})
        touch_device(session, identity.device_id, utcnow())
        session.commit()
    except Exception:
        log.warning("could not record last-seen time of device %s", identity.device_id, exc_info=True)
        session.rollback()
    finally:
        session.close()


def _touch_access_token(request: Request) -> None:
    """Record a token's last use after the response, in a short write transaction of its own (as
    for a device's last-seen time)."""
    token_id = request.identity.access_token_id
    session = request.registry["dbsession_factory"]()
    try:
        if session.get_bind().dialect.name == "sqlite":
            session.connection(execution_options={SQLITE_IMMEDIATE: True})
        access_tokens.touch_access_token(session, token_id, utcnow())
        session.commit()
    except Exception:
        log.warning("could not record last use of access token %s", token_id, exc_info=True)
        session.rollback()
    finally:
        session.close()
