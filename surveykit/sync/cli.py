"""``surveykit sync push-file``: push a tablet's backup file (the field app's "Download backup",
in the sync batch format of docs/sync.md) on behalf of the device that made it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import colander

from surveykit.accounts.identity import device_grants
from surveykit.accounts.models import Device, User
from surveykit.audit import services as audit
from surveykit.sync import schemas
from surveykit.sync.callers import Caller
from surveykit.sync.push import push_batch
from surveykit.sync.receipts import RESULTS
from surveykit.terminal import echo_json, format_table, json_option, operator


class BackupRefused(click.ClickException):
    pass


def read_backup(path: Path) -> list[dict[str, Any]]:
    """The changes of a backup file, checked like the body of ``POST /api/v1/sync``."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BackupRefused(f"{path.name} is not a JSON sync batch: {exc}") from exc
    try:
        body = schemas.SyncBatchSchema().deserialize(data)
    except colander.Invalid as exc:
        problems = "; ".join(f"{key or 'body'}: {message}" for key, message in exc.asdict().items())
        raise BackupRefused(f'{path.name} is not a sync batch ({{"changes": [...]}}): {problems}') from exc
    return body["changes"]


def device_caller(session: Any, device_id: str) -> Caller:
    device = session.get(Device, device_id)
    if device is None:
        raise BackupRefused(f"no device {device_id!r} (surveykit devices list shows them)")
    owner = session.get(User, device.user_id)
    return Caller(owner.id, owner.username, device.id, device_grants(session, device))


def push_file(
    session_scope: Any, path: Path, device_id: str, batch_size: int, actor: str
) -> list[dict[str, Any]]:
    """Push every change of the file as the device would, ``batch_size`` changes per transaction.

    Decisions are the protocol's own (docs/sync.md, "Results"): a change already stored answers
    ``unchanged`` with its receipt, so pushing a file twice, or a file whose tablet later synced
    itself, creates nothing twice."""
    changes = read_backup(path)
    with session_scope() as session:
        device_caller(session, device_id)  # an unknown device is refused before anything else
    results: list[dict[str, Any]] = []
    from tqdm import tqdm

    with tqdm(
        total=len(changes), desc="pushing", unit="change", file=sys.stderr, disable=None, leave=False
    ) as bar:
        for start in range(0, len(changes), batch_size):
            batch = changes[start : start + batch_size]
            with session_scope() as session:
                caller = device_caller(session, device_id)
                outcome = push_batch(session, caller, batch)
                audit.record(
                    session,
                    "sync.batch",
                    actor=actor,
                    target=",".join(
                        sorted(
                            {
                                str(c["record"].get("study"))
                                for c in batch
                                if isinstance(c.get("record"), dict)
                            }
                        )
                    )[:300],
                    device_id=device_id,
                    details={
                        "changes": len(batch),
                        "counts": outcome.counts,
                        "via": "push-file",
                        "file": path.name,
                    },
                )
                if outcome.reanchoring is not None and outcome.reanchoring.flagged:
                    # As the sync views do: one event per batch whose revisions moved or vanished codings.
                    audit.record(
                        session,
                        "coding.reanchored",
                        actor=actor,
                        device_id=device_id,
                        details={
                            **outcome.reanchoring.audit_details(),
                            "via": "push-file",
                            "file": path.name,
                        },
                    )
                for result in outcome.as_json()["results"]:
                    result["index"] += start
                    results.append(result)
            bar.update(len(batch))
    return results


def results_table(results: list[dict[str, Any]]) -> str:
    rows = [["#", "uuid", "result", "revision", "detail"]]
    for r in results:
        detail = ""
        if r["result"] == "conflict":
            detail = f"kept as conflict {r['conflict_id']} ({r['conflict_status']})"
        elif r["result"] == "rejected":
            paths = ", ".join(e["path"] for e in r.get("errors", [])[:3])
            detail = f"{r.get('code')}: {paths}" if paths else str(r.get("code"))
        rows.append([str(r["index"]), r["uuid"], r["result"], str(r.get("revision") or "-"), detail])
    return format_table(rows)


@click.group("sync")
def sync_group() -> None:
    """Sync from the command line: push a tablet's backup file."""


@sync_group.command("push-file")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--device", "device_id", required=True, help="The device that made the file (its id is in the file name)."
)
@click.option(
    "--batch-size",
    default=100,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Changes per transaction.",
)
@json_option()
@click.pass_obj
def push_file_command(obj: Any, file: Path, device_id: str, batch_size: int, as_json: bool) -> None:
    """Push FILE, a field app backup (docs/field-app.md), as if DEVICE sent it.

    Each change is decided exactly as a tablet's push is (docs/sync.md): created, updated, unchanged
    (already stored: nothing new), conflict (kept for a coordinator) or rejected (nothing stored).
    Pushing the same file again stores nothing twice."""
    obj.require_schema()
    results = push_file(obj.session, file, device_id.strip().lower(), batch_size, operator())
    counts = {name: sum(1 for r in results if r["result"] == name) for name in RESULTS}
    if as_json:
        echo_json({"results": results, "counts": counts})
        return
    if results:
        click.echo(results_table(results))
    click.echo(", ".join(f"{counts[name]} {name}" for name in RESULTS))
