"""Bearer access tokens: every malformed, forged, stale or misdirected token is refused and audited.

Tokens are real JWTs signed with PyJWT (with the test key from settings, another key, or an RSA key);
nothing in the decode path is mocked.
"""

from __future__ import annotations

import base64
import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import jwt
import pytest
import webtest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session
from support_db import bind_to_connection

from surveykit import make_app
from surveykit.accounts import services
from surveykit.accounts.tokens import REQUIRED_CLAIMS
from surveykit.audit.models import AuditEvent
from surveykit.config import DEVELOPMENT_SECRET, ConfigurationError, load_settings

ME = "/api/v1/me"
ENVELOPE_KEYS = {"status", "code", "message", "details"}
OTHER_SECRET = "another-secret-" + "y" * 40
NEW_SECRET = "rotated-secret-" + "z" * 40


def assert_envelope(response: webtest.TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_int == status, response.text
    assert response.content_type == "application/json"
    body = response.json
    assert set(body) == ENVELOPE_KEYS
    assert (body["status"], body["code"]) == (status, code)
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    return body


def audit_events(dbsession: Session, action: str | None = None) -> list[AuditEvent]:
    dbsession.expire_all()
    statement = select(AuditEvent).order_by(AuditEvent.id)
    if action is not None:
        statement = statement.where(AuditEvent.action == action)
    return list(dbsession.scalars(statement))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(data: dict[str, Any]) -> str:
    return b64url(json.dumps(data, separators=(",", ":")).encode("utf-8"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Forge:
    """Signs claims the way the server does, or deliberately not."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.keys = settings["surveykit.jwt_keys"]
        self.kid = next(iter(self.keys))
        self.key = self.keys[self.kid]
        self.issuer = settings["surveykit.jwt_issuer"]
        self.audience = settings["surveykit.jwt_audience"]

    def claims_of(self, token: str) -> dict[str, Any]:
        # A real, verifying decode with the test key: the claims a genuine token carries.
        return jwt.decode(token, self.key, algorithms=["HS256"], audience=self.audience, issuer=self.issuer)

    def sign(
        self,
        claims: dict[str, Any],
        *,
        key: Any = None,
        kid: str | None = "",
        algorithm: str = "HS256",
    ) -> str:
        headers = {} if kid is None else {"kid": kid or self.kid}
        with warnings.catch_warnings():
            # HS512 with the (HS256-sized) test key is the point of one case.
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            return jwt.encode(claims, self.key if key is None else key, algorithm=algorithm, headers=headers)


@pytest.fixture
def forge(settings: dict[str, Any]) -> Forge:
    return Forge(settings)


@pytest.fixture
def genuine(accounts: Any, forge: Forge) -> dict[str, Any]:
    """A fieldworker with a real session: its token, claims and user."""
    user = accounts.user(role="fieldworker", countries=["KE"])
    token = accounts.token(user)
    return {"user": user, "token": token, "claims": forge.claims_of(token)}


def _now() -> int:
    return int(time.time())


def _with(claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = {**claims, **changes}
    return {key: value for key, value in changed.items() if value is not None}


def _without(claims: dict[str, Any], claim: str) -> dict[str, Any]:
    return {key: value for key, value in claims.items() if key != claim}


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    return f"{b64url_json(header)}.{b64url_json(claims)}."


def _tampered(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{b64url_json(claims)}.{signature}"


_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

# name -> (build the token from (forge, genuine), the audited reason)
BAD_TOKENS: dict[str, tuple[Callable[[Forge, dict[str, Any]], str], str]] = {
    "garbage": (lambda f, g: "this-is-not-a-token", "malformed"),
    "three_garbage_segments": (lambda f, g: "abc.def.ghi", "malformed"),
    "truncated": (lambda f, g: g["token"].rsplit(".", 1)[0], "malformed"),
    "alg_none": (
        lambda f, g: _unsigned(g["claims"], {"alg": "none", "typ": "JWT", "kid": f.kid}),
        "bad_algorithm",
    ),
    "alg_none_with_genuine_signature": (
        lambda f, g: (
            _unsigned(g["claims"], {"alg": "none", "typ": "JWT", "kid": f.kid}) + g["token"].rsplit(".", 1)[1]
        ),
        "bad_algorithm",
    ),
    "another_key_same_kid": (lambda f, g: f.sign(g["claims"], key=OTHER_SECRET), "bad_signature"),
    "rs256_algorithm_confusion": (
        lambda f, g: f.sign(g["claims"], key=_RSA_KEY, algorithm="RS256"),
        "bad_algorithm",
    ),
    "hs512_with_the_real_key": (
        lambda f, g: f.sign(g["claims"], algorithm="HS512"),
        "bad_algorithm",
    ),
    "expired": (
        lambda f, g: f.sign(_with(g["claims"], iat=_now() - 900, nbf=_now() - 900, exp=_now() - 60)),
        "expired",
    ),
    "not_yet_valid": (
        lambda f, g: f.sign(_with(g["claims"], nbf=_now() + 120, exp=_now() + 600)),
        "not_yet_valid",
    ),
    "issued_in_the_future": (
        lambda f, g: f.sign(_with(g["claims"], iat=_now() + 120, exp=_now() + 600)),
        "not_yet_valid",
    ),
    "wrong_audience": (lambda f, g: f.sign(_with(g["claims"], aud="some-other-api")), "wrong_audience"),
    "wrong_issuer": (lambda f, g: f.sign(_with(g["claims"], iss="https://evil.example")), "wrong_issuer"),
    "unknown_kid": (lambda f, g: f.sign(g["claims"], kid="k9"), "unknown_kid"),
    "no_kid": (lambda f, g: f.sign(g["claims"], kid=None), "unknown_kid"),
    "tampered_payload": (
        lambda f, g: _tampered(g["token"], sub=str(g["user"].id + 1000)),
        "bad_signature",
    ),
    "tampered_expiry": (lambda f, g: _tampered(g["token"], exp=_now() + 10**6), "bad_signature"),
    "missing_sid": (lambda f, g: f.sign(_without(g["claims"], "sid")), "missing_claim"),
    "missing_exp": (lambda f, g: f.sign(_without(g["claims"], "exp")), "missing_claim"),
    "missing_jti": (lambda f, g: f.sign(_without(g["claims"], "jti")), "missing_claim"),
    "not_an_access_token": (lambda f, g: f.sign(_with(g["claims"], typ="refresh")), "invalid"),
    "non_numeric_subject": (lambda f, g: f.sign(_with(g["claims"], sub="admin")), "invalid"),
    "unknown_session": (
        lambda f, g: f.sign(_with(g["claims"], sid="00000000-0000-0000-0000-000000000000")),
        "unknown_session",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_bad_token_is_refused_and_audited(
    name: str, testapp: webtest.TestApp, dbsession: Session, forge: Forge, genuine: dict[str, Any]
) -> None:
    build, reason = BAD_TOKENS[name]
    token = build(forge, genuine)
    response = testapp.get(ME, headers=bearer(token), status=401)
    body = assert_envelope(response, 401, "unauthenticated")
    assert body["message"].startswith("authentication failed")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["Cache-Control"] == "no-store"
    [event] = audit_events(dbsession, "auth.token_refused")
    assert event.outcome == "refused"
    assert event.details == {"reason": reason}
    assert event.target == ME
    # The genuine token still works: nothing above was refused for another reason.
    assert testapp.get(ME, headers=bearer(genuine["token"])).json["username"] == genuine["user"].username


def test_the_forge_itself_produces_accepted_tokens(
    testapp: webtest.TestApp, dbsession: Session, forge: Forge, genuine: dict[str, Any]
) -> None:
    """Control for the table above: re-signing genuine claims with the real key is accepted."""
    resigned = forge.sign(_with(genuine["claims"], jti="a-new-id"))
    assert testapp.get(ME, headers=bearer(resigned)).json["username"] == genuine["user"].username
    assert audit_events(dbsession, "auth.token_refused") == []


def test_genuine_tokens_carry_every_required_claim_and_the_kid(
    forge: Forge, genuine: dict[str, Any], settings: dict[str, Any]
) -> None:
    header = jwt.get_unverified_header(genuine["token"])
    assert header["alg"] == "HS256"
    assert header["kid"] == next(iter(settings["surveykit.jwt_keys"]))
    claims = genuine["claims"]
    assert set(REQUIRED_CLAIMS) <= set(claims)
    assert claims["sub"] == str(genuine["user"].id)
    assert claims["typ"] == "access"
    assert 0 < claims["exp"] - claims["iat"] <= settings["surveykit.access_token_seconds"]
    assert claims["nbf"] == claims["iat"]
    assert "dev" not in claims


def test_a_token_for_another_users_session_is_refused(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, forge: Forge, genuine: dict[str, Any]
) -> None:
    """Even correctly signed, a sub that is not the session's owner gets nothing."""
    admin = accounts.user(role="admin", study=None)
    token = forge.sign(_with(genuine["claims"], sub=str(admin.id)))
    assert_envelope(testapp.get(ME, headers=bearer(token), status=401), 401, "unauthenticated")
    [event] = audit_events(dbsession, "auth.token_refused")
    assert event.details == {"reason": "unknown_session"}
    assert event.actor == f"user:{admin.id}"


def test_no_token_is_refused_without_an_audit_record(testapp: webtest.TestApp, dbsession: Session) -> None:
    response = testapp.get(ME, status=401)
    body = assert_envelope(response, 401, "unauthenticated")
    assert "authentication required" in body["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert audit_events(dbsession) == []


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc.def.ghi"])
def test_other_authorization_schemes_are_refused(
    header: str, testapp: webtest.TestApp, dbsession: Session
) -> None:
    assert_envelope(testapp.get(ME, headers={"Authorization": header}, status=401), 401, "unauthenticated")
    [event] = audit_events(dbsession, "auth.token_refused")
    assert event.details == {"reason": "bad_scheme"}


def test_a_refresh_token_is_not_a_bearer_token(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    user = accounts.user(role="analyst")
    pair = services.start_session(dbsession, user, accounts.tokens, accounts.policy)
    dbsession.flush()
    assert_envelope(testapp.get(ME, headers=bearer(pair.refresh_token), status=401), 401, "unauthenticated")
    [event] = audit_events(dbsession, "auth.token_refused")
    assert event.details == {"reason": "malformed"}
    # ...and the refresh token was not spent by being misused.
    refreshed = testapp.post_json("/api/v1/auth/refresh", {"refresh_token": pair.refresh_token})
    assert refreshed.json["access_token"]


def test_a_refused_token_on_a_public_route_is_audited_but_not_trusted(
    testapp: webtest.TestApp, dbsession: Session
) -> None:
    """A bad token on login is recorded; the login itself then fails on its own merits."""
    response = testapp.post_json(
        "/api/v1/auth/token",
        {"username": "nobody-here", "password": "whatever-password"},
        headers=bearer("garbage"),
        status=401,
    )
    assert_envelope(response, 401, "invalid_credentials")
    assert [e.details["reason"] for e in audit_events(dbsession, "auth.token_refused")] == ["malformed"]


# --- key rotation -----------------------------------------------------------------------------


def _app_with_keys(
    settings: dict[str, Any], engine: Engine, connection: Connection, keys: dict[str, str]
) -> webtest.TestApp:
    app = make_app({**settings, "surveykit.engine": engine, "surveykit.jwt_keys": keys})
    bind_to_connection(app.registry, connection)
    return webtest.TestApp(app, extra_environ={"HTTP_HOST": "surveykit.test"})


def test_key_rotation(
    settings: dict[str, Any],
    engine: Engine,
    connection: Connection,
    testapp: webtest.TestApp,
    dbsession: Session,
    accounts: Any,
) -> None:
    old_keys = settings["surveykit.jwt_keys"]
    assert list(old_keys) == ["k1"]
    user = accounts.user(role="coordinator", countries=["KE"])
    old_pair = services.start_session(dbsession, user, accounts.tokens, accounts.policy)
    dbsession.flush()
    assert jwt.get_unverified_header(old_pair.access_token)["kid"] == "k1"

    # Step 1: a new key signs, the old one still verifies.
    rotated = _app_with_keys(settings, engine, connection, {"k2": NEW_SECRET, "k1": old_keys["k1"]})
    assert rotated.get(ME, headers=bearer(old_pair.access_token)).json["username"] == user.username
    new_pair = rotated.post_json("/api/v1/auth/refresh", {"refresh_token": old_pair.refresh_token}).json
    new_access = new_pair["access_token"]
    assert jwt.get_unverified_header(new_access)["kid"] == "k2"
    jwt.decode(
        new_access,
        NEW_SECRET,
        algorithms=["HS256"],
        audience=settings["surveykit.jwt_audience"],
        issuer=settings["surveykit.jwt_issuer"],
    )
    assert rotated.get(ME, headers=bearer(new_access)).json["username"] == user.username
    # A server that has not heard of k2 yet refuses the new tokens.
    assert_envelope(testapp.get(ME, headers=bearer(new_access), status=401), 401, "unauthenticated")

    # Step 2: k1 is retired; tokens it signed are refused, k2's still work.
    other_session = accounts.token(user)  # signed with k1 by the original settings
    retired = _app_with_keys(settings, engine, connection, {"k2": NEW_SECRET})
    assert_envelope(retired.get(ME, headers=bearer(other_session), status=401), 401, "unauthenticated")
    assert retired.get(ME, headers=bearer(new_access)).json["username"] == user.username
    reasons = [e.details["reason"] for e in audit_events(dbsession, "auth.token_refused")]
    assert reasons == ["unknown_kid", "unknown_kid"]


# --- configuration ----------------------------------------------------------------------------


def _production(**environ: str) -> dict[str, Any]:
    return load_settings(
        {},
        {
            "SURVEYKIT_ENV": "production",
            "SURVEYKIT_DATABASE_URL": "sqlite:///x.db",
            "SURVEYKIT_PUBLIC_URL": "https://surveykit.example.org",
            **environ,
        },
    )


def test_production_refuses_the_development_key() -> None:
    with pytest.raises(ConfigurationError, match="development secret"):
        _production()
    strong = "s" * 40
    with pytest.raises(ConfigurationError, match="development signing key"):
        _production(SURVEYKIT_SECRET=strong, SURVEYKIT_JWT_KEYS=f"k2:{strong},k1:{DEVELOPMENT_SECRET}")
    with pytest.raises(ConfigurationError, match="at least 32"):
        _production(SURVEYKIT_SECRET=strong, SURVEYKIT_JWT_KEYS="k1:short")
    keys = _production(SURVEYKIT_SECRET=strong, SURVEYKIT_JWT_KEYS=f"k2:{'n' * 40},k1:{strong}")[
        "surveykit.jwt_keys"
    ]
    assert list(keys) == ["k2", "k1"]


def test_jwt_keys_setting_is_parsed_in_order() -> None:
    with pytest.raises(ConfigurationError):
        load_settings({}, {"SURVEYKIT_DATABASE_URL": "sqlite:///x.db", "SURVEYKIT_JWT_KEYS": "k1"})
    with pytest.raises(ConfigurationError, match="twice"):
        load_settings({}, {"SURVEYKIT_DATABASE_URL": "sqlite:///x.db", "SURVEYKIT_JWT_KEYS": "k1:aaa,k1:bbb"})


def test_a_remembered_token_is_verified_again_once_its_lifetime_is_over(monkeypatch, settings) -> None:
    """The memory of verified tokens only skips the signature check while the token is in date;
    past its expiry the full decode runs again (and refuses it, as the expiry tests show)."""
    import time as time_module
    from datetime import UTC, datetime

    from surveykit.accounts import tokens as token_module

    config = token_module.TokenSettings.from_settings(settings)
    start = time_module.time()
    token, _expires = token_module.issue_access_token(
        config, user_id=1, session_id="s", device_id=None, now=datetime.fromtimestamp(start, UTC)
    )
    full_decodes: list[str] = []
    real_decode = token_module.decode_access_token

    def counting_decode(config_arg, token_arg):
        full_decodes.append(token_arg)
        return real_decode(config_arg, token_arg)

    monkeypatch.setattr(token_module, "decode_access_token", counting_decode)
    verified = token_module.VerifiedTokens(config)
    assert verified.decode(token)["sub"] == "1"
    assert verified.decode(token)["sub"] == "1"
    assert len(full_decodes) == 1
    later = start + config.access_seconds + token_module.LEEWAY + 1
    monkeypatch.setattr(token_module.time, "time", lambda: later)
    verified.decode(token)
    assert len(full_decodes) == 2
