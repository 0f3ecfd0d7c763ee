"""The Pyramid 2 security policy: bearer access tokens, checked against revocation on every request."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pyramid.authorization import ACLHelper, Everyone
from pyramid.request import Request, RequestLocalCache

from surveykit.accounts import browser
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
}


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

    def __init__(self, tokens: TokenSettings) -> None:
        self.tokens = tokens
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
        try:
            claims = self.verified.decode(token.strip())
        except TokenRejected as exc:
            return self._refuse(request, exc.reason, exc.message)
        return self._checked_identity(request, claims)

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
    ) -> None:
        request.environ[AUTH_PROBLEM] = message
        audit.record_refusal(
            request,
            "auth.token_refused",
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
        return self.acl.permits(context, self.principals(request), permission)

    def remember(self, request: Request, userid: str, **kw: Any) -> list[tuple[str, str]]:
        return []

    def forget(self, request: Request, **kw: Any) -> list[tuple[str, str]]:
        return []


class AllowEveryonePolicy(TokenSecurityPolicy):
    """Grants everything to everyone. Only for the benchmark that measures what authorisation costs;
    it can be installed from Python code, never from a setting."""

    def permits(self, request: Request, context: Any, permission: str) -> Any:
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
