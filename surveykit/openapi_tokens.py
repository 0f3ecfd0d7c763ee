"""OpenAPI operations of personal access tokens: the caller's own (created, listed, revoked) and,
for admins, any account's (docs/accounts.md, "Personal access tokens").

``surveykit.openapi`` merges ``TOKEN_OPERATIONS`` into its table and documents the token's bearer
scheme (``ACCESS_TOKEN_SCHEME``) on the operations a token may call.
"""

from __future__ import annotations

from surveykit.accounts import schemas as accounts_schemas
from surveykit.openapi_shapes import DATETIME, INT, NULLABLE_DATETIME, STR, Operation, Reply, list_of, obj

ACCESS_TOKEN_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "skpat_<secret>",
    "description": (
        "a personal access token from POST /api/v1/account/access-tokens: read-only, for export "
        "downloads only (any other operation answers 403 `access_token_not_allowed`)"
    ),
}
ACCESS_TOKEN = obj(
    {
        "id": INT,
        "name": STR,
        "prefix": {**STR, "description": "the token's first characters, to recognise it"},
        "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
        "created_at": DATETIME,
        "expires_at": DATETIME,
        "last_used_at": {**NULLABLE_DATETIME, "description": "to the minute"},
        "revoked_at": NULLABLE_DATETIME,
    }
)
CREATED_ACCESS_TOKEN = {
    **ACCESS_TOKEN,
    "required": [*ACCESS_TOKEN["required"], "token"],
    "properties": {
        **ACCESS_TOKEN["properties"],
        "token": {**STR, "description": "the secret, `skpat_...`: shown in this answer only"},
    },
}
_TOKEN_ID = {"token_id": "^[0-9]{1,9}$"}
_USERNAME = {"username": "^[a-z0-9][a-z0-9._-]{2,63}$"}

TOKEN_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("access_tokens", "POST"): Operation(
        "Create a personal access token for unattended export downloads",
        "auth",
        {201: Reply("the token, with its secret shown this once", CREATED_ACCESS_TOKEN)},
        body=accounts_schemas.AccessTokenCreateSchema,
        errors=(409,),
        description=(
            "`expires_in_days` from 1 to 366 (default 90). An account holds at most 20 active tokens: "
            "one more is a 409. A tablet's session cannot create one."
        ),
    ),
    ("access_tokens", "GET"): Operation(
        "List the caller's personal access tokens (never their secrets)",
        "auth",
        {200: Reply("the tokens, newest first", list_of("access_tokens", ACCESS_TOKEN))},
    ),
    ("access_token", "DELETE"): Operation(
        "Revoke one of the caller's personal access tokens",
        "auth",
        {200: Reply("the token, revoked (revoking it again changes nothing)", ACCESS_TOKEN)},
        path_patterns=_TOKEN_ID,
        description="Another account's token is a 404.",
    ),
    ("user_access_tokens", "GET"): Operation(
        "List an account's personal access tokens (admins)",
        "users",
        {200: Reply("the tokens, newest first", list_of("access_tokens", ACCESS_TOKEN))},
        path_patterns=_USERNAME,
    ),
    ("user_access_token", "DELETE"): Operation(
        "Revoke an account's personal access token (admins)",
        "users",
        {200: Reply("the token, revoked", ACCESS_TOKEN)},
        path_patterns={**_USERNAME, **_TOKEN_ID},
    ),
}
