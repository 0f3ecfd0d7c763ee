"""The console's sign-in cookie and its CSRF tokens, both bound to a login session.

A browser signs in through the console's form, which starts the same kind of login session as the
API's token login (``services.start_session``). The cookie names that session in a JWT of its own
type (``typ: console``, audience ``<jwt audience>:console``), signed with the token keys, so an
access token is never accepted as a cookie nor a cookie as a bearer token. The security policy
checks the session behind the cookie on every request exactly as for a token: sign-out, revocation,
deactivation and the cache epoch apply at once.

The cookie is read only for console paths (``/console/...``, whose route names start with
``CONSOLE_ROUTE_PREFIX``); the API keeps bearer tokens only, so a page on another site can never
spend a browser's cookie on the API.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime, timedelta
from typing import Any

import jwt

from surveykit.accounts.tokens import ALGORITHM, LEEWAY, TokenRejected, TokenSettings

COOKIE_NAME = "surveykit_console"
CONSOLE_ROUTE_PREFIX = "console."
COOKIE_TYPE = "console"
_REQUIRED = ["iss", "aud", "sub", "iat", "exp", "jti", "sid", "typ"]


def is_console_request(request: Any) -> bool:
    """Whether the request is for the console (``/``, ``/console`` and below). Decided by the path,
    not the matched route: the identity is first asked for before routing (by pyramid_tm)."""
    path = request.environ.get("PATH_INFO", "")  # the raw WSGI text: it may not be UTF-8
    return path in ("/", "/console") or path.startswith("/console/")


def cookie_audience(tokens: TokenSettings) -> str:
    return f"{tokens.audience}:console"


def issue_cookie_value(
    tokens: TokenSettings, *, user_id: int, session_id: str, now: datetime, lifetime_seconds: int
) -> tuple[str, datetime]:
    expires = now + timedelta(seconds=lifetime_seconds)
    claims = {
        "iss": tokens.issuer,
        "aud": cookie_audience(tokens),
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
        "sid": session_id,
        "typ": COOKIE_TYPE,
    }
    value = jwt.encode(
        claims, tokens.keys[tokens.signing_kid], algorithm=ALGORITHM, headers={"kid": tokens.signing_kid}
    )
    return value, expires


def decode_cookie_value(tokens: TokenSettings, value: str) -> dict[str, Any]:
    """The claims of a console cookie; ``TokenRejected`` when it must not be honoured."""
    try:
        header = jwt.get_unverified_header(value)
    except jwt.InvalidTokenError as exc:
        raise TokenRejected("malformed", "the console cookie is not well-formed") from exc
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in tokens.keys or header.get("alg") != ALGORITHM:
        raise TokenRejected("unknown_kid", "the console cookie was signed with an unknown or retired key")
    try:
        claims = jwt.decode(
            value,
            tokens.keys[kid],
            algorithms=[ALGORITHM],
            audience=cookie_audience(tokens),
            issuer=tokens.issuer,
            options={"require": _REQUIRED},
            leeway=LEEWAY,
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenRejected("expired", "the console sign-in has expired; sign in again") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenRejected("invalid", "the console cookie is not valid") from exc
    if claims.get("typ") != COOKIE_TYPE or not str(claims["sub"]).isdigit():
        raise TokenRejected("invalid", "the console cookie is not valid")
    # A console sign-in is never a device's session.
    claims.pop("dev", None)
    return claims


def _csrf_key(tokens: TokenSettings) -> bytes:
    return hashlib.sha256(b"surveykit console csrf\x00" + tokens.keys[tokens.signing_kid].encode()).digest()


def csrf_token_for(tokens: TokenSettings, scope: str) -> str:
    """The CSRF token of a login session (``session:<id>``) or of a signed-out browser
    (``anonymous:<random>``): derived, so nothing more is stored."""
    return hmac.new(_csrf_key(tokens), scope.encode("utf-8"), hashlib.sha256).hexdigest()
