"""``surveykit users access-token create|list|revoke``: personal access tokens at the server's
command line, for an operator setting one up for someone, or revoking one at once."""

from __future__ import annotations

from typing import Any

import click

from surveykit.accounts import access_tokens, services
from surveykit.audit import services as audit
from surveykit.terminal import echo_json, format_table, json_option, operator


@click.group("access-token")
def access_token_group() -> None:
    """Personal access tokens (read-only, export downloads only)."""


@access_token_group.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What uses the token, e.g. 'Kenya workbook in Excel'.")
@click.option(
    "--days",
    type=click.IntRange(1, access_tokens.MAX_DAYS),
    default=access_tokens.DEFAULT_DAYS,
    show_default=True,
    help="Days until it expires.",
)
@json_option()
@click.pass_obj
def create(obj: Any, username: str, name: str, days: int, as_json: bool) -> None:
    """A new token of USERNAME; the secret is printed once."""
    obj.require_schema()
    try:
        with obj.session() as session:
            owner = services.get_user(session, username)
            created = access_tokens.create_access_token(session, owner, name, days, operator())
            token = created.token
            described = access_tokens.describe_access_token(token)
            audit.record(
                session,
                "access_token.created",
                actor=operator(),
                target=username,
                details={"token": token.id, "prefix": token.prefix, "name": token.name},
            )
    except (services.AccountError, access_tokens.AccessTokenError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json({**described, "token": created.secret})
        return
    click.echo(f"token #{described['id']} of {username} created, expires {described['expires_at'][:10]}")
    click.echo(f"token (shown once): {created.secret}")


@access_token_group.command("list")
@click.argument("username")
@json_option()
@click.pass_obj
def list_tokens(obj: Any, username: str, as_json: bool) -> None:
    """USERNAME's tokens (never their secrets)."""
    obj.require_schema()
    try:
        with obj.session() as session:
            owner = services.get_user(session, username)
            described = [
                access_tokens.describe_access_token(token)
                for token in access_tokens.list_access_tokens(session, owner)
            ]
    except services.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json({"access_tokens": described})
        return
    rows = [["id", "name", "token", "status", "expires", "last used"]]
    for token in described:
        last = token["last_used_at"][:16].replace("T", " ") if token["last_used_at"] else "never"
        rows.append(
            [
                str(token["id"]),
                token["name"],
                f"{token['prefix']}...",
                token["status"],
                token["expires_at"][:10],
                last,
            ]
        )
    click.echo(format_table(rows) if len(rows) > 1 else f"{username} has no access tokens")


@access_token_group.command("revoke")
@click.argument("username")
@click.argument("token_id", type=int)
@click.pass_obj
def revoke(obj: Any, username: str, token_id: int) -> None:
    """Revoke USERNAME's token TOKEN_ID (see `list`): it stops working at once."""
    obj.require_schema()
    try:
        with obj.session() as session:
            owner = services.get_user(session, username)
            token = access_tokens.get_access_token(session, owner, token_id)
            if access_tokens.revoke_access_token(session, token, operator()):
                audit.record(
                    session,
                    "access_token.revoked",
                    actor=operator(),
                    target=username,
                    details={"token": token.id, "prefix": token.prefix},
                )
    except services.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    except access_tokens.AccessTokenNotFound as exc:
        raise click.ClickException(f"{username} has no access token #{token_id}") from exc
    click.echo(f"access token #{token_id} of {username} revoked")
