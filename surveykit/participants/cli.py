"""``surveykit participants``: import the planned sample from a sheet, list a country's registry.
``surveykit blocks``: the interview-number blocks tablets hold, and releasing a device's blocks."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from surveykit.audit import services as audit
from surveykit.db import SQLITE_IMMEDIATE
from surveykit.participants import importer, services
from surveykit.participants.models import PARTICIPANT_STATUSES
from surveykit.studies import services as studies
from surveykit.terminal import echo_json, format_table, json_option, operator

# Files above this size get progress bars (on a terminal; tqdm stays quiet when output is piped).
LARGE_FILE_BYTES = 64 * 1024


@contextmanager
def progress_bar(
    enabled: bool, description: str, unit: str, total: int | None = None
) -> Iterator[Callable[[int], None] | None]:
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit=unit, file=sys.stderr, disable=None, leave=False) as bar:
        yield bar.update


def error_table(errors: list[importer.RowError]) -> str:
    rows = [["row", "column", "problem"]]
    rows += [[str(e.row) if e.row is not None else "-", e.column or "-", e.message] for e in errors]
    return format_table(rows)


def _rejected(file: Path, exc: importer.ImportRejected) -> click.ClickException:
    more = f"\n(showing {len(exc.errors)} of {exc.total} problems)" if exc.total > len(exc.errors) else ""
    return click.ClickException(
        f"{file.name} cannot be imported:\n{error_table(exc.errors)}{more}\nnothing was imported"
    )


@click.group("participants")
def participants_group() -> None:
    """The participant registry: anonymised IDs such as RA1-KE-04-B, and no names."""


@participants_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--study", required=True, help="Study slug.")
@click.option("--country", required=True, help="The study's two-letter country code.")
@click.option("--activity", required=True, help="Research activity, e.g. RA1.")
@click.option("--dry-run", is_flag=True, help="Check the file and report; store nothing.")
@click.pass_obj
def participants_import(obj: Any, file: Path, study: str, country: str, activity: str, dry_run: bool) -> None:
    """Register the planned sample in FILE (CSV or XLSX): all rows, or none.

    Columns: agency (required), position (optional), interview (optional: rows with the same value
    become one group interview, lettered A, B, ... in row order), id (optional: an existing ID such as
    RA1-KE-02-A, kept as it is; the counter then continues after the largest number imported).
    """
    obj.require_schema()
    data = file.read_bytes()
    large = len(data) > LARGE_FILE_BYTES
    try:
        kind = importer.file_kind(data, None, file.name)
        with progress_bar(large, "reading", "row") as progress:
            plan = importer.parse(data, kind, progress, scope=(activity, country))
    except importer.ImportRejected as exc:
        raise _rejected(file, exc) from exc
    summary = (
        f"{plan.participants} participant(s) in {len(plan.interviews)} interview(s) from {plan.rows} row(s)"
    )
    try:
        with obj.session() as session:
            # On SQLite, queue for the write lock now: the checks below must see what is stored.
            session.connection(execution_options={SQLITE_IMMEDIATE: True})
            target = studies.get_study(session, study)
            services.check_scope(session, target, country, activity)
            if dry_run:
                services.check_import(session, target, country, activity, plan)
                click.echo(f"{file.name} is valid: {summary}; nothing was stored (dry run)")
                return
            with progress_bar(large, "registering", "interview", len(plan.interviews)) as progress:
                created = services.import_plan(session, target, country, activity, plan, operator(), progress)
            numbers = [rows[0].interview_number for rows in created]
            audit.record(
                session,
                "participant.import",
                actor=operator(),
                target=f"{study}/{country}/{activity}",
                details={
                    "file": file.name,
                    "file_type": kind,
                    "rows": plan.rows,
                    "interviews": len(created),
                    "participants": plan.participants,
                    "first_number": min(numbers),
                    "last_number": max(numbers),
                    "known_ids": sum(
                        len(interview) for interview in plan.interviews if interview[0].number is not None
                    ),
                },
            )
    except (studies.StudyNotFound, studies.CountryNotFound, studies.ActivityNotFound) as exc:
        raise click.ClickException(f"{exc}; nothing was imported") from exc
    except importer.ImportRejected as exc:
        raise _rejected(file, exc) from exc
    except services.RegistryError as exc:
        raise click.ClickException(f"{exc}; nothing was imported") from exc
    first, last = created[0][0], created[-1][0]
    click.echo(
        f"imported {summary}: interviews {first.pid.rsplit('-', 1)[0]} to {last.pid.rsplit('-', 1)[0]}"
    )


@participants_group.command("list")
@click.option("--study", required=True, help="Study slug.")
@click.option("--country", required=True, help="The study's two-letter country code.")
@click.option("--activity", help="Only this research activity, e.g. RA1.")
@click.option("--status", type=click.Choice(PARTICIPANT_STATUSES), help="Only participants in this status.")
@json_option("Print every field of each participant as JSON (as the API returns them), for scripts.")
@click.pass_obj
def participants_list(
    obj: Any, study: str, country: str, activity: str | None, status: str | None, as_json: bool
) -> None:
    """The country's participants as reports print them: ID, agency, position (and status)."""
    obj.require_schema()
    try:
        with obj.session() as session:
            target = studies.get_study(session, study)
            studies.get_country(session, target, country)
            rows = services.list_participants(session, target, country, activity, status)
            described = [services.describe_participant(person, target.slug) for person in rows]
            table = [["ID", "Ministry/Government Agency", "Position", "status"]]
            table += [[p.pid, p.agency, p.position or "", p.status] for p in rows]
    except (studies.StudyNotFound, studies.CountryNotFound) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json({"participants": described})
        return
    click.echo(format_table(table) if len(table) > 1 else "no participants")


@click.group("blocks")
def blocks_group() -> None:
    """Interview-number blocks that tablets hold: list them, release a device's unused numbers."""


@blocks_group.command("list")
@click.option("--study", required=True, help="Study slug.")
@click.option("--country", required=True, help="The study's two-letter country code.")
@click.option("--device", "device_id", help="Only the blocks of this device id.")
@click.option("--activity", help="Only this research activity, e.g. RA1.")
@click.pass_obj
def blocks_list(obj: Any, study: str, country: str, device_id: str | None, activity: str | None) -> None:
    """The blocks devices hold in a country, with how many of their numbers are used and unused."""
    obj.require_schema()
    try:
        with obj.session() as session:
            target = studies.get_study(session, study)
            studies.get_country(session, target, country)
            rows = services.country_blocks(session, target, country, device_id, activity)
            table = [["block", "device", "numbers", "used", "unused", "released"]]
            table += [
                [
                    str(block.id),
                    block.device_id,
                    f"{block.activity}-{block.country_code}-{block.first_number:02d} to "
                    f"{block.last_number:02d}",
                    str(used),
                    str(unused),
                    f"{block.released_at:%Y-%m-%d %H:%M} by {block.released_by}" if block.released_at else "",
                ]
                for block, used, unused in rows
            ]
    except (studies.StudyNotFound, studies.CountryNotFound) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(format_table(table) if len(table) > 1 else "no number blocks")


@blocks_group.command("release")
@click.argument("device_id")
@click.option("--study", required=True, help="Study slug.")
@click.option("--country", required=True, help="The study's two-letter country code.")
@click.option("--activity", help="Only the blocks of this research activity (default: all).")
@click.pass_obj
def blocks_release(obj: Any, device_id: str, study: str, country: str, activity: str | None) -> None:
    """Release DEVICE_ID's blocks in a country: the device mints no more IDs from them, and their
    unused numbers stay gaps (numbers are never reused)."""
    obj.require_schema()
    try:
        with obj.session() as session:
            target = studies.get_study(session, study)
            studies.get_country(session, target, country)
            if activity is not None:
                studies.get_activity(session, target, activity)
            if not services.country_blocks(session, target, country, device_id, activity):
                raise click.ClickException(f"device {device_id} holds no number blocks in {study}/{country}")
            release = services.release_blocks(session, device_id, target, country, activity, operator())
            if release.blocks:
                audit.record(
                    session,
                    "block.release",
                    actor=operator(),
                    target=f"{study}/{country}/{device_id}",
                    device_id=None,
                    details={
                        "device": device_id,
                        "activity": activity,
                        "blocks": [block.id for block in release.blocks],
                        "released_numbers": release.released_numbers,
                    },
                )
    except (studies.StudyNotFound, studies.CountryNotFound, studies.ActivityNotFound) as exc:
        raise click.ClickException(str(exc)) from exc
    if not release.blocks:
        click.echo(f"device {device_id} has no open blocks in {study}/{country}; nothing to release")
        return
    click.echo(
        f"released {len(release.blocks)} block(s) of device {device_id} in {study}/{country}: "
        f"{release.released_numbers} unused number(s) will stay gaps"
    )


COMMANDS = [participants_group, blocks_group]
