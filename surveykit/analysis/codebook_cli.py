"""``surveykit codebook``: import a study's codebook from a CSV or XLSX file, and export it to one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from surveykit.analysis import codebook, codebook_files, codebook_import
from surveykit.audit import services as audit
from surveykit.db import SQLITE_IMMEDIATE
from surveykit.studies import services as studies
from surveykit.terminal import format_table, operator


def error_table(errors: list[codebook_files.RowError]) -> str:
    rows = [["row", "column", "problem"]]
    rows += [[str(e.row) if e.row is not None else "-", e.column or "-", e.message] for e in errors]
    return format_table(rows)


def change_table(result: codebook_import.ImportResult) -> str:
    rows = [["row", "action", "code", "path", "fields"]]
    rows += [
        [
            str(code.row),
            code.action,
            str(code.code) if code.code is not None else "-",
            code.path,
            ", ".join(code.fields),
        ]
        for code in result.codes
        if code.action != "unchanged"
    ]
    return format_table(rows)


def _rejected(file: Path, exc: codebook_files.FileRejected) -> click.ClickException:
    more = f"\n(showing {len(exc.errors)} of {exc.total} problems)" if exc.total > len(exc.errors) else ""
    return click.ClickException(
        f"{file.name} cannot be imported:\n{error_table(exc.errors)}{more}\nnothing was imported"
    )


@click.group("codebook")
def codebook_group() -> None:
    """A study's codebook: import it from a CSV or XLSX file, export it to one."""


@codebook_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--study", required=True, help="Study slug.")
@click.option("--dry-run", is_flag=True, help="Check the file and report what would change; store nothing.")
@click.pass_obj
def codebook_import_command(obj: Any, file: Path, study: str, dry_run: bool) -> None:
    """Import the codebook in FILE (CSV or XLSX): all rows, or none.

    Columns: path (such as Capacity/Training; missing parents are created) or name and parent,
    and definition, colour (#RRGGBB), guid. Codes are matched by guid, else by path; importing the
    same file again changes nothing.
    """
    obj.require_schema()
    data = file.read_bytes()
    try:
        kind = codebook_files.file_kind(data, None, file.name)
        rows = codebook_files.read_file(data, kind)
    except codebook_files.FileRejected as exc:
        raise _rejected(file, exc) from exc
    try:
        with obj.session() as session:
            # On SQLite, queue for the write lock now: the checks must see what is stored.
            session.connection(execution_options={SQLITE_IMMEDIATE: True})
            target = studies.get_study(session, study)
            codebook.lock_codebook(session, target)
            result = codebook_import.import_file(session, target, rows, operator(), dry_run=dry_run)
            if not dry_run:
                for change in result.changes:
                    audit.record(
                        session, change.action, actor=operator(), target=change.target, details=change.details
                    )
                audit.record(
                    session,
                    "codebook.imported",
                    actor=operator(),
                    target=f"{study}/codebook",
                    details={"filename": file.name, "file_type": kind, **result.summary()},
                )
    except studies.StudyNotFound as exc:
        raise click.ClickException(f"{exc}; nothing was imported") from exc
    except codebook_files.FileRejected as exc:
        raise _rejected(file, exc) from exc
    counts = result.summary()
    if counts["created"] or counts["updated"]:
        click.echo(change_table(result))
    summary = f"{counts['created']} created, {counts['updated']} updated, {counts['unchanged']} unchanged"
    if dry_run:
        click.echo(f"{file.name} is valid: {summary}; nothing was stored (dry run)")
    else:
        click.echo(f"imported {file.name} into {study}: {summary}")


@codebook_group.command("export")
@click.option("--study", required=True, help="Study slug.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The file to write: .csv or .xlsx (the columns import reads back).",
)
@click.pass_obj
def codebook_export_command(obj: Any, study: str, out: Path) -> None:
    """Write the codebook of STUDY (codes not merged) to a CSV or XLSX file that imports back."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise click.BadParameter("the file name must end in .csv or .xlsx", param_hint="--out")
    obj.require_schema()
    try:
        with obj.session() as session:
            rows = codebook_import.export_rows(session, studies.get_study(session, study))
    except studies.StudyNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    out.write_bytes(codebook_files.write_csv(rows) if suffix == ".csv" else codebook_files.write_xlsx(rows))
    click.echo(f"wrote {len(rows)} code(s) of {study} to {out}")
