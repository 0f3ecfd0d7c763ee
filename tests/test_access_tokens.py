"""Personal access tokens: created and revoked by their owner, shown once, good only for export
downloads, with the owner's grants as they are at each request."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
import webtest
from console_support import csrf_for, sign_in
from sqlalchemy import create_engine, delete, select
from sqlalchemy.orm import Session
from test_accounts_cli import CLI, api_on
from test_route_matrix import CALLS, World, app_routes

from surveykit.accounts import access_tokens, browser, throttle
from surveykit.accounts import services as account_services
from surveykit.accounts.models import AccessToken, Grant, User
from surveykit.audit.models import AuditEvent
from surveykit.db import utcnow
from surveykit.security import ACCESS_TOKEN_PERMISSIONS, Permission

TOKENS = "/api/v1/account/access-tokens"
KE = "/api/v1/exports/ocsea/KE.xlsx"
TZ = "/api/v1/exports/ocsea/TZ.xlsx"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def events(dbsession: Session, action: str) -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


@pytest.fixture
def analyst(accounts: Any) -> Any:
    accounts.study("ocsea")
    return accounts.user("pat-analyst", "analyst", "ocsea", ["KE"])


@pytest.fixture
def session_headers(accounts: Any, analyst: Any) -> dict[str, str]:
    return bearer(accounts.token(analyst))


def create(testapp: webtest.TestApp, headers: dict[str, str], **body: Any) -> webtest.TestResponse:
    return testapp.post_json(TOKENS, {"name": "Excel refresh", **body}, headers=headers)


def test_a_token_is_shown_once_and_listed_without_its_secret(
    testapp: webtest.TestApp, dbsession: Session, session_headers: dict[str, str]
) -> None:
    created = create(testapp, session_headers, expires_in_days=30)
    assert created.status_int == 201
    assert created.headers["Cache-Control"] == "no-store"
    answer = created.json
    secret = answer["token"]
    assert secret.startswith("skpat_") and len(secret) == len("skpat_") + 43
    assert answer["prefix"] == secret[:12] and answer["status"] == "active"
    assert answer["name"] == "Excel refresh" and answer["last_used_at"] is None
    stored = dbsession.get(AccessToken, answer["id"])
    assert stored.token_hash == access_tokens.secret_hash(secret) and secret not in stored.token_hash
    assert (stored.expires_at - stored.created_at) == timedelta(days=30)

    listed = testapp.get(TOKENS, headers=session_headers)
    assert secret not in listed.text and stored.token_hash not in listed.text
    (row,) = listed.json["access_tokens"]
    assert set(row) == {
        "id",
        "name",
        "prefix",
        "status",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    }
    assert row["prefix"] == answer["prefix"]

    default = create(testapp, session_headers).json
    assert default["expires_at"] > answer["expires_at"]  # 90 days by default
    (event, _) = events(dbsession, "access_token.created")
    assert (event.actor, event.target, event.details["prefix"]) == (
        "pat-analyst",
        "pat-analyst",
        row["prefix"],
    )


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": 367}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "30"}, "expires_in_days"),
        ({"name": "ok", "scope": "all"}, "scope"),
        ({}, "name"),
    ],
)
def test_bad_input_is_answered_with_its_field_and_creates_nothing(
    testapp: webtest.TestApp,
    dbsession: Session,
    session_headers: dict[str, str],
    body: dict[str, Any],
    path: str,
) -> None:
    response = testapp.post_json(TOKENS, body, headers=session_headers, expect_errors=True)
    assert response.status_int == 422, response.text
    assert response.json["code"] == "invalid_input"
    assert path in [detail["path"] for detail in response.json["details"]]
    assert dbsession.scalar(select(AccessToken.id)) is None


def test_an_owner_holds_at_most_twenty_active_tokens(
    testapp: webtest.TestApp, dbsession: Session, analyst: Any, session_headers: dict[str, str]
) -> None:
    for n in range(access_tokens.MAX_ACTIVE_PER_USER):
        access_tokens.create_access_token(dbsession, analyst, f"script {n}")
    dbsession.flush()
    refused = testapp.post_json(TOKENS, {"name": "one more"}, headers=session_headers, expect_errors=True)
    assert refused.status_int == 409 and refused.json["code"] == "conflict"
    assert "revoke one" in refused.json["message"]
    first = access_tokens.list_access_tokens(dbsession, analyst)[-1]
    testapp.delete(f"{TOKENS}/{first.id}", headers=session_headers)
    assert create(testapp, session_headers).status_int == 201


def test_a_token_downloads_an_export_and_its_304_and_says_so_in_the_audit(
    testapp: webtest.TestApp, dbsession: Session, session_headers: dict[str, str]
) -> None:
    answer = create(testapp, session_headers).json
    downloaded = testapp.get(KE, headers=bearer(answer["token"]))
    assert downloaded.status_int == 200 and downloaded.body[:2] == b"PK"
    etag = downloaded.headers["ETag"]
    again = testapp.get(KE, headers={**bearer(answer["token"]), "If-None-Match": etag}, status=304)
    assert again.headers["ETag"] == etag
    downloads = events(dbsession, "export.download")
    assert [event.details["not_modified"] for event in downloads] == [False, True]
    assert all(event.actor == "pat-analyst" for event in downloads)
    assert all(event.details["access_token"] == answer["id"] for event in downloads)
    # The owner's other grants do not reach further through a token.
    refused = testapp.get(TZ, headers=bearer(answer["token"]), status=403)
    assert refused.json["code"] == "forbidden"


def test_last_use_is_written_at_most_once_a_minute(
    testapp: webtest.TestApp, dbsession: Session, analyst: Any
) -> None:
    created = access_tokens.create_access_token(dbsession, analyst, "script")
    dbsession.flush()
    testapp.get(KE, headers=bearer(created.secret))
    dbsession.expire_all()
    first = dbsession.get(AccessToken, created.token.id).last_used_at
    assert first is not None
    testapp.get(KE, headers=bearer(created.secret))
    dbsession.expire_all()
    assert dbsession.get(AccessToken, created.token.id).last_used_at == first
    dbsession.get(AccessToken, created.token.id).last_used_at = first - timedelta(minutes=2)
    dbsession.flush()
    testapp.get(KE, headers=bearer(created.secret))
    dbsession.expire_all()
    assert dbsession.get(AccessToken, created.token.id).last_used_at > first


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/api/v1/me", None),
        ("GET", TOKENS, None),
        ("POST", TOKENS, {"name": "another"}),
        ("DELETE", f"{TOKENS}/1", None),
        ("POST", "/api/v1/me/password", {"current_password": "x", "new_password": "y" * 20}),
        ("GET", "/api/v1/studies", None),
        ("POST", "/api/v1/auth/logout", None),
        ("GET", "/api/v1/health", None),
    ],
)
def test_a_token_is_refused_beyond_downloads(
    testapp: webtest.TestApp,
    dbsession: Session,
    analyst: Any,
    method: str,
    url: str,
    body: Any,
) -> None:
    created = access_tokens.create_access_token(dbsession, analyst, "script")
    dbsession.flush()
    response = testapp.request(
        url,
        method=method,
        body=json.dumps(body).encode() if body is not None else b"",
        content_type="application/json",
        headers=bearer(created.secret),
        expect_errors=True,
    )
    assert response.status_int == 403, response.text
    assert response.content_type == "application/json"
    assert response.json["code"] == "access_token_not_allowed"
    (event,) = events(dbsession, "access_token.refused")
    assert (event.actor, event.target, event.details["reason"]) == (
        "pat-analyst",
        f"{method} {url}",
        "not_allowed",
    )
    assert access_tokens.list_access_tokens(dbsession, analyst) == [created.token]


def test_a_removed_grant_narrows_the_token_at_once(
    testapp: webtest.TestApp, dbsession: Session, analyst: Any
) -> None:
    created = access_tokens.create_access_token(dbsession, analyst, "script")
    tz = account_services.add_grant(dbsession, analyst, "analyst", "ocsea", ["TZ"], "tests")
    dbsession.flush()
    testapp.get(TZ, headers=bearer(created.secret), status=200)
    account_services.remove_grant(dbsession, analyst, tz.id)
    dbsession.flush()
    assert testapp.get(TZ, headers=bearer(created.secret), status=403).json["code"] == "forbidden"
    testapp.get(KE, headers=bearer(created.secret), status=200)


def _refused_with(testapp: webtest.TestApp, dbsession: Session, secret: str, reason: str) -> None:
    response = testapp.get(KE, headers=bearer(secret), status=401)
    assert response.content_type == "application/json"
    assert response.json["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="surveykit"'
    assert events(dbsession, "access_token.refused")[-1].details["reason"] == reason


def test_revoked_expired_and_deactivated_owners_tokens_are_refused(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, analyst: Any, session_headers: dict[str, str]
) -> None:
    revoked = access_tokens.create_access_token(dbsession, analyst, "revoked")
    expired = access_tokens.create_access_token(dbsession, analyst, "expired")
    kept = access_tokens.create_access_token(dbsession, analyst, "kept")
    expired.token.expires_at = utcnow() - timedelta(seconds=1)
    dbsession.flush()
    gone = testapp.delete(f"{TOKENS}/{revoked.token.id}", headers=session_headers).json
    assert gone["status"] == "revoked" and gone["revoked_at"] is not None
    (event,) = events(dbsession, "access_token.revoked")
    assert event.details["token"] == revoked.token.id
    _refused_with(testapp, dbsession, revoked.secret, "access_token_revoked")
    _refused_with(testapp, dbsession, expired.secret, "access_token_expired")
    testapp.get(KE, headers=bearer(kept.secret), status=200)
    account_services.deactivate_user(dbsession, analyst)
    dbsession.flush()
    _refused_with(testapp, dbsession, kept.secret, "inactive")


def test_a_locked_out_or_deleted_owners_tokens_are_refused(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, analyst: Any
) -> None:
    created = access_tokens.create_access_token(dbsession, analyst, "script")
    dbsession.flush()
    for _ in range(accounts.policy.lockout_threshold):
        throttle.count_attempt(
            dbsession,
            throttle.LOCKOUT,
            throttle.address_key(None),
            analyst.username,
            window_seconds=accounts.policy.lockout_seconds,
            now=utcnow(),
        )
    dbsession.flush()
    _refused_with(testapp, dbsession, created.secret, "locked")
    account_services.unlock_account(dbsession, analyst)
    dbsession.flush()
    testapp.get(KE, headers=bearer(created.secret), status=200)
    dbsession.execute(delete(User).where(User.id == analyst.id))
    dbsession.expunge_all()
    _refused_with(testapp, dbsession, created.secret, "unknown_access_token")


@pytest.mark.parametrize(
    "credential",
    ["skpat_", "skpat_garbage", "skpat_" + "A" * 43, "skpatAAAAAAAAAAAAAAAAAAAAAAAA", "garbage", "SKPAT_x"],
)
def test_unknown_or_malformed_tokens_are_refused_with_401_json(
    testapp: webtest.TestApp, dbsession: Session, credential: str
) -> None:
    response = testapp.get(KE, headers=bearer(credential), status=401)
    assert response.content_type == "application/json"
    assert response.json["code"] == "unauthenticated"
    assert credential not in response.text or credential == "skpat_"


def test_another_users_token_is_unknown_to_the_owner_api_and_admins_manage_them(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, analyst: Any, session_headers: dict[str, str]
) -> None:
    other = accounts.user("pat-other", "analyst", "ocsea", ["KE"])
    theirs = access_tokens.create_access_token(dbsession, other, "theirs")
    dbsession.flush()
    for raw in (str(theirs.token.id), "999999", "abc", "1" * 20):
        response = testapp.delete(f"{TOKENS}/{raw}", headers=session_headers, expect_errors=True)
        assert response.status_int == 404 and response.json["details"][0]["path"] == "token_id"
    assert theirs.token.revoked_at is None
    assert testapp.get(TOKENS, headers=session_headers).json == {"access_tokens": []}

    admin = accounts.headers("admin")
    listed = testapp.get("/api/v1/users/pat-other/access-tokens", headers=admin).json["access_tokens"]
    assert [row["prefix"] for row in listed] == [theirs.token.prefix]
    revoked = testapp.delete(f"/api/v1/users/pat-other/access-tokens/{theirs.token.id}", headers=admin)
    assert revoked.json["status"] == "revoked"
    dbsession.refresh(theirs.token)
    assert theirs.token.revoked_by.startswith("admin")
    assert testapp.get("/api/v1/users/nobody/access-tokens", headers=admin, status=404).json["code"] == (
        "user_not_found"
    )
    assert testapp.get("/api/v1/users/pat-other/access-tokens", headers=session_headers, status=403)


def test_a_tablet_session_cannot_manage_its_owners_tokens(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    owner = accounts.user("pat-walker", "fieldworker", "ocsea", ["KE"])
    device, _ = account_services.enrol_device(dbsession, owner, "tablet", "tests", accounts.policy)
    device.activated_at = device.created_at
    dbsession.flush()
    headers = bearer(accounts.token(owner, device))
    assert testapp.get(TOKENS, headers=headers, status=403).json["code"] == "forbidden"
    assert testapp.post_json(TOKENS, {"name": "x"}, headers=headers, status=403)


def test_secrets_never_reach_the_log_or_the_audit(
    testapp: webtest.TestApp,
    dbsession: Session,
    analyst: Any,
    session_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = create(testapp, session_headers).json["token"]
    testapp.get(KE, headers=bearer(secret))
    testapp.get("/api/v1/me", headers=bearer(secret), status=403)
    stored = dbsession.scalar(select(AccessToken).where(AccessToken.prefix == secret[:12]))
    testapp.delete(f"{TOKENS}/{stored.id}", headers=session_headers)
    testapp.get(KE, headers=bearer(secret), status=401)
    testapp.get(KE, headers=bearer(secret + "x"), status=401)
    assert caplog.records, "the requests were logged"
    assert secret not in caplog.text and secret[12:] not in caplog.text
    dbsession.expire_all()
    trail = dbsession.scalars(select(AuditEvent)).all()
    assert {"access_token.created", "export.download", "access_token.refused", "access_token.revoked"} <= {
        event.action for event in trail
    }
    everything = json.dumps([[e.action, e.actor, e.target, e.details] for e in trail])
    assert secret[12:] not in everything and stored.token_hash not in everything


def test_every_route_but_the_downloads_refuses_a_token(
    app: Any, testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    """Every route of the application, called with a global admin's token: only GETs whose permission
    a token may use answer; the API refuses the rest with 403 ``access_token_not_allowed``, the
    console (which reads its sign-in cookie, never a bearer token) treats the caller as signed out."""
    world = World(accounts, dbsession)
    world.caller = "global_admin"
    created = access_tokens.create_access_token(dbsession, world.users["global_admin"], "matrix")
    dbsession.flush()
    answered, problems = set(), []
    for (route, method), view in sorted(app_routes(app).items()):
        call = CALLS[(route, method)](world)
        headers = {**bearer(created.secret), "Accept": "text/html" if route.startswith("console.") else "*/*"}
        if call.json is not None:
            response = testapp.request(
                call.url,
                method=method,
                body=json.dumps(call.json).encode(),
                content_type="application/json",
                headers=headers,
                expect_errors=True,
            )
        elif call.form is not None:
            response = testapp.post(call.url, call.form, headers=headers, expect_errors=True)
        else:
            response = testapp.request(call.url, method=method, headers=headers, expect_errors=True)
        label = f"{method} {call.url} -> {response.status_int}"
        if route.startswith(browser.CONSOLE_ROUTE_PREFIX):
            if view["permission"] == Permission.PUBLIC:
                continue  # open to a signed-out browser: the token adds nothing
            location = response.headers.get("Location", "")
            if not (
                response.status_int == 303 and "/console/sign-in" in location
            ) and response.status_int not in (
                400,
                403,
            ):
                problems.append(f"{label}: the console honoured a token")
            continue
        may = method == "GET" and view["permission"] in ACCESS_TOKEN_PERMISSIONS
        if may:
            if response.status_int != 200:
                problems.append(f"{label}: a download refused ({response.text[:200]})")
            answered.add(route)
        elif response.status_int != 403 or response.json.get("code") != "access_token_not_allowed":
            problems.append(f"{label}: expected 403 access_token_not_allowed ({response.text[:200]})")
    assert not problems, "\n".join(problems)
    assert {"export_country", "export_study"} <= answered
    dbsession.expire_all()
    assert dbsession.scalar(select(Grant.id).where(Grant.user_id == world.users["global_admin"].id))


# ------------------------------------------------------------------------------ the console page

ACCOUNT_PAGE = "/console/account"
HTML = {"Accept": "text/html"}


def form_to(page: webtest.TestResponse, action: str) -> webtest.forms.Form:
    (form,) = [form for form in page.forms.values() if form.action == action]
    return form


def test_the_account_page_creates_a_token_shows_it_once_and_revokes_it(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, analyst: Any
) -> None:
    sign_in(testapp, accounts, analyst)
    page = testapp.get(ACCOUNT_PAGE, headers=HTML)
    assert "Personal access tokens" in page.text and "You have no tokens." in page.text
    form = form_to(page, "/console/account/access-tokens")
    form["name"] = "Kenya workbook in Excel"
    form["expires_in_days"] = "30"
    shown = form.submit(headers=HTML)
    assert shown.status_int == 200 and shown.headers["Cache-Control"] == "no-store"
    (token,) = access_tokens.list_access_tokens(dbsession, analyst)
    secret = shown.html.find(id="new-access-token").text
    assert secret.startswith(token.prefix) and access_tokens.secret_hash(secret) == token.token_hash
    assert "Web.Contents(" in shown.text and 'Authorization = "Bearer "' in shown.text
    assert shown.html.find("button", attrs={"data-copy": "new-access-token"}) is not None
    assert "access_tokens.js" in shown.text
    # Shown once: the page afterwards lists the token by its prefix only.
    again = testapp.get(ACCOUNT_PAGE, headers=HTML)
    assert secret not in again.text and f"{token.prefix}…" in again.text
    assert "Kenya workbook in Excel" in again.text
    (event,) = events(dbsession, "access_token.created")
    assert event.details["via"] == "console"
    # The token downloads; revoking it from the page stops it.
    testapp.get(KE, headers=bearer(secret), status=200)
    revoke = form_to(again, f"/console/account/access-tokens/{token.id}/revoke")
    done = revoke.submit(headers=HTML)
    assert done.status_int == 303 and done.headers["Location"].endswith("/console/account#access-tokens")
    testapp.get(KE, headers=bearer(secret), status=401)
    assert "is revoked" in testapp.get(ACCOUNT_PAGE, headers=HTML).text


@pytest.mark.parametrize(
    ("name", "days", "field"),
    [
        ("", "30", "name"),
        ("Excel", "0", "expires_in_days"),
        ("Excel", "999", "expires_in_days"),
        ("x", "ten", "expires_in_days"),
    ],
)
def test_the_account_page_shows_errors_next_to_their_field(
    testapp: webtest.TestApp,
    dbsession: Session,
    accounts: Any,
    analyst: Any,
    name: str,
    days: str,
    field: str,
) -> None:
    sign_in(testapp, accounts, analyst)
    form = form_to(testapp.get(ACCOUNT_PAGE, headers=HTML), "/console/account/access-tokens")
    form["name"], form["expires_in_days"] = name, days
    answer = form.submit(headers=HTML, expect_errors=True)
    assert answer.status_int == 422
    error = answer.html.find(id=f"error-{field}")
    assert error is not None and error.text.strip()
    assert answer.html.find(id=f"field-{field}")["aria-invalid"] == "true"
    assert answer.html.find(id="field-name")["value"] == name  # what was typed stays
    assert access_tokens.list_access_tokens(dbsession, analyst) == []


def test_the_account_page_refuses_more_than_twenty_and_anothers_token(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, analyst: Any
) -> None:
    for n in range(access_tokens.MAX_ACTIVE_PER_USER):
        access_tokens.create_access_token(dbsession, analyst, f"script {n}")
    other = accounts.user("pat-other", "analyst", "ocsea", ["KE"])
    theirs = access_tokens.create_access_token(dbsession, other, "theirs")
    dbsession.flush()
    session_id = sign_in(testapp, accounts, analyst)
    page = testapp.get(ACCOUNT_PAGE, headers=HTML)
    form = form_to(page, "/console/account/access-tokens")
    form["name"] = "one more"
    answer = form.submit(headers=HTML, expect_errors=True)
    assert answer.status_int == 422 and "revoke one first" in answer.html.find(id="error-name").text
    csrf = csrf_for(accounts, session_id)
    refused = testapp.post(
        f"/console/account/access-tokens/{theirs.token.id}/revoke",
        {"csrf_token": csrf},
        headers=HTML,
        expect_errors=True,
    )
    assert refused.status_int == 404 and refused.content_type == "text/html"
    dbsession.refresh(theirs.token)
    assert theirs.token.revoked_at is None


# ---------------------------------------------------------------------------------------- the CLI


def test_the_cli_creates_lists_and_revokes_a_users_tokens(fresh_database: Any, tmp_path: Any) -> None:
    run = CLI(fresh_database(), tmp_path / "data")
    run.ok("db", "upgrade")
    run.ok("studies", "add", "ocsea", "--name", "OCSEA")
    run.ok("studies", "add-country", "ocsea", "KE", "--name", "Kenya")
    run.ok("users", "add", "amina")
    run.ok("users", "grant", "amina", "analyst", "--study", "ocsea", "--country", "KE")
    created = run.ok("users", "access-token", "create", "amina", "--name", "Excel", "--days", "30")
    secret = created.split("token (shown once): ")[1].strip()
    assert secret.startswith("skpat_")
    listed = run.ok("users", "access-token", "list", "amina")
    assert secret not in listed and f"{secret[:12]}..." in listed and "active" in listed
    as_json = json.loads(run.ok("users", "access-token", "list", "amina", "--json"))
    (token,) = as_json["access_tokens"]
    assert "token" not in token and token["name"] == "Excel"
    with api_on(run, tmp_path) as api:
        api.get("/api/v1/exports/ocsea/KE.xlsx", headers=bearer(secret), status=200)
        run.ok("users", "access-token", "revoke", "amina", str(token["id"]))
        api.get("/api/v1/exports/ocsea/KE.xlsx", headers=bearer(secret), status=401)
    assert "has no access token #99" in run.fails("users", "access-token", "revoke", "amina", "99")
    assert "no user" in run.fails("users", "access-token", "list", "nobody")
    assert run.fails("users", "access-token", "create", "amina", "--name", "x", "--days", "400", code=2)
    engine = create_engine(run.url)
    try:
        with Session(engine) as db:
            actions = db.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.action.like("access_token.%"))
                .order_by(AuditEvent.id)
            )
            assert list(actions) == ["access_token.created", "access_token.revoked", "access_token.refused"]
    finally:
        engine.dispose()


def test_a_password_change_or_reset_revokes_the_accounts_tokens(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    accounts.study("ocsea")
    owner = accounts.user("pat-owner", "analyst", "ocsea", ["KE"], password="the first long password")
    other = accounts.user("pat-other", "analyst", "ocsea", ["KE"])
    headers = bearer(accounts.token(owner))
    before = create(testapp, headers).json
    untouched = access_tokens.create_access_token(dbsession, other, "someone else's")
    dbsession.flush()
    testapp.get(KE, headers=bearer(before["token"]), status=200)

    # The owner changes their own password: their tokens go, another user's stay.
    changed = testapp.post_json(
        "/api/v1/me/password",
        {"current_password": "the first long password", "new_password": "the second long password"},
        headers=headers,
    ).json
    assert changed["access_tokens_revoked"] == 1
    _refused_with(testapp, dbsession, before["token"], "access_token_revoked")
    testapp.get(KE, headers=bearer(untouched.secret), status=200)
    (event,) = events(dbsession, "user.password_change")
    assert event.details["access_tokens_revoked"] == 1
    listed = testapp.get(TOKENS, headers=headers).json
    assert [(t["id"], t["status"]) for t in listed["access_tokens"]] == [(before["id"], "revoked")]

    # An admin resets it: the token made since goes too.
    after = create(testapp, headers).json
    reset = testapp.post_json(
        "/api/v1/users/pat-owner/password", {"password": "a third long password"}, headers=accounts.headers()
    ).json
    assert reset["access_tokens_revoked"] == 1
    _refused_with(testapp, dbsession, after["token"], "access_token_revoked")
    (event,) = events(dbsession, "user.password_reset")
    assert event.details["access_tokens_revoked"] == 1
    stored = dbsession.scalars(select(AccessToken.revoked_by).where(AccessToken.user_id == owner.id)).all()
    assert sorted(stored) == ["password changed", "password reset"]
