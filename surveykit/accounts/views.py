"""HTTP views for login, token refresh, logout, the caller's account, and devices.

Refusals that change state (a failed login counted, a reused refresh token's session ended, an
enrolment code spent) are returned as error responses rather than raised, so the change commits.
"""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPForbidden
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import forbidden_view_config, view_config
from sqlalchemy import select

from surveykit.accounts import enrolment, schemas, services, throttle
from surveykit.accounts.identity import GrantScope, Identity
from surveykit.accounts.models import Device, User
from surveykit.accounts.policy import AUTH_PROBLEM, AccessTokenDenied
from surveykit.accounts.tokens import TokenSettings
from surveykit.audit import services as audit
from surveykit.db import utcnow
from surveykit.errors import APIError, ErrorCode, error_response, field_error
from surveykit.security import Permission
from surveykit.web import json_body, query_params


def _tokens(request: Request) -> TokenSettings:
    return TokenSettings.from_settings(request.registry.settings)


def _policy(request: Request) -> services.AccountPolicy:
    return services.AccountPolicy.from_settings(request.registry.settings)


def _secret_response(request: Request) -> None:
    """Responses carrying tokens or enrolment codes must not be stored by any cache (RFC 6749 5.1)."""
    request.response.cache_control = "no-store"
    request.response.headers["Pragma"] = "no-cache"


@forbidden_view_config()
def forbidden_view(exc: HTTPForbidden, request: Request) -> Response:
    if request.identity is None:
        problem = request.environ.get(AUTH_PROBLEM)
        message = (
            f"authentication failed: {problem}"
            if problem
            else ("authentication required: send 'Authorization: Bearer <access token>'")
        )
        return error_response(
            401,
            ErrorCode.UNAUTHENTICATED,
            message,
            headers={"WWW-Authenticate": 'Bearer realm="surveykit"'},
        )
    # exc.result is a Denied, which is falsy: test for the attribute, not the truth of the result.
    result = getattr(exc, "result", None)
    permission = getattr(result, "permission", None)
    if isinstance(result, AccessTokenDenied):
        audit.record_refusal(
            request,
            "access_token.refused",
            target=f"{request.method} {request.path}",
            reason="not_allowed",
            permission=str(permission),
        )
        return error_response(
            403,
            ErrorCode.ACCESS_TOKEN_NOT_ALLOWED,
            "a personal access token can only download exports; sign in for anything else",
        )
    audit.record_refusal(
        request,
        "authz.forbidden",
        target=f"{request.method} {request.path}",
        permission=str(permission) if permission is not None else None,
    )
    return error_response(403, ErrorCode.FORBIDDEN, "your grants do not allow this here")


# ------------------------------------------------------------------------------------------- auth


@view_config(route_name="auth_token", request_method="POST", renderer="json", permission=Permission.PUBLIC)
def login(request: Request) -> Any:
    body = json_body(request, schemas.LoginSchema())
    # The password is checked in short transactions of the service's own, before anything touches
    # request.dbsession: on SQLite, that session holds the write lock from its first statement.
    try:
        verified = services.authenticate(
            request.registry["dbsession_factory"],
            body["username"],
            body["password"],
            request.remote_addr,
            _policy(request),
            _throttle(request),
        )
        user = services.complete_login(request.dbsession, verified)
    except throttle.Throttled as throttled:
        return _throttled_response(request, throttled)
    except services.LoginRefused as refused:
        details = {"failure": refused.failure} if refused.failure else {}
        audit.record_in_request(
            request,
            "auth.login_failed",
            outcome="refused",
            actor=body["username"],
            target=body["username"],
            reason=refused.reason,
            **details,
        )
        if refused.reason in ("locked", "locked_now"):
            retry_after = max(1, int((refused.locked_until - utcnow()).total_seconds()))
            return error_response(
                401,
                ErrorCode.ACCOUNT_LOCKED,
                f"too many failed logins: the account is locked for {retry_after} more seconds",
                headers={"Retry-After": str(retry_after)},
            )
        return error_response(401, ErrorCode.INVALID_CREDENTIALS, "wrong username or password")
    pair = services.start_session(request.dbsession, user, _tokens(request), _policy(request))
    audit.record_in_request(request, "auth.login", actor=user.username, target=user.username)
    _secret_response(request)
    return pair.as_json(utcnow())


def _throttle(request: Request) -> throttle.ThrottlePolicy:
    return throttle.ThrottlePolicy.from_settings(request.registry.settings)


def _throttled_response(request: Request, throttled: throttle.Throttled) -> Response:
    if throttled.first:
        audit.record_in_request(
            request,
            "auth.throttled",
            outcome="refused",
            target=request.matched_route.name,
            limit=_throttle(request).limit(throttled.kind),
            window_seconds=_throttle(request).window_seconds,
        )
    return error_response(
        429,
        ErrorCode.TOO_MANY_REQUESTS,
        f"too many attempts from your address: try again in {throttled.retry_after} seconds",
        headers={"Retry-After": str(throttled.retry_after)},
    )


@view_config(route_name="auth_refresh", request_method="POST", renderer="json", permission=Permission.PUBLIC)
def refresh(request: Request) -> Any:
    body = json_body(request, schemas.RefreshSchema())
    try:
        pair = services.rotate_refresh_token(
            request.dbsession, body["refresh_token"], _tokens(request), _policy(request)
        )
    except services.RefreshRefused as refused:
        action = "auth.refresh_reuse_detected" if refused.reason == "reused" else "auth.refresh_refused"
        actor = _username(request, refused.user_id) or "anonymous"
        audit.record_in_request(
            request, action, outcome="refused", actor=actor, target=refused.session_id, reason=refused.reason
        )
        message = {
            "reused": "this refresh token was already used: the session has been ended; log in again",
            "expired": "the refresh token has expired; log in again",
        }.get(refused.reason, "the refresh token is not valid; log in again")
        return error_response(401, ErrorCode.REFRESH_REFUSED, message)
    audit.record_in_request(
        request, "auth.refresh", actor=_username(request, pair.user_id), target=pair.session_id
    )
    _secret_response(request)
    return pair.as_json(utcnow())


def _username(request: Request, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    return request.dbsession.scalar(select(User.username).where(User.id == user_id))


@view_config(route_name="auth_logout", request_method="POST", permission=Permission.PUBLIC)
def logout(request: Request) -> Response:
    body = json_body(request, schemas.LogoutSchema()) if request.body else {"refresh_token": None}
    ended = []
    if body["refresh_token"]:
        auth_session = services.end_session_by_refresh_token(request.dbsession, body["refresh_token"])
        if auth_session is not None:
            ended.append(auth_session.id)
    identity = request.identity
    if identity is not None:
        services.revoke_sessions(request.dbsession, _session_is(identity.session_id), "logout")
        ended.append(identity.session_id)
    if not ended:
        raise APIError(401, ErrorCode.UNAUTHENTICATED, "send a refresh token or an access token to log out")
    for session_id in sorted(set(ended)):
        audit.record_in_request(request, "auth.logout", target=session_id)
    return Response(status=204)


def _session_is(session_id: str) -> Any:
    from surveykit.accounts.models import AuthSession

    return AuthSession.id == session_id


@view_config(route_name="me", request_method="GET", renderer="json", permission=Permission.ACCOUNT_READ)
def me(request: Request) -> dict[str, Any]:
    identity: Identity = request.identity
    return {
        "username": identity.username,
        "device_id": identity.device_id,
        "grants": [_grant_json(grant) for grant in identity.grants],
    }


def _grant_json(grant: GrantScope) -> dict[str, Any]:
    return {
        "role": grant.role,
        "study": grant.study,
        "countries": list(grant.countries) if grant.countries is not None else "*",
    }


# ---------------------------------------------------------------------------------------- devices


def _manages(request: Request, device: Device, slugs: dict[int, str]) -> bool:
    """Whether the caller's coordinator and admin grants cover the device's whole scope."""
    return enrolment.manages(request.identity, device, slugs)


def _denied(request: Request, denied: enrolment.EnrolmentDenied, action: str, target: str | None) -> APIError:
    """The API's answer to a refused device action, audited when the refusal says so."""
    if denied.audit is not None:
        audit.record_refusal(request, action, target=target, **denied.audit)
    details = (
        [field_error(denied.field, denied.detail, denied.location)] if denied.field is not None else None
    )
    return APIError(denied.status, denied.code, denied.message, details)


@view_config(
    route_name="devices", request_method="POST", renderer="json", permission=Permission.DEVICES_ENROL
)
def enrol(request: Request) -> dict[str, Any]:
    body = json_body(request, schemas.EnrolSchema())
    try:
        enrolled = enrolment.enrol_for(
            request.dbsession,
            request.identity,
            body["username"],
            body["label"],
            _policy(request),
            body["study"],
            body["countries"],
        )
    except enrolment.EnrolmentDenied as denied:
        target = body["username"]
        raise _denied(request, denied, "device.enrol", target) from denied
    device, owner = enrolled.device, enrolled.owner
    answer = _enrolment_answer(request, device, owner.username, enrolled.code)
    audit.record_in_request(
        request,
        "device.enrol",
        target=device.id,
        owner=owner.username,
        label=device.label,
        scope=answer["device"]["scope"],
    )
    request.response.status = 201
    return answer


def _enrolment_answer(request: Request, device: Device, username: str, code: str) -> dict[str, Any]:
    server_url = request.registry.settings["surveykit.public_url"] or request.application_url
    _secret_response(request)
    return {
        "device": services.describe_device(device, username, services.study_slugs(request.dbsession)),
        "enrolment_code": code,
        "qr": enrolment.qr_code(services.enrolment_payload(server_url, code)),
    }


@view_config(
    route_name="device_activate", request_method="POST", renderer="json", permission=Permission.PUBLIC
)
def activate(request: Request) -> Any:
    body = json_body(request, schemas.ActivateSchema())
    try:
        services.admit_activation(
            request.registry["dbsession_factory"], request.remote_addr, _throttle(request)
        )
    except throttle.Throttled as throttled:
        return _throttled_response(request, throttled)
    try:
        activation = services.activate(request.dbsession, body["code"], _tokens(request), _policy(request))
    except services.EnrolmentRefused as refused:
        audit.record_in_request(
            request,
            "device.activate",
            outcome="refused",
            target=refused.device_id,
            reason=refused.reason,
            actor="anonymous",
        )
        message = {
            "expired": "the enrolment code has expired; ask your coordinator for a new one",
            "revoked": "this device was revoked before it was activated",
        }.get(refused.reason, "the enrolment code is unknown or was already used")
        return error_response(401, ErrorCode.ENROLMENT_REFUSED, message)
    device = activation.device
    details = (
        {"reenrolment": True, "sessions_ended": activation.sessions_ended} if activation.reenrolment else {}
    )
    audit.record_in_request(
        request, "device.activate", actor=f"device:{device.id}", target=device.id, **details
    )
    _secret_response(request)
    return {"device_id": device.id, **activation.pair.as_json(utcnow())}


@view_config(route_name="devices", request_method="GET", renderer="json", permission=Permission.DEVICES_READ)
def list_devices(request: Request) -> dict[str, Any]:
    query = query_params(request, schemas.DeviceQuerySchema())
    identity: Identity = request.identity
    statement = (
        select(Device, User.username)
        .join(User, User.id == Device.user_id)
        .order_by(User.username, Device.created_at)
    )
    if query["username"]:
        statement = statement.where(User.username == query["username"])
    slugs = services.study_slugs(request.dbsession)
    visible = []
    for device, username in request.dbsession.execute(statement):
        if device.user_id == identity.user_id or _manages(request, device, slugs):
            visible.append(services.describe_device(device, username, slugs))
    return {"devices": visible}


def _managed_device(request: Request, action: str) -> Device:
    """The device named in the URL, if the caller's grants cover its whole scope (404 unknown, 403
    out of scope)."""
    device_id = request.matchdict["device_id"]
    try:
        return enrolment.managed_device(request.dbsession, request.identity, device_id)
    except enrolment.EnrolmentDenied as denied:
        raise _denied(request, denied, action, device_id) from denied


@view_config(
    route_name="device", request_method="DELETE", renderer="json", permission=Permission.DEVICES_ENROL
)
def revoke(request: Request) -> dict[str, Any]:
    device = _managed_device(request, "device.revoke")
    services.revoke_device(request.dbsession, device)
    owner = request.dbsession.get(User, device.user_id)
    audit.record_in_request(request, "device.revoke", target=device.id, owner=owner.username)
    return services.describe_device(device, owner.username, services.study_slugs(request.dbsession))


@view_config(
    route_name="device_enrolment",
    request_method="POST",
    renderer="json",
    permission=Permission.DEVICES_ENROL,
)
def reenrol(request: Request) -> dict[str, Any]:
    """A new one-time enrolment code for an existing device: its activation keeps the device id."""
    device = _managed_device(request, "device.reenrol")
    try:
        code = enrolment.reenrol(request.dbsession, request.identity, device, _policy(request))
    except enrolment.EnrolmentDenied as denied:
        raise _denied(request, denied, "device.reenrol", device.id) from denied
    owner = request.dbsession.get(User, device.user_id)
    audit.record_in_request(
        request, "device.reenrol", target=device.id, owner=owner.username, label=device.label
    )
    return _enrolment_answer(request, device, owner.username, code)


# -------------------------------------------------------------------------------------- passwords


@view_config(
    route_name="me_password", request_method="POST", renderer="json", permission=Permission.ACCOUNT_UPDATE
)
def change_own_password(request: Request) -> Any:
    """The caller's new password; the caller's other login sessions end, this one goes on."""
    body = json_body(request, schemas.PasswordChangeSchema())
    identity: Identity = request.identity
    user = request.dbsession.get(User, identity.user_id)
    try:
        ended = services.change_own_password(
            request.dbsession,
            user,
            body["current_password"],
            body["new_password"],
            _policy(request),
            keep_session_id=identity.session_id,
            client_addr=request.remote_addr,
            throttle_policy=_throttle(request),
        )
    except services.AccountError as exc:
        raise APIError(
            422, ErrorCode.INVALID_INPUT, str(exc), [field_error(exc.field or "", str(exc))]
        ) from exc
    except throttle.Throttled as throttled:
        return _throttled_response(request, throttled)
    except services.PasswordChangeRefused as refused:
        # Answered, not raised: the counted attempt and its audit event must commit.
        audit.record_in_request(
            request, "user.password_change", outcome="refused", target=user.username, reason=refused.reason
        )
        if refused.locked_until is not None:
            retry_after = max(1, int((refused.locked_until - utcnow()).total_seconds()))
            return error_response(
                429,
                ErrorCode.ACCOUNT_LOCKED,
                f"too many wrong passwords: try again in {retry_after} seconds",
                [field_error("current_password", "too many wrong passwords")],
                headers={"Retry-After": str(retry_after)},
            )
        return error_response(
            422,
            ErrorCode.INVALID_INPUT,
            "the current password is wrong",
            [field_error("current_password", "wrong password")],
        )
    audit.record_in_request(
        request,
        "user.password_change",
        target=user.username,
        sessions_ended=ended.sessions_ended,
        access_tokens_revoked=ended.access_tokens_revoked,
    )
    return {
        "username": user.username,
        "sessions_ended": ended.sessions_ended,
        "access_tokens_revoked": ended.access_tokens_revoked,
    }


# ------------------------------------------------------------------------------- users (admins)


def named_user(request: Request) -> User:
    """The user named in the URL (``{username}``), or a 404 naming the path."""
    username = request.matchdict["username"]
    user = (
        request.dbsession.scalar(select(User).where(User.username == username))
        if len(username) <= 64
        else None
    )
    if user is None:
        raise APIError(
            404,
            ErrorCode.USER_NOT_FOUND,
            f"no user {username!r}",
            [field_error("username", "unknown user", "path")],
        )
    return user


@view_config(route_name="users", request_method="GET", renderer="json", permission=Permission.USERS_MANAGE)
def list_users(request: Request) -> dict[str, Any]:
    locked = services.locked_accounts(request.dbsession, _policy(request))
    return {
        "users": [
            services.describe_user(request.dbsession, user, locked.get(user.username))
            for user in services.list_users(request.dbsession)
        ]
    }


@view_config(route_name="user", request_method="GET", renderer="json", permission=Permission.USERS_MANAGE)
def get_user(request: Request) -> dict[str, Any]:
    user = named_user(request)
    locked = services.account_lock_state(request.dbsession, user.username, _policy(request))
    return services.describe_user(request.dbsession, user, locked)


@view_config(
    route_name="user_password", request_method="POST", renderer="json", permission=Permission.USERS_MANAGE
)
def reset_password(request: Request) -> dict[str, Any]:
    """A new password for the account, chosen by the admin or generated (answered once)."""
    body = json_body(request, schemas.PasswordResetSchema()) if request.body else {"password": None}
    user = named_user(request)
    try:
        reset = services.reset_password(request.dbsession, user, body["password"], _policy(request))
    except services.AccountError as exc:
        raise APIError(422, ErrorCode.INVALID_INPUT, str(exc), [field_error("password", str(exc))]) from exc
    audit.record_in_request(
        request,
        "user.password_reset",
        target=user.username,
        generated=reset.generated is not None,
        sessions_ended=reset.sessions_ended,
        lockouts_cleared=reset.lockouts_cleared,
        access_tokens_revoked=reset.access_tokens_revoked,
    )
    answer: dict[str, Any] = {
        "username": user.username,
        "sessions_ended": reset.sessions_ended,
        "lockouts_cleared": reset.lockouts_cleared,
        "access_tokens_revoked": reset.access_tokens_revoked,
    }
    if reset.generated is not None:
        _secret_response(request)
        answer["password"] = reset.generated
    return answer


@view_config(
    route_name="user_unlock", request_method="POST", renderer="json", permission=Permission.USERS_MANAGE
)
def unlock(request: Request) -> dict[str, Any]:
    user = named_user(request)
    was_locked = services.account_lock_state(request.dbsession, user.username, _policy(request))
    cleared = services.unlock_account(request.dbsession, user)
    audit.record_in_request(
        request,
        "user.unlock",
        target=user.username,
        was_locked_until=was_locked.isoformat() if was_locked else None,
        lockouts_cleared=cleared,
    )
    return services.describe_user(request.dbsession, user, None) | {"lockouts_cleared": cleared}


def _account_error(exc: services.AccountError, location: str = "body") -> APIError:
    return APIError(
        422, ErrorCode.INVALID_INPUT, str(exc), [field_error(exc.field or "", str(exc), location)]
    )


@view_config(route_name="users", request_method="POST", renderer="json", permission=Permission.USERS_MANAGE)
def create_user(request: Request) -> dict[str, Any]:
    """A new account, with the password given or a generated one (answered once); no grants yet."""
    body = json_body(request, schemas.UserCreateSchema())
    generated = services.generate_password() if body["password"] is None else None
    try:
        user = services.create_user(
            request.dbsession, body["username"], generated or body["password"], _policy(request)
        )
    except services.AccountError as exc:
        exists = isinstance(exc, services.AccountExists)
        status, code = (409, ErrorCode.CONFLICT) if exists else (422, ErrorCode.INVALID_INPUT)
        raise APIError(status, code, str(exc), [field_error(exc.field or "", str(exc))]) from exc
    audit.record_in_request(request, "user.create", target=user.username, generated=generated is not None)
    request.response.status = 201
    answer = services.describe_user(request.dbsession, user, None)
    if generated is not None:
        _secret_response(request)
        answer["password"] = generated
    return answer


@view_config(
    route_name="user_deactivate", request_method="POST", renderer="json", permission=Permission.USERS_MANAGE
)
def deactivate_user(request: Request) -> dict[str, Any]:
    """Refuse the account's logins and end all its sessions, its tablets' included."""
    user = named_user(request)
    if user.id == request.identity.user_id:
        raise APIError(
            422,
            ErrorCode.INVALID_INPUT,
            "you cannot deactivate your own account",
            [field_error("username", "your own account", "path")],
        )
    services.deactivate_user(request.dbsession, user)
    audit.record_in_request(request, "user.deactivate", target=user.username)
    locked = services.account_lock_state(request.dbsession, user.username, _policy(request))
    return services.describe_user(request.dbsession, user, locked)


@view_config(
    route_name="user_grants", request_method="POST", renderer="json", permission=Permission.USERS_MANAGE
)
def add_grant(request: Request) -> dict[str, Any]:
    body = json_body(request, schemas.GrantCreateSchema())
    user = named_user(request)
    try:
        grant = services.add_grant(
            request.dbsession, user, body["role"], body["study"], body["countries"], request.identity.actor
        )
    except services.AccountError as exc:
        raise _account_error(exc) from exc
    described = services.describe_grant(request.dbsession, grant)
    audit.record_in_request(request, "grant.add", target=user.username, **described)
    request.response.status = 201
    return described


@view_config(
    route_name="user_grant", request_method="DELETE", renderer="json", permission=Permission.USERS_MANAGE
)
def remove_grant(request: Request) -> dict[str, Any]:
    user = named_user(request)
    raw = request.matchdict["grant_id"]
    grant_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else None
    if grant_id is None:
        raise APIError(404, ErrorCode.NOT_FOUND, f"{user.username} has no grant {raw!r}")
    try:
        grant = services.remove_grant(request.dbsession, user, grant_id)
    except services.AccountError as exc:
        raise APIError(
            404, ErrorCode.NOT_FOUND, str(exc), [field_error("grant_id", str(exc), "path")]
        ) from exc
    audit.record_in_request(request, "grant.remove", target=user.username, grant=grant_id, role=grant.role)
    locked = services.account_lock_state(request.dbsession, user.username, _policy(request))
    request.dbsession.refresh(user)
    return services.describe_user(request.dbsession, user, locked)
