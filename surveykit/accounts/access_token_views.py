"""HTTP views for personal access tokens: the caller's own (created, listed, revoked), and, for
admins, any account's (listed, revoked). A token itself can never reach these routes: the security
policy allows it only export downloads."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.view import view_config

from surveykit.accounts import access_tokens, schemas
from surveykit.accounts.models import AccessToken, User
from surveykit.accounts.views import named_user
from surveykit.audit import services as audit
from surveykit.errors import APIError, ErrorCode, field_error
from surveykit.security import Permission
from surveykit.web import json_body


def _caller(request: Request) -> User:
    return request.dbsession.get(User, request.identity.user_id)


def _created(request: Request, owner: User, body: dict[str, Any]) -> dict[str, Any]:
    try:
        created = access_tokens.create_access_token(
            request.dbsession, owner, body["name"], body["expires_in_days"], request.identity.actor
        )
    except access_tokens.TooManyAccessTokens as exc:
        raise APIError(409, ErrorCode.CONFLICT, str(exc), [field_error(exc.field or "", str(exc))]) from exc
    except access_tokens.AccessTokenError as exc:
        raise APIError(
            422, ErrorCode.INVALID_INPUT, str(exc), [field_error(exc.field or "", str(exc))]
        ) from exc
    token = created.token
    audit.record_in_request(
        request,
        "access_token.created",
        target=owner.username,
        token=token.id,
        prefix=token.prefix,
        name=token.name,
        expires_at=token.expires_at.isoformat(),
    )
    request.response.status = 201
    # Shown this once: the response must not be stored by any cache.
    request.response.cache_control = "no-store"
    request.response.headers["Pragma"] = "no-cache"
    return {**access_tokens.describe_access_token(token), "token": created.secret}


def _owned(request: Request, owner: User) -> AccessToken:
    raw = request.matchdict["token_id"]
    try:
        return access_tokens.get_access_token(request.dbsession, owner, raw)
    except access_tokens.AccessTokenNotFound as exc:
        raise APIError(
            404,
            ErrorCode.NOT_FOUND,
            f"{owner.username} has no access token {raw!r}",
            [field_error("token_id", "unknown access token", "path")],
        ) from exc


def _revoked(request: Request, owner: User) -> dict[str, Any]:
    token = _owned(request, owner)
    if access_tokens.revoke_access_token(request.dbsession, token, request.identity.actor):
        audit.record_in_request(
            request, "access_token.revoked", target=owner.username, token=token.id, prefix=token.prefix
        )
    return access_tokens.describe_access_token(token)


def _listing(request: Request, owner: User) -> dict[str, Any]:
    tokens = access_tokens.list_access_tokens(request.dbsession, owner)
    return {"access_tokens": [access_tokens.describe_access_token(token) for token in tokens]}


@view_config(
    route_name="access_tokens",
    request_method="POST",
    renderer="json",
    permission=Permission.ACCESS_TOKENS_MANAGE,
)
def create_own(request: Request) -> dict[str, Any]:
    body = json_body(request, schemas.AccessTokenCreateSchema())
    return _created(request, _caller(request), body)


@view_config(
    route_name="access_tokens",
    request_method="GET",
    renderer="json",
    permission=Permission.ACCESS_TOKENS_MANAGE,
)
def list_own(request: Request) -> dict[str, Any]:
    return _listing(request, _caller(request))


@view_config(
    route_name="access_token",
    request_method="DELETE",
    renderer="json",
    permission=Permission.ACCESS_TOKENS_MANAGE,
)
def revoke_own(request: Request) -> dict[str, Any]:
    return _revoked(request, _caller(request))


@view_config(
    route_name="user_access_tokens",
    request_method="GET",
    renderer="json",
    permission=Permission.USERS_MANAGE,
)
def list_users_tokens(request: Request) -> dict[str, Any]:
    return _listing(request, named_user(request))


@view_config(
    route_name="user_access_token",
    request_method="DELETE",
    renderer="json",
    permission=Permission.USERS_MANAGE,
)
def revoke_users_token(request: Request) -> dict[str, Any]:
    return _revoked(request, named_user(request))
