"""The console's sign-in, session cookie, CSRF, security headers and error pages (WebTest).

Who may open which console page is tried in tests/test_route_matrix.py; journeys in a real browser
are in tests/browser/.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import webtest
from console_support import HTML, csrf_for, csrf_in, sign_in, start_console_session
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from support_db import bind_to_connection

from surveykit import make_app
from surveykit.accounts import browser, passwords, services
from surveykit.accounts.models import AuthSession, User
from surveykit.audit.models import AuditEvent

PASSWORD = "console password 1"
_PASSWORD_HASH = passwords.hash_password(PASSWORD)


def person(accounts: Any, username: str = "amina", role: str = "coordinator") -> User:
    user = (
        accounts.user(username, role, countries=["KE"])
        if role != "admin"
        else accounts.user(username, "admin", None)
    )
    user.password_hash = _PASSWORD_HASH
    accounts.session.flush()
    return user


def submit_signin(testapp: webtest.TestApp, username: str, password: str, **extra: Any) -> Any:
    page = testapp.get("/console/sign-in", headers=HTML)
    form = {"csrf_token": csrf_in(page), "username": username, "password": password, **extra}
    return testapp.post("/console/sign-in", form, headers=HTML, expect_errors=True)


def set_cookie_header(response: Any, name: str) -> str:
    return next(value for key, value in response.headerlist if key == "Set-Cookie" and value.startswith(name))


def events(dbsession: Session, action: str) -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def session_of(dbsession: Session, session_id: str) -> AuthSession:
    dbsession.expire_all()
    return dbsession.get(AuthSession, session_id)


# --- signing in ---------------------------------------------------------------------------------


def test_signing_in_through_the_form_starts_a_login_session_and_sets_a_strict_cookie(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    user = person(accounts)
    response = submit_signin(testapp, "amina", PASSWORD, next="/console/account")
    assert response.status_int == 303
    assert response.headers["Location"].endswith("/console/account")
    cookie = set_cookie_header(response, browser.COOKIE_NAME)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "secure" not in cookie.lower()  # development over http; see the https test below
    claims = browser.decode_cookie_value(accounts.tokens, testapp.cookies[browser.COOKIE_NAME].strip('"'))
    auth_session = session_of(dbsession, claims["sid"])
    assert auth_session.user_id == user.id and auth_session.revoked_at is None
    [login] = events(dbsession, "auth.login")
    assert (login.actor, login.details["via"]) == ("amina", "console")
    page = testapp.get("/console/account", headers=HTML)
    assert "Signed in as <strong>amina</strong>" in page.text
    assert "coordinator" in page.text and "ocsea" in page.text and "KE" in page.text


def test_cookie_is_secure_when_the_server_is_reached_over_https(
    settings: dict[str, Any], engine: Engine, connection: Any, accounts: Any
) -> None:
    app = make_app(
        {**settings, "surveykit.public_url": "https://survey.example.org", "surveykit.engine": engine}
    )
    replaced = bind_to_connection(app.registry, connection)
    try:
        secure = webtest.TestApp(
            app, extra_environ={"HTTP_HOST": "survey.example.org", "wsgi.url_scheme": "https"}
        )
        person(accounts)
        page = secure.get("/console/sign-in", headers=HTML)
        assert "secure" in set_cookie_header(page, "surveykit_console_flash").lower()
        form = {"csrf_token": csrf_in(page), "username": "amina", "password": PASSWORD}
        response = secure.post(
            "/console/sign-in",
            form,
            headers={**HTML, "Referer": "https://survey.example.org/console/sign-in"},
        )
        cookie = set_cookie_header(response, browser.COOKIE_NAME)
        assert "; secure" in cookie.lower() and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    finally:
        app.registry.update(replaced)


def test_a_wrong_password_is_shown_next_to_the_field_and_audited(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    person(accounts)
    response = submit_signin(testapp, "amina", "not the password")
    assert response.status_int == 401 and response.content_type == "text/html"
    assert re.search(
        r'id="field-password"[^>]*aria-invalid="true"[^>]*aria-describedby="error-password"', response.text
    )
    assert '<p class="error" id="error-password">Wrong username or password.</p>' in response.text
    assert 'value="amina"' in response.text  # the username is kept, the password is not
    assert browser.COOKIE_NAME not in testapp.cookies
    [failed] = events(dbsession, "auth.login_failed")
    assert (failed.outcome, failed.details["reason"], failed.details["via"]) == (
        "refused",
        "bad_password",
        "console",
    )


def test_empty_fields_are_reported_field_by_field(testapp: webtest.TestApp) -> None:
    response = submit_signin(testapp, "", "")
    assert response.status_int == 422
    assert 'id="error-username">Enter your username.' in response.text
    assert 'id="error-password">Enter your password.' in response.text


def test_the_lockout_applies_to_the_form(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session, settings: dict[str, Any]
) -> None:
    person(accounts)
    for _ in range(settings["surveykit.lockout_threshold"]):
        submit_signin(testapp, "amina", "wrong password!")
    # Locked: even the right password is refused now, with a message saying why.
    response = submit_signin(testapp, "amina", PASSWORD)
    assert response.status_int == 401
    assert "this account is locked for about" in response.text
    assert browser.COOKIE_NAME not in testapp.cookies
    reasons = [event.details["reason"] for event in events(dbsession, "auth.login_failed")]
    assert reasons[-2:] == ["locked_now", "locked"]


def test_signing_in_never_leads_to_another_site(testapp: webtest.TestApp, accounts: Any) -> None:
    person(accounts)
    for target in (
        "https://evil.example/console/",
        "//evil.example/console/",
        "/api/v1/me",
        "/\\evil.example",
    ):
        response = submit_signin(testapp, "amina", PASSWORD, next=target)
        assert response.status_int == 303
        assert response.headers["Location"] == "http://surveykit.test/console/", target
        testapp.reset()


# --- the cookie and the login session -----------------------------------------------------------


def test_signing_out_ends_the_session_at_once(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    user = person(accounts)
    session_id = sign_in(testapp, accounts, user)
    cookie = testapp.cookies[browser.COOKIE_NAME]
    page = testapp.get("/console/", headers=HTML)
    response = testapp.post("/console/sign-out", {"csrf_token": csrf_in(page)}, headers=HTML)
    assert response.status_int == 303 and "/console/sign-in" in response.headers["Location"]
    assert browser.COOKIE_NAME + "=;" in set_cookie_header(response, browser.COOKIE_NAME).replace('""', "")
    assert session_of(dbsession, session_id).revoked_reason == "logout"
    # The old cookie, kept by someone, is refused from now on.
    testapp.set_cookie(browser.COOKIE_NAME, cookie.strip('"'))
    again = testapp.get("/console/", headers=HTML)
    assert again.status_int == 303 and "/console/sign-in?next=" in again.headers["Location"]


@pytest.mark.parametrize("how", ["revoked", "deactivated"])
def test_a_revoked_sessions_cookie_is_refused_at_once(
    how: str, testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    user = person(accounts)
    session_id = sign_in(testapp, accounts, user)
    assert testapp.get("/console/account", headers=HTML).status_int == 200
    if how == "revoked":
        services.revoke_sessions(dbsession, AuthSession.id == session_id, "revoked by an admin")
    else:
        services.deactivate_user(dbsession, user)
    dbsession.flush()
    response = testapp.get("/console/account", headers=HTML)
    assert (
        response.status_int == 303
        and "/console/sign-in?next=%2Fconsole%2Faccount" in response.headers["Location"]
    )
    # The dead cookie is cleared, and the sign-in form says why.
    assert browser.COOKIE_NAME + "=;" in set_cookie_header(response, browser.COOKIE_NAME).replace('""', "")
    form = testapp.get(response.headers["Location"], headers=HTML)
    assert "Your sign-in has ended" in form.text
    assert events(dbsession, "auth.token_refused")[-1].details["reason"] in ("session_revoked", "inactive")


def test_the_cookie_is_not_accepted_by_the_api_nor_a_token_by_the_console(
    testapp: webtest.TestApp, accounts: Any
) -> None:
    user = person(accounts, role="admin")
    cookie, _ = start_console_session(accounts, user)
    api = testapp.get("/api/v1/me", headers={"Cookie": f"{browser.COOKIE_NAME}={cookie}"}, expect_errors=True)
    assert api.status_int == 401 and api.json["code"] == "unauthenticated"
    # Nor is the cookie's value usable as a bearer token (another type, another audience).
    api = testapp.get("/api/v1/me", headers={"Authorization": f"Bearer {cookie}"}, expect_errors=True)
    assert api.status_int == 401
    token = accounts.token(user)
    page = testapp.get("/console/account", headers={**HTML, "Authorization": f"Bearer {token}"})
    assert page.status_int == 303 and "/console/sign-in" in page.headers["Location"]
    # And an access token is no cookie.
    page = testapp.get("/console/account", headers={**HTML, "Cookie": f"{browser.COOKIE_NAME}={token}"})
    assert page.status_int == 303 and "/console/sign-in" in page.headers["Location"]


# --- CSRF ---------------------------------------------------------------------------------------


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    user = person(accounts)
    session_id = sign_in(testapp, accounts, user)
    for form in ({}, {"csrf_token": "0" * 64}, {"csrf_token": csrf_for(accounts, "another-session")}):
        response = testapp.post("/console/sign-out", form, headers=HTML, expect_errors=True)
        assert response.status_int == 400 and response.content_type == "text/html"
        assert "The form has expired" in response.text
        assert session_of(dbsession, session_id).revoked_at is None
    assert len(events(dbsession, "console.csrf_refused")) == 3
    # The token of this login session works.
    response = testapp.post("/console/sign-out", {"csrf_token": csrf_for(accounts, session_id)}, headers=HTML)
    assert response.status_int == 303 and session_of(dbsession, session_id).revoked_at is not None


def test_the_sign_in_form_needs_its_csrf_token_too(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    person(accounts)
    response = testapp.post(
        "/console/sign-in", {"username": "amina", "password": PASSWORD}, headers=HTML, expect_errors=True
    )
    assert response.status_int == 400
    assert browser.COOKIE_NAME not in testapp.cookies
    assert events(dbsession, "auth.login") == []


def test_each_sign_in_gets_its_own_csrf_token(testapp: webtest.TestApp, accounts: Any) -> None:
    user = person(accounts)
    first = sign_in(testapp, accounts, user)
    token = csrf_in(testapp.get("/console/", headers=HTML))
    assert token == csrf_for(accounts, first)
    second = sign_in(testapp, accounts, user)
    assert csrf_in(testapp.get("/console/", headers=HTML)) == csrf_for(accounts, second) != token


# --- headers and error pages --------------------------------------------------------------------


def test_console_responses_carry_the_csp_and_frame_headers(testapp: webtest.TestApp, accounts: Any) -> None:
    responses = [
        testapp.get("/console/sign-in", headers=HTML),
        testapp.get("/console/", headers=HTML),  # the redirect to sign in
        testapp.get("/console/no-such-page", headers=HTML, status=404),
        testapp.get("/console/static/console.css"),
    ]
    sign_in(testapp, accounts, person(accounts))
    responses.append(testapp.get("/console/account", headers=HTML))
    for response in responses:
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert responses[-1].headers["Cache-Control"] == "no-store"


def test_pages_hold_no_inline_script_or_style(testapp: webtest.TestApp, accounts: Any) -> None:
    pages = [testapp.get("/console/sign-in", headers=HTML)]
    sign_in(testapp, accounts, person(accounts, role="admin"))
    pages += [testapp.get(path, headers=HTML) for path in ("/console/", "/console/account")]
    for page in pages:
        assert "<style" not in page.text and " style=" not in page.text and "javascript:" not in page.text
        for script in re.findall(r"<script[^>]*>", page.text):
            assert 'src="/console/static/' in script and 'type="module"' in script
        assert not re.search(r"<script[^>]*>(?!</script>)", page.text)  # no script body
        assert not re.search(r" on[a-z]+=", page.text)  # no inline event handlers


def test_errors_are_html_pages_in_the_console_and_json_in_the_api(testapp: webtest.TestApp) -> None:
    page = testapp.get("/console/no-such-page", headers=HTML, status=404)
    assert page.content_type == "text/html" and "Page not found" in page.text
    assert "Traceback" not in page.text
    assert testapp.get("/api/v1/no-such-route", status=404).json["code"] == "not_found"
    assert testapp.get("/console", status=303).headers["Location"].endswith("/console/")
    wrong_method = testapp.put("/console/sign-in", headers=HTML, status=405)
    assert wrong_method.content_type == "text/html" and "POST" in wrong_method.headers["Allow"]


def test_the_root_leads_a_browser_to_the_console_and_answers_api_clients_in_json(
    testapp: webtest.TestApp,
) -> None:
    assert testapp.get("/", headers=HTML, status=303).headers["Location"].endswith("/console/")
    assert testapp.get("/", status=404).json["code"] == "not_found"


def test_an_unexpected_error_is_a_page_with_its_request_id_not_a_traceback(
    testapp: webtest.TestApp, accounts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from surveykit.instruments import services as instruments

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(instruments, "list_instruments", broken)
    sign_in(testapp, accounts, person(accounts))
    page = testapp.get("/console/instruments", headers=HTML, status=500)
    assert page.content_type == "text/html" and "Something went wrong" in page.text
    assert page.headers["X-Request-ID"] in page.text
    assert "secret internals" not in page.text and "Traceback" not in page.text
    assert page.headers["X-Frame-Options"] == "DENY"


def test_every_console_view_checks_csrf(app: Any) -> None:
    """``console_view`` turns the check on; a view registered another way would show here."""
    checked = {}
    for item in app.registry.introspector.get_category("views"):
        view = item["introspectable"]
        if (view["route_name"] or "").startswith(browser.CONSOLE_ROUTE_PREFIX) and view[
            "route_name"
        ] != "console.static":
            checked[(view["route_name"], str(view["request_methods"]))] = view["require_csrf"]
    assert len(checked) >= 20 and all(checked.values()), [key for key, on in checked.items() if not on]


def test_every_console_form_is_refused_without_its_csrf_token(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    """Each state-changing console route, sent by a global admin (who may do everything) without the
    token: refused with the HTML 400 page, and the database holds what it held."""
    from test_route_matrix import CALLS, World

    world = World(accounts, dbsession)
    posts = sorted(
        key for key in CALLS if key[0].startswith(browser.CONSOLE_ROUTE_PREFIX) and key[1] == "POST"
    )
    assert len(posts) >= 10
    for key in posts:
        call = CALLS[key](world)
        headers, _ = world.browser("global_admin")
        dbsession.flush()
        before = _table_counts(dbsession)
        response = testapp.post(call.url, call.form, headers=headers, expect_errors=True)
        assert response.status_int == 400 and "The form has expired" in response.text, key
        assert _table_counts(dbsession) == before, key
        testapp.reset()


def _table_counts(dbsession: Session) -> dict[str, Any]:
    """Rows per table, and the state of users, grants, sessions and instruments (what forms change)."""
    from sqlalchemy import func, text

    from surveykit.accounts.models import Grant
    from surveykit.instruments.models import Instrument

    dbsession.expire_all()
    counts: dict[str, Any] = {
        table: dbsession.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        for table in ("users", "grants", "auth_sessions", "instruments")
    }
    counts["active"] = sorted(dbsession.scalars(select(User.username).where(User.active.is_(True))))
    counts["revoked_sessions"] = dbsession.scalar(
        select(func.count()).select_from(AuthSession).where(AuthSession.revoked_at.is_not(None))
    )
    counts["retired"] = sorted(
        dbsession.scalars(select(Instrument.slug).where(Instrument.retired_at.is_not(None)))
    )
    counts["passwords"] = sorted(dbsession.execute(select(User.username, User.password_hash)).all(), key=str)
    counts["grant_ids"] = sorted(dbsession.scalars(select(Grant.id)))
    return counts


def test_signing_out_of_an_ended_sign_in_leads_to_the_form(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    user = person(accounts)
    session_id = sign_in(testapp, accounts, user)
    token = csrf_in(testapp.get("/console/", headers=HTML))
    services.revoke_sessions(dbsession, AuthSession.id == session_id, "revoked by an admin")
    dbsession.flush()
    response = testapp.post("/console/sign-out", {"csrf_token": token}, headers=HTML)
    assert response.status_int == 303 and "/console/sign-in?next=" in response.headers["Location"]
    assert browser.COOKIE_NAME + "=;" in set_cookie_header(response, browser.COOKIE_NAME).replace('""', "")
