"""Access tokens (PyJWT, HS256 with key ids) and opaque refresh tokens.

Every decode names its algorithm allow-list, audience and issuer, and requires every claim that
authorisation relies on. Keys come from settings: the first key signs, every listed key verifies,
so a key is rotated by putting the new one first and retired by removing it later.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

ALGORITHM = "HS256"
LEEWAY = 5
REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sid", "typ"]


class TokenRejected(Exception):
    """A token that must not be honoured; ``reason`` is a short code for the audit log."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class TokenSettings:
    keys: dict[str, str]
    signing_kid: str
    issuer: str
    audience: str
    access_seconds: int

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> TokenSettings:
        keys = settings["surveykit.jwt_keys"]
        return cls(
            keys=keys,
            signing_kid=next(iter(keys)),
            issuer=settings["surveykit.jwt_issuer"],
            audience=settings["surveykit.jwt_audience"],
            access_seconds=settings["surveykit.access_token_seconds"],
        )


def issue_access_token(
    config: TokenSettings,
    *,
    user_id: int,
    session_id: str,
    device_id: str | None,
    now: datetime,
) -> tuple[str, datetime]:
    expires = now + timedelta(seconds=config.access_seconds)
    claims = {
        "iss": config.issuer,
        "aud": config.audience,
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
        "sid": session_id,
        "typ": "access",
    }
    if device_id is not None:
        claims["dev"] = device_id
    token = jwt.encode(
        claims, config.keys[config.signing_kid], algorithm=ALGORITHM, headers={"kid": config.signing_kid}
    )
    return token, expires


def decode_access_token(config: TokenSettings, token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise TokenRejected("malformed", "the bearer token is not a well-formed JWT") from exc
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in config.keys:
        raise TokenRejected("unknown_kid", "the token was signed with an unknown or retired key")
    if header.get("alg") != ALGORITHM:
        raise TokenRejected("bad_algorithm", f"tokens must be signed with {ALGORITHM}")
    try:
        claims = jwt.decode(
            token,
            config.keys[kid],
            algorithms=[ALGORITHM],
            audience=config.audience,
            issuer=config.issuer,
            options={"require": REQUIRED_CLAIMS},
            leeway=LEEWAY,
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenRejected("expired", "the access token has expired; refresh it") from exc
    except jwt.ImmatureSignatureError as exc:
        raise TokenRejected("not_yet_valid", "the access token is not valid yet") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenRejected("wrong_audience", "the token is not meant for this API") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenRejected("wrong_issuer", "the token was not issued by this server") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenRejected("bad_signature", "the token signature does not verify") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejected("missing_claim", f"the token lacks the {exc.claim!r} claim") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenRejected("invalid", "the token is not valid") from exc
    if claims.get("typ") != "access" or not str(claims["sub"]).isdigit():
        raise TokenRejected("invalid", "the token is not an access token")
    return claims


class VerifiedTokens:
    """Claims of access tokens this process has already verified, so a tablet's repeated requests
    skip the signature check. A token's bytes fix its claims, so only time needs re-checking; the
    revocation checks that follow run on every request regardless."""

    def __init__(self, config: TokenSettings, capacity: int = 4096) -> None:
        self.config = config
        self.capacity = capacity
        self._claims: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def decode(self, token: str) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            claims = self._claims.get(token)
        if claims is not None and claims["nbf"] - LEEWAY <= now < claims["exp"] + LEEWAY:
            return claims
        claims = decode_access_token(self.config, token)
        with self._lock:
            self._claims[token] = claims
            while len(self._claims) > self.capacity:
                self._claims.popitem(last=False)
        return claims


def new_opaque_token() -> str:
    return secrets.token_urlsafe(32)


def opaque_token_hash(token: str) -> str:
    # The tokens carry 256 random bits, so a fast hash suffices: nothing to brute-force.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
