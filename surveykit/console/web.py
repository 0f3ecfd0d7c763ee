"""Plumbing shared by every console page: the view decorator, CSRF tokens, the sign-in cookie,
security headers and flash messages."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from pyramid.i18n import TranslationStringFactory
from pyramid.interfaces import ICSRFStoragePolicy
from pyramid.renderers import render_to_response
from pyramid.request import Request
from pyramid.response import Response
from pyramid.session import SignedCookieSessionFactory
from pyramid.view import view_config
from zope.interface import implementer

from surveykit.accounts import browser
from surveykit.accounts.tokens import TokenSettings
from surveykit.security import Permission

# No inline script or style anywhere: every script and stylesheet is a file of ours. Images may be
# data: URLs (a tablet's enrolment QR code is drawn from the API's PNG).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
FLASH_COOKIE = "surveykit_console_flash"
# Messages made in Python are marked with _() and translated with translate(); templates use the
# jinja2 i18n extension ({% trans %} and _()). One translation domain for both.
_ = TranslationStringFactory("surveykit")
CSRF_FIELD = "csrf_token"


class console_view(view_config):  # noqa: N801  (a decorator, named like Pyramid's view_config)
    """``view_config`` for a console page: a console route, a declared permission, CSRF checked on
    every state-changing request (POST and the like; GET and HEAD must change nothing)."""

    def __init__(self, *, route_name: str, permission: Permission, **settings: Any) -> None:
        if not route_name.startswith(browser.CONSOLE_ROUTE_PREFIX):
            raise ValueError(f"console route names start with {browser.CONSOLE_ROUTE_PREFIX!r}: {route_name}")
        if not isinstance(permission, Permission) or permission is Permission.UNDECLARED:
            raise ValueError(f"console view on {route_name} must declare a Permission")
        settings.setdefault("require_csrf", True)
        super().__init__(route_name=route_name, permission=permission, **settings)


def translate(request: Request, message: Any, **mapping: Any) -> str:
    """A message marked with ``_``, translated for the request, ``${name}`` filled from ``mapping``."""
    if mapping:
        message = _(message, mapping=mapping)
    return request.localizer.translate(message)


def tokens_of(request: Request) -> TokenSettings:
    return TokenSettings.from_settings(request.registry.settings)


def secure_cookies(settings: dict[str, Any]) -> bool:
    """Cookies are Secure when the server is reached over https (production requires it)."""
    return str(settings.get("surveykit.public_url", "")).startswith("https://")


# ------------------------------------------------------------------------------------ sign-in cookie


def set_signin_cookie(
    request: Request, response: Response, user_id: int, session_id: str, now: datetime
) -> None:
    settings = request.registry.settings
    lifetime = settings["surveykit.refresh_token_seconds"]
    value, _ = browser.issue_cookie_value(
        tokens_of(request), user_id=user_id, session_id=session_id, now=now, lifetime_seconds=lifetime
    )
    response.set_cookie(
        browser.COOKIE_NAME,
        value,
        max_age=lifetime,
        path="/",
        secure=secure_cookies(settings),
        httponly=True,
        samesite="Strict",
    )


def forget_signin_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(browser.COOKIE_NAME, path="/")


# --------------------------------------------------------------------------------------------- CSRF


@implementer(ICSRFStoragePolicy)
class LoginSessionCSRFPolicy:
    """A signed-in browser's CSRF token is derived from its login session, so it changes with every
    sign-in and dies with the session. A signed-out browser (the sign-in form) gets one derived from
    a random value kept in its flash cookie, which stops a foreign page from signing it in."""

    def _scope(self, request: Request, create: bool) -> str | None:
        identity = request.identity if browser.is_console_request(request) else None
        if identity is not None:
            return f"session:{identity.session_id}"
        anonymous = request.session.get("anonymous_csrf")
        if anonymous is None:
            if not create:
                return None
            anonymous = secrets.token_urlsafe(24)
            request.session["anonymous_csrf"] = anonymous
        return f"anonymous:{anonymous}"

    def new_csrf_token(self, request: Request) -> str:
        request.session.pop("anonymous_csrf", None)
        return self.get_csrf_token(request)

    def get_csrf_token(self, request: Request) -> str:
        scope = self._scope(request, create=True)
        return browser.csrf_token_for(tokens_of(request), scope)

    def check_csrf_token(self, request: Request, supplied_token: str) -> bool:
        scope = self._scope(request, create=False)
        if scope is None or not isinstance(supplied_token, str):
            return False
        expected = browser.csrf_token_for(tokens_of(request), scope)
        return secrets.compare_digest(expected.encode(), supplied_token.encode("utf-8", "replace"))


def flash_session_factory(settings: dict[str, Any]) -> Any:
    keys = settings["surveykit.jwt_keys"]
    secret = hashlib.sha256(b"surveykit console flash\x00" + next(iter(keys.values())).encode()).hexdigest()
    return SignedCookieSessionFactory(
        secret,
        cookie_name=FLASH_COOKIE,
        secure=secure_cookies(settings),
        httponly=True,
        samesite="Strict",
        path="/console",
        timeout=None,
        reissue_time=None,
        set_on_exception=True,
    )


# ----------------------------------------------------------------------------------------- headers


def add_security_headers(event: Any) -> None:
    """NewResponse subscriber: every console response (pages, errors, static files, downloads)."""
    request = event.request
    if not browser.is_console_request(request):
        return
    response = event.response
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.content_type == "text/html" and "Cache-Control" not in response.headers:
        # Pages show personal and study data: never kept by a shared cache or the back button.
        response.cache_control = "no-store"


# ----------------------------------------------------------------------------------------- flashes


def flash(request: Request, message: str, kind: str = "success") -> None:
    """A message shown once, on the next page (kind: success, info or error)."""
    request.session.flash({"kind": kind, "text": message})


def pop_flashes(request: Request) -> list[dict[str, str]]:
    if FLASH_COOKIE not in request.cookies and "session" not in request.__dict__:
        return []  # no session yet: don't create one (and its cookie) just to find it empty
    return list(request.session.pop_flash())


def render_page(template: str, values: dict[str, Any], *, request: Request, status: int = 200) -> Response:
    """A console page rendered with ``values`` and answered with ``status`` (a form shown again
    with its errors is a 4xx, not a 200)."""
    response = render_to_response(template, values, request=request)
    response.status = status
    return response
