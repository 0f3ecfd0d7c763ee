"""Permission names, and the security policy every request goes through.

Every API view declares one ``Permission``; a view that forgets gets ``UNDECLARED``, which no ACL
grants, so a new route stays closed until someone decides who may call it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Permission(StrEnum):
    PUBLIC = "public"
    ACCOUNT_READ = "account.read"
    ACCOUNT_UPDATE = "account.update"
    # Creating, listing and revoking one's own personal access tokens.
    ACCESS_TOKENS_MANAGE = "access_tokens.manage"
    INSTRUMENTS_READ = "instruments.read"
    INSTRUMENTS_VALIDATE = "instruments.validate"
    INSTRUMENTS_PUBLISH = "instruments.publish"
    DEVICES_ENROL = "devices.enrol"
    DEVICES_READ = "devices.read"
    AUDIT_READ = "audit.read"
    USERS_MANAGE = "users.manage"
    STUDIES_READ = "studies.read"
    STUDIES_CREATE = "studies.create"
    STUDIES_CONFIGURE = "studies.configure"
    PROGRESS_READ = "progress.read"
    PARTICIPANTS_READ = "participants.read"
    PARTICIPANTS_WRITE = "participants.write"
    BLOCKS_RESERVE = "blocks.reserve"
    BLOCKS_READ = "blocks.read"
    SYNC_PUSH = "sync.push"
    SYNC_PULL = "sync.pull"
    CONFLICTS_READ = "conflicts.read"
    CONFLICTS_RESOLVE = "conflicts.resolve"
    EXPORTS_READ = "exports.read"
    # Qualitative analysis (surveykit/analysis): reading the codebook and codings, coding passages,
    # editing the codebook.
    ANALYSIS_READ = "analysis.read"
    ANALYSIS_CODE = "analysis.code"
    CODEBOOK_EDIT = "codebook.edit"
    # The default for views that declare nothing: granted to no one.
    UNDECLARED = "undeclared"


# What a personal access token (surveykit/accounts/access_tokens.py) may do, and the one place that
# says so: read-only downloads of exports (the workbook, its CSV and statistics files, the REFI-QDA
# project), which all carry EXPORTS_READ. The security policy refuses a token
# every other permission and every other method, whatever the route.
ACCESS_TOKEN_PERMISSIONS = frozenset({Permission.EXPORTS_READ})
ACCESS_TOKEN_METHODS = frozenset({"GET", "HEAD"})


def access_token_may(method: str, permission: str) -> bool:
    return method in ACCESS_TOKEN_METHODS and permission in ACCESS_TOKEN_PERMISSIONS


def includeme(config: Any) -> None:
    from surveykit.accounts.policy import TokenSecurityPolicy
    from surveykit.accounts.tokens import TokenSettings

    settings = config.get_settings()
    # Only Python code (the authorisation benchmark) can hand in another policy; an .ini cannot.
    policy = settings.get("surveykit.security_policy")
    if policy is None or isinstance(policy, str):
        policy = TokenSecurityPolicy(TokenSettings.from_settings(settings), access_token_may)
    config.set_security_policy(policy)
    config.set_default_permission(Permission.UNDECLARED)
