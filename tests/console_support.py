"""Helpers for console tests: a signed-in browser without going through the (slow) password form."""

from __future__ import annotations

import html
import re
from typing import Any

import webtest

from surveykit.accounts import browser
from surveykit.accounts import services as accounts_services
from surveykit.db import utcnow

HTML = {"Accept": "text/html,application/xhtml+xml"}
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def start_console_session(accounts: Any, user: Any) -> tuple[str, str]:
    """A new login session of ``user`` as the sign-in form starts it: (cookie value, session id)."""
    pair = accounts_services.start_session(accounts.session, user, accounts.tokens, accounts.policy)
    accounts.session.flush()
    value, _ = browser.issue_cookie_value(
        accounts.tokens,
        user_id=user.id,
        session_id=pair.session_id,
        now=utcnow(),
        lifetime_seconds=accounts.settings["surveykit.refresh_token_seconds"],
    )
    return value, pair.session_id


def sign_in(testapp: webtest.TestApp, accounts: Any, user: Any) -> str:
    """Put a console cookie for ``user`` into ``testapp``'s cookie jar; returns the session id."""
    value, session_id = start_console_session(accounts, user)
    testapp.set_cookie(browser.COOKIE_NAME, value)
    return session_id


def csrf_for(accounts: Any, session_id: str) -> str:
    return browser.csrf_token_for(accounts.tokens, f"session:{session_id}")


def csrf_in(response: webtest.TestResponse) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(response.text)
    assert found, "no CSRF field on the page"
    return found.group(1)


def error_next_to(response: webtest.TestResponse, field: str) -> str:
    """The error shown next to ``field`` (its ``error-<field>`` paragraph); fails when there is none."""
    found = re.search(rf'<p class="error" id="error-{field}"[^>]*>([^<]*)</p>', response.text)
    assert found, f"no error next to {field}"
    return html.unescape(found.group(1))
