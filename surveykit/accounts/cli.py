"""``surveykit users|devices|audit``: thin shells over the services, each change audited.

(``surveykit studies`` lives in ``surveykit.studies.cli``.)
"""

from __future__ import annotations

import secrets
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from surveykit.accounts import services
from surveykit.accounts.access_token_cli import access_token_group
from surveykit.accounts.models import Device, User
from surveykit.audit import services as audit
from surveykit.terminal import echo_json, format_table, json_option, operator


def _policy(obj: Any) -> services.AccountPolicy:
    return services.AccountPolicy.from_settings(obj.settings)


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


# ----------------------------------------------------------------------------------------- users


@click.group("users")
def users_group() -> None:
    """Staff accounts and their grants."""


users_group.add_command(access_token_group)


@users_group.command("add")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_obj
def users_add(obj: Any, username: str, password_stdin: bool) -> None:
    """Create an account; without --password-stdin a random password is printed once."""
    obj.require_schema()
    generated = not password_stdin
    password = secrets.token_urlsafe(15) if generated else sys.stdin.readline().rstrip("\r\n")
    try:
        with obj.session() as session:
            services.create_user(session, username, password, _policy(obj))
            audit.record(session, "user.create", actor=operator(), target=username)
    except services.AccountError as exc:
        raise _fail(exc) from exc
    click.echo(f"user {username} created")
    if generated:
        click.echo(f"password (shown once): {password}")


@users_group.command("list")
@json_option()
@click.pass_obj
def users_list(obj: Any, as_json: bool) -> None:
    """Accounts with their status and grants (grant ids for `users revoke`)."""
    obj.require_schema()
    with obj.session() as session:
        rows = [["username", "status", "grants"]]
        described = []
        locked = services.locked_accounts(session, _policy(obj))
        for user in services.list_users(session):
            grants = [services.describe_grant(session, grant) for grant in user.grants]
            locked_until = locked.get(user.username)
            described.append(
                {
                    "username": user.username,
                    "active": user.active,
                    "locked_until": locked_until.isoformat() if locked_until else None,
                    "grants": grants,
                }
            )
            text = "; ".join(
                f"#{g['id']} {g['role']} {g['study']}:"
                f"{','.join(g['countries']) if isinstance(g['countries'], list) else '*'}"
                for g in grants
            )
            status = "active" if user.active else "deactivated"
            if locked_until is not None:
                status += f", locked until {locked_until:%H:%M} UTC"
            rows.append([user.username, status, text or "-"])
    if as_json:
        echo_json({"users": described})
        return
    click.echo(format_table(rows) if len(rows) > 1 else "no users")


@users_group.command("grant")
@click.argument("username")
@click.argument("role", type=click.Choice(["admin", "coordinator", "analyst", "fieldworker"]))
@click.option("--study", help="Study slug; omit only with --all-studies (admins).")
@click.option("--all-studies", is_flag=True, help="Admin of every study.")
@click.option("--country", "countries", multiple=True, help="Country code (repeatable); none: all countries.")
@click.pass_obj
def users_grant(
    obj: Any, username: str, role: str, study: str | None, all_studies: bool, countries: tuple[str, ...]
) -> None:
    """Give USERNAME the ROLE in one study (optionally only some countries) or in every study."""
    if bool(study) == all_studies:
        raise click.UsageError("give either --study SLUG or --all-studies")
    obj.require_schema()
    try:
        with obj.session() as session:
            user = services.get_user(session, username)
            grant = services.add_grant(session, user, role, study, list(countries) or None, operator())
            described = services.describe_grant(session, grant)
            audit.record(session, "grant.add", actor=operator(), target=username, details=described)
    except services.AccountError as exc:
        raise _fail(exc) from exc
    click.echo(
        f"granted #{described['id']}: {username} is {role} in {described['study']} "
        f"for {described['countries'] if described['countries'] == '*' else ','.join(described['countries'])}"
    )


@users_group.command("revoke")
@click.argument("username")
@click.argument("grant_id", type=int)
@click.pass_obj
def users_revoke(obj: Any, username: str, grant_id: int) -> None:
    """Remove grant GRANT_ID (see `users list`) from USERNAME."""
    obj.require_schema()
    try:
        with obj.session() as session:
            user = services.get_user(session, username)
            grant = services.remove_grant(session, user, grant_id)
            audit.record(
                session,
                "grant.remove",
                actor=operator(),
                target=username,
                details={"grant": grant_id, "role": grant.role},
            )
    except services.AccountError as exc:
        raise _fail(exc) from exc
    click.echo(f"grant #{grant_id} removed from {username}")


@users_group.command("deactivate")
@click.argument("username")
@click.pass_obj
def users_deactivate(obj: Any, username: str) -> None:
    """Refuse the account's logins and end its sessions (its devices stop working at once)."""
    obj.require_schema()
    try:
        with obj.session() as session:
            services.deactivate_user(session, services.get_user(session, username))
            audit.record(session, "user.deactivate", actor=operator(), target=username)
    except services.AccountError as exc:
        raise _fail(exc) from exc
    click.echo(f"{username} deactivated")


@users_group.command("set-password")
@click.argument("username")
@click.option("--generate", is_flag=True, help="Generate a password and print it once.")
@click.pass_obj
def users_set_password(obj: Any, username: str, generate: bool) -> None:
    """Give USERNAME a new password (asked twice, or generated): their login sessions end and their
    lockouts are cleared; their tablets keep working."""
    obj.require_schema()
    password = None if generate else click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        with obj.session() as session:
            user = services.get_user(session, username)
            reset = services.reset_password(session, user, password, _policy(obj))
            audit.record(
                session,
                "user.password_reset",
                actor=operator(),
                target=username,
                details={
                    "generated": reset.generated is not None,
                    "sessions_ended": reset.sessions_ended,
                    "lockouts_cleared": reset.lockouts_cleared,
                    "access_tokens_revoked": reset.access_tokens_revoked,
                },
            )
    except services.AccountError as exc:
        raise _fail(exc) from exc
    click.echo(
        f"password of {username} changed; {reset.sessions_ended} login session(s) ended, "
        f"{reset.access_tokens_revoked} personal access token(s) revoked"
    )
    if reset.generated is not None:
        click.echo(f"password (shown once): {reset.generated}")


@users_group.command("unlock")
@click.argument("username")
@click.pass_obj
def users_unlock(obj: Any, username: str) -> None:
    """Clear USERNAME's login lockout, from every address."""
    obj.require_schema()
    try:
        with obj.session() as session:
            user = services.get_user(session, username)
            was_locked = services.account_lock_state(session, username, _policy(obj))
            cleared = services.unlock_account(session, user)
            audit.record(
                session,
                "user.unlock",
                actor=operator(),
                target=username,
                details={
                    "was_locked_until": was_locked.isoformat() if was_locked else None,
                    "lockouts_cleared": cleared,
                },
            )
    except services.AccountError as exc:
        raise _fail(exc) from exc
    if was_locked:
        click.echo(f"{username} unlocked (was locked until {was_locked:%Y-%m-%d %H:%M:%S} UTC)")
    else:
        click.echo(f"{username} was not locked; {cleared} attempt counter(s) cleared")


def ensure_first_admin(session: Any, policy: services.AccountPolicy, password: str) -> tuple[str, str] | None:
    """Create an ``admin`` account for every study when no admin exists yet."""
    if services.has_admin(session):
        return None
    username = "admin"
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise click.ClickException(
            "no active admin exists and the username 'admin' is taken: grant admin "
            "with `surveykit users grant NAME admin --all-studies`"
        )
    password = password or secrets.token_urlsafe(15)
    user = services.create_user(session, username, password, policy)
    services.add_grant(session, user, "admin", None, None, "surveykit serve (first start)")
    audit.record(session, "user.create", actor="surveykit serve (first start)", target=username)
    return username, password


# --------------------------------------------------------------------------------------- devices


@click.group("devices")
def devices_group() -> None:
    """Field devices (tablets): enrol, re-enrol, list, revoke."""


@devices_group.command("enrol")
@click.argument("username")
@click.option("--label", required=True, help="How people recognise the tablet, e.g. 'KE tablet 3'.")
@click.option("--study", help="Bind the tablet to this study only (default: every study of the owner).")
@click.option(
    "--country",
    "countries",
    multiple=True,
    help="Bind the tablet to this country of --study only (repeatable; default: all the owner's).",
)
@click.option("--server-url", help="URL the tablet reaches the server at (default: SURVEYKIT_PUBLIC_URL).")
@click.option("--qr-png", type=click.Path(dir_okay=False, writable=True), help="Write the QR code as PNG.")
@click.option("--qr-svg", type=click.Path(dir_okay=False, writable=True), help="Write the QR code as SVG.")
@json_option("Print the device, its code and its expiry as JSON, for scripts.")
@click.pass_obj
def devices_enrol(
    obj: Any,
    username: str,
    label: str,
    study: str | None,
    countries: tuple[str, ...],
    server_url: str | None,
    qr_png: str | None,
    qr_svg: str | None,
    as_json: bool,
) -> None:
    """Enrol a tablet for fieldworker USERNAME and print its one-time enrolment code.

    The tablet reaches what USERNAME's fieldworker grants cover, within --study and --country when
    given, and never more, even if grants are added later.
    """
    obj.require_schema()
    server_url = server_url or obj.settings["surveykit.public_url"] or "http://127.0.0.1:6543"
    try:
        with obj.session() as session:
            owner = services.get_user(session, username)
            scope = services.enrolment_scope(session, owner, None, study, list(countries) or None)
            device, code = services.enrol_device(session, owner, label, operator(), _policy(obj), scope=scope)
            slugs = services.study_slugs(session)
            audit.record(
                session,
                "device.enrol",
                actor=operator(),
                target=device.id,
                details={"owner": username, "label": label, "scope": services.describe_scope(scope, slugs)},
            )
            bound = services.scope_by_slug(scope, slugs)
            described = services.describe_device(device, username, slugs)
    except services.AccountError as exc:
        raise _fail(exc) from exc
    written = _write_qr(server_url, code, qr_png, qr_svg, quiet=as_json)
    if as_json:
        echo_json(_enrolment_json(described, device, code, server_url, written))
        return
    click.echo(f"device {device.id} enrolled for {username} ({label})")
    click.echo(f"scope: {_scope_text(bound)}")
    click.echo(f"enrolment code: {code}  (one use, expires {device.enrolment_expires_at:%Y-%m-%d %H:%M} UTC)")


def _scope_text(scope: list[tuple[str, tuple[str, ...] | None]]) -> str:
    return "; ".join(
        f"{study} {', '.join(countries) if countries is not None else '(all countries)'}"
        for study, countries in scope
    )


def _enrolment_json(
    described: dict[str, Any], device: Device, code: str, server_url: str, written: dict[str, str]
) -> dict[str, Any]:
    return {
        "device": described,
        "enrolment_code": code,
        "enrolment_expires_at": device.enrolment_expires_at.isoformat(),
        "qr_payload": services.enrolment_payload(server_url, code),
        "qr_files": written,
    }


def _write_qr(
    server_url: str, code: str, qr_png: str | None, qr_svg: str | None, quiet: bool = False
) -> dict[str, str]:
    """Write the requested QR code files; returns ``{kind: absolute path}`` of those written."""
    import segno

    qr = segno.make(services.enrolment_payload(server_url, code), error="m")
    written = {}
    for path, kind in ((qr_png, "png"), (qr_svg, "svg")):
        if path:
            qr.save(path, kind=kind, scale=8, border=4)
            written[kind] = str(Path(path).resolve())
            if not quiet:
                click.echo(f"QR code written to {written[kind]}")
    return written


@devices_group.command("reenrol")
@click.argument("device_id")
@click.option("--server-url", help="URL the tablet reaches the server at (default: SURVEYKIT_PUBLIC_URL).")
@click.option("--qr-png", type=click.Path(dir_okay=False, writable=True), help="Write the QR code as PNG.")
@click.option("--qr-svg", type=click.Path(dir_okay=False, writable=True), help="Write the QR code as SVG.")
@json_option("Print the device, its new code and its expiry as JSON, for scripts.")
@click.pass_obj
def devices_reenrol(
    obj: Any, device_id: str, server_url: str | None, qr_png: str | None, qr_svg: str | None, as_json: bool
) -> None:
    """Print a new one-time enrolment code for DEVICE_ID, keeping its device id and number blocks.

    For a tablet whose session ended (a refresh answer lost, an expired refresh token): activating
    the code ends every earlier session of the device and starts a new one for the same device.
    """
    obj.require_schema()
    server_url = server_url or obj.settings["surveykit.public_url"] or "http://127.0.0.1:6543"
    try:
        with obj.session() as session:
            device = session.get(Device, device_id) if len(device_id) <= 36 else None
            if device is None:
                raise click.ClickException(f"no device {device_id!r}")
            code = services.reenrol_device(session, device, operator(), _policy(obj))
            owner = session.get(User, device.user_id).username
            audit.record(
                session,
                "device.reenrol",
                actor=operator(),
                target=device.id,
                details={"owner": owner, "label": device.label},
            )
            described = services.describe_device(device, owner, services.study_slugs(session))
    except services.ReenrolmentRefused as exc:
        with obj.session() as session:
            audit.record(
                session,
                "device.reenrol",
                actor=operator(),
                target=device_id,
                outcome="refused",
                details={"reason": exc.reason},
            )
        raise click.ClickException(
            f"device {device_id} was revoked and stays revoked; enrol a new device instead"
        ) from exc
    except services.AccountError as exc:
        raise _fail(exc) from exc
    written = _write_qr(server_url, code, qr_png, qr_svg, quiet=as_json)
    if as_json:
        echo_json(_enrolment_json(described, device, code, server_url, written))
        return
    click.echo(f"device {device.id} re-enrolled for {owner} ({device.label})")
    click.echo(f"enrolment code: {code}  (one use, expires {device.enrolment_expires_at:%Y-%m-%d %H:%M} UTC)")
    click.echo("activating it ends the device's current session; its device id and number blocks stay")


@devices_group.command("list")
@click.option("--user", "username", help="Only this fieldworker's devices.")
@json_option()
@click.pass_obj
def devices_list(obj: Any, username: str | None, as_json: bool) -> None:
    """Tablets with their owner, label, status and when they were last seen."""
    obj.require_schema()
    with obj.session() as session:
        statement = select(Device, User.username).join(User, User.id == Device.user_id)
        if username:
            statement = statement.where(User.username == username)
        rows = [["id", "user", "label", "status", "last seen"]]
        described = []
        slugs = services.study_slugs(session)
        for device, owner in session.execute(statement.order_by(User.username, Device.created_at)):
            seen = device.last_seen_at.strftime("%Y-%m-%d %H:%M") if device.last_seen_at else "never"
            rows.append([device.id, owner, device.label, device.status, seen])
            described.append(services.describe_device(device, owner, slugs))
    if as_json:
        echo_json({"devices": described})
        return
    click.echo(format_table(rows) if len(rows) > 1 else "no devices")


@devices_group.command("revoke")
@click.argument("device_id")
@click.pass_obj
def devices_revoke(obj: Any, device_id: str) -> None:
    """Refuse DEVICE_ID's tokens from its very next request."""
    obj.require_schema()
    with obj.session() as session:
        device = session.get(Device, device_id)
        if device is None:
            raise click.ClickException(f"no device {device_id!r}")
        services.revoke_device(session, device)
        audit.record(session, "device.revoke", actor=operator(), target=device_id)
    click.echo(f"device {device_id} revoked")


# ----------------------------------------------------------------------------------------- audit


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    from datetime import UTC

    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.command("audit")
@click.option("--actor", help="Only events by this actor (a username, or cli:<user>).")
@click.option("--action", help="Exact action, or a family such as 'auth.*'.")
@click.option("--since", help="ISO date or time (UTC unless a zone is given).")
@click.option("--until", help="ISO date or time, exclusive.")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Show at most this many events.",
)
@json_option()
@click.pass_obj
def audit_command(
    obj: Any,
    actor: str | None,
    action: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the audit log, newest first."""
    obj.require_schema()
    try:
        since_at, until_at = _when(since), _when(until)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if since_at is not None and until_at is not None and since_at >= until_at:
        # As the API refuses it: an empty window is a mistake, not "no events".
        raise click.BadParameter("must be later than --since", param_hint="--until")
    with obj.session() as session:
        events = audit.query(session, actor=actor, action=action, since=since_at, until=until_at, limit=limit)
        if as_json:
            echo_json({"events": audit.as_json(events)})
            return
        rows = [["at", "action", "outcome", "actor", "target", "details"]]
        for event in events:
            rows.append(
                [
                    event.at.strftime("%Y-%m-%d %H:%M:%S"),
                    event.action,
                    event.outcome,
                    event.actor,
                    event.target or "",
                    ", ".join(f"{k}={v}" for k, v in sorted(event.details.items())),
                ]
            )
    click.echo(format_table(rows) if len(rows) > 1 else "no events")


COMMANDS = [users_group, devices_group, audit_command]
