"""Error pages for the console: a person sees a page they can act on, never JSON or a traceback.

These exception views match only paths under ``/console``; everywhere else the API's JSON error
views answer as before. A signed-out browser asking for a page is sent to the sign-in form.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit

from pyramid.csrf import BadCSRFOrigin, BadCSRFToken
from pyramid.exceptions import PredicateMismatch
from pyramid.httpexceptions import HTTPException, HTTPForbidden, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import exception_view_config, forbidden_view_config, notfound_view_config
from sqlalchemy.exc import IntegrityError

from surveykit.accounts import browser
from surveykit.accounts.policy import AUTH_PROBLEM
from surveykit.audit import services as audit
from surveykit.console.web import _, flash, forget_signin_cookie, render_page, translate
from surveykit.errors import APIError, allowed_methods

log = logging.getLogger(__name__)

CONSOLE_PATHS = r"^/console(/|$)"
ERROR_TEMPLATE = "surveykit.console:templates/error.jinja2"


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    return render_page(
        ERROR_TEMPLATE, {"status": status, "title": title, "message": message}, request=request, status=status
    )


def signin_redirect(request: Request) -> Response:
    """Send a signed-out browser to the sign-in form, coming back afterwards to the page asked for
    (for a form sent, to the page it was sent from)."""
    back = request.path_qs
    if request.method != "GET":
        referer = urlsplit(request.referer or "")
        same_site = not referer.netloc or referer.netloc == request.host
        back = referer.path if same_site and referer.path.startswith("/console/") else "/console/"
    target = request.route_path("console.signin") + "?" + urlencode({"next": back})
    response = HTTPSeeOther(location=target)
    if request.environ.get(AUTH_PROBLEM) and browser.COOKIE_NAME in request.cookies:
        # The cookie named a session that has ended (signed out, revoked, deactivated, expired).
        flash(request, translate(request, _("Your sign-in has ended. Please sign in again.")), "info")
        forget_signin_cookie(request, response)
    return response


@forbidden_view_config(path_info=CONSOLE_PATHS)
def console_forbidden(exc: HTTPForbidden, request: Request) -> Response:
    if request.identity is None:
        return signin_redirect(request)
    permission = getattr(getattr(exc, "result", None), "permission", None)
    audit.record_refusal(
        request,
        "authz.forbidden",
        target=f"{request.method} {request.path}",
        permission=str(permission) if permission is not None else None,
    )
    return error_page(
        request,
        403,
        translate(request, _("Not allowed")),
        translate(
            request,
            _("Your grants do not allow this page. If you need it, ask an administrator for a grant."),
        ),
    )


@notfound_view_config(path_info=CONSOLE_PATHS)
def console_not_found(exc: HTTPException, request: Request) -> Response:
    if request.path_info == "/console":
        return HTTPSeeOther(location=request.route_path("console.home"))
    if isinstance(exc, PredicateMismatch) and request.matched_route is not None:
        allowed = allowed_methods(request, request.matched_route.name)
        if request.method not in allowed:
            response = error_page(
                request,
                405,
                translate(request, _("Not possible here")),
                translate(request, _("This page cannot be used that way.")),
            )
            response.headers["Allow"] = ", ".join(sorted(allowed))
            return response
    return error_page(
        request,
        404,
        translate(request, _("Page not found")),
        translate(request, _("There is no page at this address.")),
    )


@exception_view_config(BadCSRFToken, path_info=CONSOLE_PATHS)
@exception_view_config(BadCSRFOrigin, path_info=CONSOLE_PATHS)
def console_bad_csrf(exc: HTTPException, request: Request) -> Response:
    route = request.matched_route.name if request.matched_route is not None else None
    if route == "console.signout" and request.identity is None:
        # Signing out of a sign-in that has already ended (its page held that sign-in's token).
        return signin_redirect(request)
    audit.record_refusal(request, "console.csrf_refused", target=f"{request.method} {request.path}")
    return error_page(
        request,
        400,
        translate(request, _("The form has expired")),
        translate(
            request,
            _(
                "This form was sent without a valid security token (it may be older than your sign-in). "
                "Go back, reload the page and send it again."
            ),
        ),
    )


@exception_view_config(APIError, path_info=CONSOLE_PATHS)
def console_api_error(exc: APIError, request: Request) -> Response:
    return error_page(request, exc.status, translate(request, _("Request refused")), exc.message)


@exception_view_config(HTTPException, path_info=CONSOLE_PATHS)
def console_http_exception(exc: HTTPException, request: Request) -> Response:
    if exc.code < 400:
        return exc
    return error_page(request, exc.code, exc.title, str(exc.detail or exc.explanation or exc.title))


@exception_view_config(IntegrityError, path_info=CONSOLE_PATHS)
def console_integrity_error(exc: IntegrityError, request: Request) -> Response:
    log.warning("integrity error on %s %s: %s", request.method, request.path, exc.orig)
    return error_page(
        request,
        409,
        translate(request, _("Changed meanwhile")),
        translate(request, _("Someone changed the same data at the same time. Please retry.")),
    )


@exception_view_config(Exception, path_info=CONSOLE_PATHS)
def console_unexpected_error(exc: Exception, request: Request) -> Response:
    request_id = request.environ.get("surveykit.request_id", "-")
    log.error("unhandled error on %s %s (request %s)", request.method, request.path, request_id, exc_info=exc)
    return error_page(
        request,
        500,
        translate(request, _("Something went wrong")),
        translate(
            request,
            _(
                "The server could not complete this request. It has been logged as request ${request_id}; "
                "quote it when you report the problem."
            ),
            request_id=request_id,
        ),
    )
