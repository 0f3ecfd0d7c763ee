"""Pages for everyone: sign in, the start page, one's own account, sign out.

Signing in goes through the same services as ``POST /api/v1/auth/token`` (the address throttle,
the account lockout, the audit log) and starts the same kind of login session; signing out ends
that session at once, like ``POST /api/v1/auth/logout``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

from surveykit.accounts import services, throttle
from surveykit.accounts.models import AuthSession, User
from surveykit.accounts.tokens import TokenSettings
from surveykit.audit import services as audit
from surveykit.console.access_tokens import account_values as access_token_values
from surveykit.console.web import (
    _,
    console_view,
    flash,
    forget_signin_cookie,
    render_page,
    set_signin_cookie,
    translate,
)
from surveykit.db import utcnow
from surveykit.errors import ErrorCode, error_response
from surveykit.security import Permission

SIGNIN_TEMPLATE = "surveykit.console:templates/account/signin.jinja2"


@console_view(route_name="console.root", request_method="GET", permission=Permission.PUBLIC)
def root(request: Request) -> Response:
    """``/``: a browser is led to the console; an API client gets the usual JSON 404."""
    if "text/html" in request.headers.get("Accept", ""):
        return HTTPSeeOther(location=request.route_path("console.home"))
    return error_response(404, ErrorCode.NOT_FOUND, f"nothing is served at {request.path}")


def _safe_next(request: Request, target: str | None) -> str:
    """Where to go after signing in: a console path of this server, never another site."""
    home = request.route_path("console.home")
    if not target:
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/") or "\\" in target:
        return home
    return target


@console_view(
    route_name="console.signin", request_method="GET", permission=Permission.PUBLIC, renderer=SIGNIN_TEMPLATE
)
def signin_form(request: Request) -> dict[str, Any]:
    if request.identity is not None:
        raise HTTPSeeOther(location=_safe_next(request, request.GET.get("next")))
    return {"username": "", "next": _safe_next(request, request.GET.get("next")), "errors": {}}


@console_view(route_name="console.signin", request_method="POST", permission=Permission.PUBLIC)
def signin(request: Request) -> Response:
    username = request.POST.get("username", "").strip()
    password = request.POST.get("password", "")
    next_url = _safe_next(request, request.POST.get("next"))

    def form_again(status: int, errors: dict[str, str]) -> Response:
        return render_page(
            SIGNIN_TEMPLATE,
            {"username": username, "next": next_url, "errors": errors},
            request=request,
            status=status,
        )

    errors = {}
    if not username:
        errors["username"] = translate(request, _("Enter your username."))
    if not password:
        errors["password"] = translate(request, _("Enter your password."))
    if errors:
        return form_again(422, errors)
    policy = services.AccountPolicy.from_settings(request.registry.settings)
    throttle_policy = throttle.ThrottlePolicy.from_settings(request.registry.settings)
    try:
        verified = services.authenticate(
            request.registry["dbsession_factory"],
            username,
            password,
            request.remote_addr,
            policy,
            throttle_policy,
        )
        user = services.complete_login(request.dbsession, verified)
    except throttle.Throttled as throttled:
        if throttled.first:
            audit.record_in_request(
                request,
                "auth.throttled",
                outcome="refused",
                target=request.matched_route.name,
                limit=throttle_policy.limit(throttled.kind),
                window_seconds=throttle_policy.window_seconds,
            )
        response = form_again(
            429,
            {
                "form": translate(
                    request,
                    _("Too many sign-in attempts from your address. Try again in ${seconds} seconds."),
                    seconds=throttled.retry_after,
                )
            },
        )
        response.headers["Retry-After"] = str(throttled.retry_after)
        return response
    except services.LoginRefused as refused:
        details = {"failure": refused.failure} if refused.failure else {}
        audit.record_in_request(
            request,
            "auth.login_failed",
            outcome="refused",
            actor=username,
            target=username,
            reason=refused.reason,
            via="console",
            **details,
        )
        if refused.reason in ("locked", "locked_now"):
            minutes = max(1, round((refused.locked_until - utcnow()).total_seconds() / 60))
            message = translate(
                request,
                _(
                    "Too many failed sign-ins: this account is locked for about ${minutes} minutes. "
                    "An administrator can unlock it sooner."
                ),
                minutes=minutes,
            )
            return form_again(401, {"form": message})
        return form_again(401, {"password": translate(request, _("Wrong username or password."))})
    pair = services.start_session(
        request.dbsession, user, TokenSettings.from_settings(request.registry.settings), policy
    )
    audit.record_in_request(request, "auth.login", actor=user.username, target=user.username, via="console")
    response = HTTPSeeOther(location=next_url)
    set_signin_cookie(request, response, user.id, pair.session_id, utcnow())
    # A fresh sign-in gets a fresh anonymous CSRF value next time it signs out.
    request.session.pop("anonymous_csrf", None)
    return response


@console_view(route_name="console.signout", request_method="POST", permission=Permission.PUBLIC)
def signout(request: Request) -> Response:
    identity = request.identity
    response = HTTPSeeOther(location=request.route_path("console.signin"))
    if identity is not None:
        services.revoke_sessions(request.dbsession, AuthSession.id == identity.session_id, "logout")
        audit.record_in_request(request, "auth.logout", target=identity.session_id, via="console")
        flash(request, translate(request, _("You have signed out.")), "info")
    forget_signin_cookie(request, response)
    return response


@console_view(
    route_name="console.home",
    request_method="GET",
    permission=Permission.ACCOUNT_READ,
    renderer="surveykit.console:templates/home.jinja2",
)
def home(request: Request) -> dict[str, Any]:
    return {}


@console_view(
    route_name="console.account",
    request_method="GET",
    permission=Permission.ACCOUNT_READ,
    renderer="surveykit.console:templates/account/account.jinja2",
)
def account(request: Request) -> dict[str, Any]:
    return access_token_values(request)


PASSWORD_TEMPLATE = "surveykit.console:templates/account/password.jinja2"


@console_view(
    route_name="console.password",
    request_method="GET",
    permission=Permission.ACCOUNT_UPDATE,
    renderer=PASSWORD_TEMPLATE,
)
def password_form(request: Request) -> dict[str, Any]:
    return {"errors": {}, "min_length": request.registry.settings["surveykit.password_min_length"]}


@console_view(route_name="console.password", request_method="POST", permission=Permission.ACCOUNT_UPDATE)
def change_password(request: Request) -> Response:
    """As ``POST /api/v1/me/password``: the other sign-ins end, this one goes on."""
    current = request.POST.get("current_password", "")
    new = request.POST.get("new_password", "")
    confirm = request.POST.get("confirm_password", "")

    def form_again(status: int, errors: dict[str, str]) -> Response:
        values = {"errors": errors, "min_length": request.registry.settings["surveykit.password_min_length"]}
        return render_page(PASSWORD_TEMPLATE, values, request=request, status=status)

    if not current:
        return form_again(422, {"current_password": translate(request, _("Enter your current password."))})
    if new != confirm:
        return form_again(422, {"confirm_password": translate(request, _("The two new passwords differ."))})
    identity = request.identity
    user = request.dbsession.get(User, identity.user_id)
    try:
        ended = services.change_own_password(
            request.dbsession,
            user,
            current,
            new,
            services.AccountPolicy.from_settings(request.registry.settings),
            keep_session_id=identity.session_id,
            client_addr=request.remote_addr,
            throttle_policy=throttle.ThrottlePolicy.from_settings(request.registry.settings),
        )
    except services.AccountError as exc:
        return form_again(422, {"new_password": str(exc)})
    except throttle.Throttled as throttled:
        message = translate(
            request,
            _("Too many attempts from your address. Try again in ${seconds} seconds."),
            seconds=throttled.retry_after,
        )
        return form_again(429, {"form": message})
    except services.PasswordChangeRefused as refused:
        # Answered, not raised: the counted attempt and its audit event must commit.
        audit.record_in_request(
            request,
            "user.password_change",
            outcome="refused",
            target=user.username,
            reason=refused.reason,
            via="console",
        )
        if refused.locked_until is not None:
            message = translate(request, _("Too many wrong passwords: try again later."))
            return form_again(429, {"current_password": message})
        return form_again(
            422, {"current_password": translate(request, _("This is not your current password."))}
        )
    audit.record_in_request(
        request,
        "user.password_change",
        target=user.username,
        sessions_ended=ended.sessions_ended,
        access_tokens_revoked=ended.access_tokens_revoked,
        via="console",
    )
    message = _("Your password is changed. Your other sign-ins have ended.")
    if ended.access_tokens_revoked:
        message = _(
            "Your password is changed. Your other sign-ins have ended and your personal access "
            "tokens are revoked: make new ones for your scripts."
        )
    flash(request, translate(request, message))
    return HTTPSeeOther(location=request.route_path("console.account"))
