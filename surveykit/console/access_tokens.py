"""The personal access tokens section of My account: create one (its secret shown on that response
only), see one's tokens, revoke one.

The same services as ``/api/v1/account/access-tokens`` and the same audit actions
(``access_token.created``, ``access_token.revoked``).
"""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

from surveykit.accounts import access_tokens
from surveykit.accounts.models import User
from surveykit.audit import services as audit
from surveykit.console.errors import error_page
from surveykit.console.web import _, console_view, flash, render_page, translate
from surveykit.security import Permission

ACCOUNT_TEMPLATE = "surveykit.console:templates/account/account.jinja2"


def account_values(
    request: Request,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    created: access_tokens.CreatedAccessToken | None = None,
) -> dict[str, Any]:
    """What the My account page shows: grants, tokens, the token form (and a token just created)."""
    owner = request.dbsession.get(User, request.identity.user_id)
    return {
        "grants": request.identity.grants,
        "tokens": [
            access_tokens.describe_access_token(token)
            for token in access_tokens.list_access_tokens(request.dbsession, owner)
        ],
        "token_form": form or {"name": "", "expires_in_days": str(access_tokens.DEFAULT_DAYS)},
        "token_errors": errors or {},
        "created": created,
        "max_days": access_tokens.MAX_DAYS,
        "exports_url": request.application_url + "/api/v1/exports",
    }


def _account_page(request: Request, values: dict[str, Any], status: int = 200) -> Response:
    return render_page(ACCOUNT_TEMPLATE, values, request=request, status=status)


def _days(text: str) -> int | None:
    text = text.strip() or str(access_tokens.DEFAULT_DAYS)
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else None


@console_view(
    route_name="console.access_tokens", request_method="POST", permission=Permission.ACCESS_TOKENS_MANAGE
)
def create_token(request: Request) -> Response:
    form = {
        "name": request.POST.get("name", "").strip(),
        "expires_in_days": request.POST.get("expires_in_days", "").strip(),
    }
    errors: dict[str, str] = {}
    days = _days(form["expires_in_days"])
    if not form["name"]:
        errors["name"] = translate(request, _("Give the token a name, to recognise it later."))
    if days is None or not 1 <= days <= access_tokens.MAX_DAYS:
        errors["expires_in_days"] = translate(
            request, _("Enter a number of days from 1 to ${max}."), max=access_tokens.MAX_DAYS
        )
    if errors:
        return _account_page(request, account_values(request, form, errors), 422)
    owner = request.dbsession.get(User, request.identity.user_id)
    try:
        created = access_tokens.create_access_token(request.dbsession, owner, form["name"], days)
    except access_tokens.TooManyAccessTokens:
        message = translate(
            request,
            _("You already have ${count} active tokens: revoke one first."),
            count=access_tokens.MAX_ACTIVE_PER_USER,
        )
        return _account_page(request, account_values(request, form, {"name": message}), 422)
    except access_tokens.AccessTokenError as exc:
        return _account_page(request, account_values(request, form, {exc.field or "name": str(exc)}), 422)
    token = created.token
    audit.record_in_request(
        request,
        "access_token.created",
        target=owner.username,
        token=token.id,
        prefix=token.prefix,
        name=token.name,
        expires_at=token.expires_at.isoformat(),
        via="console",
    )
    # The secret is on this response only: never stored, never in a cookie or a cache.
    response = _account_page(request, account_values(request, created=created))
    response.cache_control = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@console_view(
    route_name="console.access_token_revoke",
    request_method="POST",
    permission=Permission.ACCESS_TOKENS_MANAGE,
)
def revoke_token(request: Request) -> Response:
    owner = request.dbsession.get(User, request.identity.user_id)
    try:
        token = access_tokens.get_access_token(request.dbsession, owner, request.matchdict["token_id"])
    except access_tokens.AccessTokenNotFound:
        return error_page(
            request,
            404,
            translate(request, _("No such token")),
            translate(request, _("You have no access token with this number.")),
        )
    if access_tokens.revoke_access_token(request.dbsession, token, owner.username):
        audit.record_in_request(
            request,
            "access_token.revoked",
            target=owner.username,
            token=token.id,
            prefix=token.prefix,
            via="console",
        )
    flash(request, translate(request, _("The token ${name} is revoked."), name=token.name))
    return HTTPSeeOther(location=request.route_path("console.account", _anchor="access-tokens"))
