"""Accounts: staff users, grants, token login with rotating refresh tokens, and field devices."""

from __future__ import annotations

from typing import Any

from pyramid.authorization import Allow, Authenticated, Deny, Everyone

from surveykit.security import Permission


class PublicResource:
    """Endpoints that establish who the caller is (login, refresh, device activation)."""

    __acl__ = [(Allow, Everyone, Permission.PUBLIC)]

    def __init__(self, request: Any) -> None:
        self.request = request


class AccountResource:
    # A tablet's session never changes its owner's password nor holds their access tokens: a lost
    # tablet is not its owner.
    __acl__ = [
        (Allow, Authenticated, Permission.ACCOUNT_READ),
        (Deny, "device", Permission.ACCOUNT_UPDATE),
        (Allow, Authenticated, Permission.ACCOUNT_UPDATE),
        (Deny, "device", Permission.ACCESS_TOKENS_MANAGE),
        (Allow, Authenticated, Permission.ACCESS_TOKENS_MANAGE),
    ]

    def __init__(self, request: Any) -> None:
        self.request = request


class DevicesResource:
    """Coordinators and admins enrol, re-enrol and revoke; whose devices is checked per fieldworker."""

    __acl__ = [
        (Allow, "role:coordinator", Permission.DEVICES_ENROL),
        (Allow, "role:admin", Permission.DEVICES_ENROL),
        (Allow, Authenticated, Permission.DEVICES_READ),
    ]

    def __init__(self, request: Any) -> None:
        self.request = request


class UsersResource:
    """Accounts are managed by admins of every study."""

    __acl__ = [(Allow, "role:admin:*", Permission.USERS_MANAGE)]

    def __init__(self, request: Any) -> None:
        self.request = request


def includeme(config: Any) -> None:
    config.add_route("auth_token", "/api/v1/auth/token", factory=PublicResource)
    config.add_route("auth_refresh", "/api/v1/auth/refresh", factory=PublicResource)
    config.add_route("auth_logout", "/api/v1/auth/logout", factory=PublicResource)
    config.add_route("me", "/api/v1/me", factory=AccountResource)
    config.add_route("me_password", "/api/v1/me/password", factory=AccountResource)
    config.add_route("users", "/api/v1/users", factory=UsersResource)
    config.add_route("user", "/api/v1/users/{username}", factory=UsersResource)
    config.add_route("user_password", "/api/v1/users/{username}/password", factory=UsersResource)
    config.add_route("user_unlock", "/api/v1/users/{username}/unlock", factory=UsersResource)
    config.add_route("user_deactivate", "/api/v1/users/{username}/deactivate", factory=UsersResource)
    config.add_route("user_grants", "/api/v1/users/{username}/grants", factory=UsersResource)
    config.add_route("user_grant", "/api/v1/users/{username}/grants/{grant_id}", factory=UsersResource)
    config.add_route("user_access_tokens", "/api/v1/users/{username}/access-tokens", factory=UsersResource)
    config.add_route(
        "user_access_token", "/api/v1/users/{username}/access-tokens/{token_id}", factory=UsersResource
    )
    config.add_route("access_tokens", "/api/v1/account/access-tokens", factory=AccountResource)
    config.add_route("access_token", "/api/v1/account/access-tokens/{token_id}", factory=AccountResource)
    config.add_route("devices", "/api/v1/devices", factory=DevicesResource)
    config.add_route("device_activate", "/api/v1/devices/activate", factory=PublicResource)
    config.add_route("device", "/api/v1/devices/{device_id}", factory=DevicesResource)
    config.add_route("device_enrolment", "/api/v1/devices/{device_id}/enrolment", factory=DevicesResource)
    config.scan(".views")
    config.scan(".access_token_views")
