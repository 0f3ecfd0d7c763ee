"""``surveykit export``: write a country's (or the whole study's) consolidated workbook to a file."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from surveykit.audit import services as audit
from surveykit.config import is_sqlite
from surveykit.exports import csv_export, jobs, services, stats_syntax
from surveykit.studies import services as studies
from surveykit.terminal import operator

FORMATS = ("xlsx", "csv", "sps", "do")


@click.command("export")
@click.option("--study", required=True, help="Study slug.")
@click.option("--country", help="The study's two-letter country code, or ALL for the study-wide workbook.")
@click.option("--all-countries", is_flag=True, help="The study-wide workbook (the same as --country ALL).")
@click.option("--activity", help="Only this research activity, e.g. RA1.")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(FORMATS),
    default="xlsx",
    show_default=True,
    help="The workbook, the CSV for statistics (its Answers sheet), or SPSS syntax / a Stata do-file "
    "that read that CSV with labels.",
)
@click.option("--lang", help="Prompts and labels in this instrument language (e.g. sw).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write under (default: SURVEYKIT_EXPORTS_DIR); files go to OUT/<study>/<country>/.",
)
@click.option(
    "--skip-unchanged",
    is_flag=True,
    help="Write nothing when the folder already holds a workbook with the same content hash.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_obj
def export_command(
    obj: Any,
    study: str,
    country: str | None,
    all_countries: bool,
    activity: str | None,
    file_format: str,
    lang: str | None,
    out: Path | None,
    skip_unchanged: bool,
    quiet: bool,
) -> None:
    """Write the consolidated .xlsx of one country of STUDY, or of all its countries (or, with
    --format, the CSV for statistics or the SPSS/Stata syntax that reads it).

    The workbook is named <study>-<country>[-<activity>]-<UTC time>-<content hash>.xlsx; the content
    hash covers the data, not the file, so an unchanged export keeps it. The CSV and the syntax files
    are named <study>-<country>[-<activity>][-<lang>].csv/.sps/.do, so that the syntax finds the CSV
    beside it.
    """
    if all_countries and country not in (None, services.ALL_COUNTRIES):
        raise click.UsageError("give --country CC or --all-countries, not both")
    if not all_countries and not country:
        raise click.UsageError("give --country CC (or ALL), or --all-countries")
    if skip_unchanged and file_format != "xlsx":
        raise click.UsageError("--skip-unchanged works with --format xlsx only")
    country = services.ALL_COUNTRIES if all_countries else country
    obj.require_schema()
    base = out if out is not None else Path(obj.settings["surveykit.exports_dir"])
    with obj.session() as session:
        if not is_sqlite(obj.settings["sqlalchemy.url"]):
            # One snapshot for every query of the export.
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        try:
            scope = services.resolve_scope(session, study, country, activity, lang)
        except (
            studies.StudyNotFound,
            studies.CountryNotFound,
            studies.ActivityNotFound,
            services.LanguageNotOffered,
        ) as exc:
            raise click.ClickException(str(exc)) from exc
        folder = base / scope.study_slug / scope.label
        if file_format != "xlsx":
            folder.mkdir(parents=True, exist_ok=True)
            _write_stats_file(session, scope, folder, file_format)
            return
        if skip_unchanged:
            tag = services.content_tag(session, scope)
            existing = sorted(folder.glob(f"*-{tag[:12]}.xlsx")) if folder.is_dir() else []
            if existing:
                click.echo(f"unchanged (content hash {tag}): {existing[-1]}")
                return
        folder.mkdir(parents=True, exist_ok=True)
        total = services.count_interviews(session, scope)
        handle, partial = tempfile.mkstemp(prefix=".export-", suffix=".partial", dir=folder)
        os.close(handle)
        try:
            with _progress(total, quiet) as progress:
                result = services.write_workbook(session, scope, partial, operator(), progress=progress)
            path = folder / services.file_name(scope, result)
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        audit.record(
            session,
            "export.create",
            actor=operator(),
            target=scope.target,
            details={
                "path": str(path),
                "content_hash": result.content_hash,
                "interviews": result.total.interviews,
                "participants": result.total.participants,
            },
        )
    total_counts = result.total
    click.echo(f"wrote {path}")
    click.echo(
        f"{total_counts.interviews} interview(s), {total_counts.participants} participant(s), "
        f"{total_counts.quotes} quote(s); content hash {result.content_hash}"
    )
    click.echo(total_counts.sentence())


def _write_stats_file(session: Any, scope: services.Scope, folder: Path, file_format: str) -> None:
    """The CSV or a syntax file of ``scope`` into ``folder`` (complete, or not there at all)."""
    path = folder / f"{csv_export.file_stem(scope)}.{file_format}"
    handle, partial = tempfile.mkstemp(prefix=".export-", suffix=".partial", dir=folder)
    try:
        with os.fdopen(handle, "w+b") as out:
            if file_format == "csv":
                result = csv_export.write_csv(session, scope, out)
                content_hash, details = result.content_hash, {"rows": result.rows}
            else:
                text, content_hash = stats_syntax.syntax_file(session, scope, file_format)
                out.write(text.encode("utf-8"))
                details = {}
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    audit.record(
        session,
        "export.create",
        actor=operator(),
        target=scope.target,
        details={"path": str(path), "content_hash": content_hash, "format": file_format, **details},
    )
    click.echo(f"wrote {path}")
    click.echo(f"content hash {content_hash}")


class _progress:
    """A tqdm bar over interviews on stderr (silent when stderr is not a terminal or with --quiet),
    fed by ``write_workbook``'s progress callback with the same steps as an export job reports."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.quiet = quiet
        self.done = 0
        self.step = jobs.STEP_WRITING
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.quiet:
            return None
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc=self.step, unit="interview", file=sys.stderr, disable=None)
        return self.advance

    def advance(self, count: int) -> None:
        self.done += count
        self.bar.update(count)
        if self.done == self.total:
            self.step = jobs.STEP_FINISHING
            self.bar.set_description_str(self.step)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


COMMANDS = [export_command]
