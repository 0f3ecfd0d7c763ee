"""``surveykit analysis export-qdpx`` and ``import-qdc``: the REFI-QDA exchange from the server's shell."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click

from surveykit.analysis import exchange, exchange_import, refi_read
from surveykit.audit import services as audit
from surveykit.studies import services as studies
from surveykit.terminal import operator


def _scope(session: Any, study: str, country: str | None) -> exchange.ExchangeScope:
    try:
        return exchange.resolve_scope(session, study, country)
    except (studies.StudyNotFound, studies.CountryNotFound) as exc:
        raise click.ClickException(str(exc)) from exc


def _problems(exc: refi_read.RefiError | exchange_import.ImportRefused) -> click.ClickException:
    lines = [exc.message, *(f"  {problem.path}: {problem.message}" for problem in exc.problems)]
    return click.ClickException("\n".join(lines))


@click.command("export-qdpx")
@click.option("--study", required=True, help="Study slug.")
@click.option("--country", help="The study's two-letter country code (default: every country of the study).")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .qdpx file to write."
)
@click.pass_obj
def export_qdpx_command(obj: Any, study: str, country: str | None, out: Path) -> None:
    """Write a country's (or the study's) interviews, quotes, codings and codebook as a REFI-QDA
    project that NVivo, ATLAS.ti, MAXQDA and QualCoder open."""
    obj.require_schema()
    with obj.session() as session:
        scope = _scope(session, study, country)
        folder = out.parent if str(out.parent) else Path(".")
        folder.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=".qdpx-", suffix=".partial", dir=folder)
        try:
            with os.fdopen(handle, "w+b") as file:
                stats = exchange.write_project_qdpx(session, scope, file)
                tag = exchange.file_tag(file)
            os.replace(partial, out)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        audit.record(
            session,
            "analysis.exchange_export",
            actor=operator(),
            target=scope.target,
            details={"path": str(out), "etag": tag},
        )
    click.echo(f"wrote {out}")
    click.echo(exchange.project_description(scope, stats))


@click.command("import-qdc")
@click.option("--study", required=True, help="Study slug.")
@click.option("--dry-run", is_flag=True, help="Report what would change and change nothing.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def import_qdc_command(obj: Any, study: str, dry_run: bool, file: Path) -> None:
    """Import a REFI-QDA codebook (.qdc) into STUDY's codes: matched by guid, new ones created,
    none deleted; all or nothing."""
    obj.require_schema()
    data = file.read_bytes()
    with obj.session() as session:
        scope = _scope(session, study, None)
        try:
            codebook = refi_read.read_qdc(data)
            changes = exchange_import.import_codebook(
                session, scope.study_id, codebook, operator(), dry_run=dry_run
            )
        except (refi_read.RefiError, exchange_import.ImportRefused) as exc:
            raise _problems(exc) from exc
        if not dry_run:
            audit.record(
                session,
                "analysis.codebook_import",
                actor=operator(),
                target=scope.study_slug,
                details={
                    "created": [item["guid"] for item in changes.created],
                    "updated": [item["guid"] for item in changes.updated],
                    "unchanged": changes.unchanged,
                    "file": str(file),
                },
            )
    verb = "would create" if dry_run else "created"
    click.echo(f"{verb} {len(changes.created)} code(s):")
    for item in changes.created:
        click.echo(f"  + {item['name']} ({item['guid']})")
    verb = "would update" if dry_run else "updated"
    click.echo(f"{verb} {len(changes.updated)} code(s):")
    for item in changes.updated:
        click.echo(f"  ~ {item['name']} ({item['guid']}): {', '.join(item['fields'])}")
    click.echo(f"unchanged: {changes.unchanged}")


COMMANDS = [export_qdpx_command, import_qdc_command]
