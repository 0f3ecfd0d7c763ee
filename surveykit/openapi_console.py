"""OpenAPI operations of the endpoints the web console relies on: changing one's own password,
accounts managed by admins (reset, unlock, lock state), and a study's fieldwork progress.

``surveykit.openapi`` merges ``CONSOLE_OPERATIONS`` into its table.
"""

from __future__ import annotations

from typing import Any

from surveykit.accounts import schemas as accounts_schemas
from surveykit.openapi_shapes import (
    BOOL,
    DATETIME,
    INT,
    NULLABLE_DATETIME,
    STR,
    Operation,
    Reply,
    list_of,
    obj,
)

COUNTRIES_OR_ALL = {"anyOf": [{"const": "*"}, {"type": "array", "items": STR}]}
USER_GRANT = obj({"id": INT, "role": STR, "study": STR, "countries": COUNTRIES_OR_ALL})
USER = obj(
    {
        "username": STR,
        "active": BOOL,
        "created_at": DATETIME,
        "last_login_at": NULLABLE_DATETIME,
        "locked_until": {
            **NULLABLE_DATETIME,
            "description": "until when too many failed logins lock the account from some address (the "
            "latest such time); null when it is not locked from anywhere",
        },
        "grants": {"type": "array", "items": USER_GRANT},
    }
)
ACTIVITY_PROGRESS = obj({"activity": STR, "planned": INT, "drafts": INT, "complete": INT, "withdrawn": INT})
TABLET_PROGRESS = obj(
    {
        "device_id": STR,
        "label": STR,
        "owner": STR,
        "last_sync_at": NULLABLE_DATETIME,
        "numbers_left": INT,
        "revoked": BOOL,
    }
)
COUNTRY_PROGRESS = obj(
    {
        "code": STR,
        "name": STR,
        "activities": {"type": "array", "items": ACTIVITY_PROGRESS},
        "withdrawn": INT,
        "open_conflicts": INT,
        "tablets": {"type": "array", "items": TABLET_PROGRESS},
    }
)

_USERNAME = {"username": "^[a-z0-9][a-z0-9._-]{2,63}$"}


def _user_answer(**extra: Any) -> dict[str, Any]:
    return {**USER, "properties": {**USER["properties"], **extra}}


CONSOLE_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("me_password", "POST"): Operation(
        "Change the caller's own password",
        "auth",
        {
            200: Reply(
                "the password is changed; the caller's other login sessions have ended",
                obj({"username": STR, "sessions_ended": INT, "access_tokens_revoked": INT}),
            )
        },
        body=accounts_schemas.PasswordChangeSchema,
        errors=(429,),
        description=(
            "The new password must meet the password policy (`new_password` in `details`). A wrong "
            "`current_password` is 422 and counts like a failed login, against the account's lockout "
            "from this address and the address's login throttle: once locked, 429 `account_locked` "
            "with Retry-After. Every other login session of the caller ends; this one and the "
            "caller's tablets go on. Tablet sessions may not call this (403)."
        ),
    ),
    ("users", "GET"): Operation(
        "List the accounts, with their grants and whether they are locked",
        "users",
        {200: Reply("every account, by username", list_of("users", USER))},
        description="Admins of every study only.",
    ),
    ("user", "GET"): Operation(
        "One account, with its grants and whether it is locked",
        "users",
        {200: Reply("the account", USER)},
        errors=(404,),
        path_patterns=_USERNAME,
    ),
    ("user_password", "POST"): Operation(
        "Give an account a new password (an admin's reset)",
        "users",
        {
            200: Reply(
                "the password is set; `password` is there (once) when the server generated it",
                obj(
                    {
                        "username": STR,
                        "sessions_ended": INT,
                        "lockouts_cleared": INT,
                        "access_tokens_revoked": INT,
                    },
                    password=STR,
                ),
            )
        },
        body=accounts_schemas.PasswordResetSchema,
        body_required=False,
        errors=(404,),
        path_patterns=_USERNAME,
        description=(
            'Send `{"password"}` to choose it, or no body for a generated one. Every login session of '
            "the account ends (its tablets go on) and its lockouts are cleared. Admins of every study only."
        ),
    ),
    ("user_unlock", "POST"): Operation(
        "Clear an account's login lockout, from every address",
        "users",
        {200: Reply("the account, now unlocked", _user_answer(lockouts_cleared=INT))},
        errors=(404,),
        path_patterns=_USERNAME,
    ),
    ("users", "POST"): Operation(
        "Create an account (no grants yet)",
        "users",
        {
            201: Reply(
                "the account; `password` is there (once) when the server generated it",
                _user_answer(password=STR),
            )
        },
        body=accounts_schemas.UserCreateSchema,
        errors=(409,),
        description=(
            "Send `password` to choose it (the password rules apply), or leave it out for a generated "
            "one. A taken username is 409 `conflict`. Admins of every study only."
        ),
    ),
    ("user_deactivate", "POST"): Operation(
        "Deactivate an account: its logins are refused and all its sessions end, its tablets' too",
        "users",
        {200: Reply("the account, now inactive", USER)},
        errors=(404,),
        path_patterns=_USERNAME,
        description="An admin cannot deactivate their own account (422).",
    ),
    ("user_grants", "POST"): Operation(
        "Give an account a role in a study (some or all of its countries), or in every study (admins)",
        "users",
        {201: Reply("the grant", USER_GRANT)},
        body=accounts_schemas.GrantCreateSchema,
        errors=(404,),
        path_patterns=_USERNAME,
        description=(
            "`study` null or left out: every study, for the `admin` role only. `countries` left out: "
            "every country of the study. An unknown study or country is 422 naming the field."
        ),
    ),
    ("user_grant", "DELETE"): Operation(
        "Remove one of an account's grants",
        "users",
        {200: Reply("the account without that grant", USER)},
        errors=(404,),
        path_patterns={**_USERNAME, "grant_id": "^[0-9]{1,9}$"},
    ),
    ("study_progress", "GET"): Operation(
        "Fieldwork progress of a study, country by country",
        "studies",
        {
            200: Reply(
                "for each country the caller's grants cover: per research activity the interviews "
                "planned in the registry, the records synced (draft, complete) and the withdrawn "
                "participants; open conflicts; each tablet's last sync and numbers left",
                obj(
                    {
                        "study": STR,
                        "generated_at": DATETIME,
                        "countries": {"type": "array", "items": COUNTRY_PROGRESS},
                    }
                ),
            )
        },
        errors=(404,),
        description="Coordinators, analysts and admins of the study.",
    ),
}
