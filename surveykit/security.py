"""Who the caller is and what they may do: the Pyramid 2 security policy and the permission names.

Every API view declares one ``Permission``; a view that forgets gets ``UNDECLARED``, which no ACL
grants, so a new route is closed until someone decides who may call it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pyramid.authorization import ACLHelper, Authenticated, Everyone
from pyramid.request import Request


class Permission(StrEnum):
    INSTRUMENTS_READ = "instruments.read"
    INSTRUMENTS_VALIDATE = "instruments.validate"
    INSTRUMENTS_PUBLISH = "instruments.publish"
    PUBLIC = "public"
    # The default for views that declare nothing: granted to no one.
    UNDECLARED = "undeclared"


class SecurityPolicy:
    """Bearer-token security policy; until accounts exist every caller is anonymous."""

    def __init__(self) -> None:
        self.acl = ACLHelper()

    def identity(self, request: Request) -> Any:
        return None

    def authenticated_userid(self, request: Request) -> str | None:
        identity = request.identity
        return None if identity is None else str(identity.user_id)

    def principals(self, request: Request) -> list[str]:
        principals = [Everyone]
        if request.identity is not None:
            principals.append(Authenticated)
        return principals

    def permits(self, request: Request, context: Any, permission: str) -> Any:
        return self.acl.permits(context, self.principals(request), permission)

    def remember(self, request: Request, userid: str, **kw: Any) -> list[tuple[str, str]]:
        return []

    def forget(self, request: Request, **kw: Any) -> list[tuple[str, str]]:
        return []


def includeme(config: Any) -> None:
    config.set_security_policy(SecurityPolicy())
    config.set_default_permission(Permission.UNDECLARED)
