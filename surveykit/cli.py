"""The ``surveykit`` command. Each subcommand is a thin shell over plain functions in the packages.

Start-up is lazy: the capability commands are imported when they run, not to print ``--help``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from surveykit.config import ConfigurationError, load_settings
from surveykit.terminal import echo_json, format_table, json_option, operator

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

# Set to 1 to see the full Python stack of a failure instead of its one-line explanation.
TRACEBACK_ENV = "SURVEYKIT_TRACEBACK"


class CLIContext:
    """Settings and a lazily built engine, shared by the subcommands of one invocation."""

    def __init__(self, ini: str | None, overrides: dict[str, str]) -> None:
        self.ini = ini
        self.overrides = overrides
        self._settings: dict[str, Any] | None = None
        self._engine: Engine | None = None

    @property
    def ini_settings(self) -> dict[str, Any]:
        if not self.ini:
            return {}
        from pyramid.paster import get_appsettings

        return dict(get_appsettings(self.ini))

    @property
    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.overrides}

    @property
    def settings(self) -> dict[str, Any]:
        if self._settings is None:
            try:
                self._settings = load_settings(self.ini_settings, self.environ)
            except ConfigurationError as exc:
                raise click.ClickException(f"configuration: {exc}") from exc
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from surveykit.db import make_engine

            self._engine = make_engine(self.settings)
        return self._engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed only if the whole command succeeds."""
        from surveykit.db import make_session_factory

        session = make_session_factory(self.engine)()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        # Return the engine's pooled connections when the command ends (it may run in-process).
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def require_schema(self) -> None:
        from surveykit import migrate

        if not migrate.is_up_to_date(self.engine):
            raise click.ClickException(
                "the database schema is not up to date: run `surveykit db upgrade` first"
            )


pass_cli = click.make_pass_decorator(CLIContext)


# Commands of the capability packages: (module, attribute, one-line help shown by `surveykit --help`
# without importing the module; tests check it matches the command's own).
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "analysis": (
        "surveykit.analysis.cli",
        "analysis_group",
        "Codebook and codings: exchange with QDA tools (REFI-QDA .qdpx and...",
    ),
    "audit": ("surveykit.accounts.cli", "audit_command", "Show the audit log, newest first."),
    "blocks": (
        "surveykit.participants.cli",
        "blocks_group",
        "Interview-number blocks that tablets hold: list them, release a...",
    ),
    "codebook": (
        "surveykit.analysis.codebook_cli",
        "codebook_group",
        "A study's codebook: import it from a CSV or XLSX file, export it to...",
    ),
    "devices": (
        "surveykit.accounts.cli",
        "devices_group",
        "Field devices (tablets): enrol, re-enrol, list, revoke.",
    ),
    "export": (
        "surveykit.exports.cli",
        "export_command",
        "Write the consolidated .xlsx of one country of STUDY, or of all its...",
    ),
    "openapi": (
        "surveykit.openapi",
        "openapi_command",
        "Print or write the OpenAPI 3.1 document of the API (built with the...",
    ),
    "participants": (
        "surveykit.participants.cli",
        "participants_group",
        "The participant registry: anonymised IDs such as RA1-KE-04-B, and...",
    ),
    "studies": (
        "surveykit.studies.cli",
        "studies_group",
        "Studies, their countries and research activities (the scope of...",
    ),
    "sync": (
        "surveykit.sync.cli",
        "sync_group",
        "Sync from the command line: push a tablet's backup file.",
    ),
    "users": ("surveykit.accounts.cli", "users_group", "Staff accounts and their grants."),
}


class LazyGroup(click.Group):
    """A group whose capability commands are imported only when one of them is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in LAZY_COMMANDS:
            module, attribute, _ = LAZY_COMMANDS[name]
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(70)))
            else:
                rows.append((name, LAZY_COMMANDS[name][2]))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("surveykit")
    except PackageNotFoundError:
        return "unknown (not installed)"


@click.group(cls=LazyGroup)
@click.version_option(_version(), "--version", prog_name="surveykit", message="%(prog)s %(version)s")
@click.option(
    "-c",
    "--config",
    "ini",
    type=click.Path(exists=True, dir_okay=False),
    help="A .ini file (development.ini, production.ini); SURVEYKIT_* variables still win.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Folder of the embedded SQLite database (also SURVEYKIT_DATA_DIR).",
)
@click.option(
    "--database-url", help="SQLAlchemy URL, e.g. postgresql+psycopg://... (also SURVEYKIT_DATABASE_URL)."
)
@click.option(
    "--traceback",
    "show_traceback",
    is_flag=True,
    help=f"On a failure, print the full Python stack instead of one line (also {TRACEBACK_ENV}=1).",
)
@click.pass_context
def cli(
    ctx: click.Context, ini: str | None, data_dir: str | None, database_url: str | None, show_traceback: bool
) -> None:
    """surveykit: interview instruments, participant registry, sync and exports for field research."""
    overrides = {}
    if data_dir:
        overrides["SURVEYKIT_DATA_DIR"] = data_dir
    if database_url:
        overrides["SURVEYKIT_DATABASE_URL"] = database_url
    if show_traceback:
        os.environ[TRACEBACK_ENV] = "1"
    ctx.obj = CLIContext(ini, overrides)
    ctx.call_on_close(ctx.obj.close)


# --------------------------------------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="The revision to migrate to.")
@pass_cli
def db_upgrade(obj: CLIContext, revision: str) -> None:
    """Apply migrations up to REVISION."""
    from surveykit import migrate

    migrate.upgrade(obj.engine, revision)
    click.echo(f"database at revision {migrate.current_revision(obj.engine)}")


# ignore_unknown_options: "-1" is a revision, not an option.
@db.command("downgrade", context_settings={"ignore_unknown_options": True})
@click.argument("revision")
@pass_cli
def db_downgrade(obj: CLIContext, revision: str) -> None:
    """Undo migrations down to REVISION (an id, or -1 for one step back). Data of the undone
    migrations is lost: take a backup first."""
    from surveykit import migrate

    migrate.downgrade(obj.engine, revision)
    click.echo(f"database at revision {migrate.current_revision(obj.engine) or '(empty)'}")


@db.command("current")
@pass_cli
def db_current(obj: CLIContext) -> None:
    """Show the database's revision and whether it is the newest."""
    from surveykit import migrate

    current, head = migrate.current_revision(obj.engine), migrate.head_revision(obj.engine)
    click.echo(
        f"current: {current or '(empty)'}  head: {head}  {'up to date' if current == head else 'behind'}"
    )


@db.command("history")
@pass_cli
def db_history(obj: CLIContext) -> None:
    """List every migration, oldest first, marking the database's current one."""
    from surveykit import migrate

    current = migrate.current_revision(obj.engine)
    for revision, message in migrate.history(obj.engine):
        mark = "  (current)" if revision == current else ""
        click.echo(f"{revision}  {message}{mark}")


@db.command("check")
@pass_cli
def db_check(obj: CLIContext) -> None:
    """Check the database is at the newest migration and matches the models (exit 1 if not)."""
    from alembic.util.exc import AutogenerateDiffsDetected

    from surveykit import migrate

    if not migrate.is_up_to_date(obj.engine):
        raise click.ClickException(
            f"the database is at {migrate.current_revision(obj.engine) or '(empty)'}, the newest migration "
            f"is {migrate.head_revision(obj.engine)}: run `surveykit db upgrade`"
        )
    try:
        migrate.check(obj.engine)
    except AutogenerateDiffsDetected as exc:
        raise click.ClickException(f"the schema differs from the models: {exc}") from exc
    click.echo("database schema up to date and matching the models")


# ----------------------------------------------------------------------------------------- config


@cli.command("config")
@json_option()
@pass_cli
def config_command(obj: CLIContext, as_json: bool) -> None:
    """Print every setting, its value (secrets masked) and where it came from."""
    from surveykit.config import describe_settings

    rows = describe_settings(obj.ini_settings, obj.environ, obj.ini)
    if as_json:
        echo_json({"settings": rows})
        return
    table = [["setting", "value", "from"]]
    table += [[row["name"], row["value"], row["source"]] for row in rows]
    click.echo(format_table(table))


# ------------------------------------------------------------------------------------ instruments


@cli.group()
def instruments() -> None:
    """Validate, publish, list and retire interview instruments."""


def _definition_error(exc: Any) -> click.ClickException:
    """Every problem as ``file:line:column: path: message`` (without line when it is not known)."""
    source = exc.source or "definition"
    lines = [f"{source} is not valid:"]
    for problem in exc.problems():
        where = source
        if problem.get("line"):
            where += f":{problem['line']}:{problem['column']}"
        lines.append(f"  {where}: {problem['path'] or '(top level)'}: {problem['message']}")
    return click.ClickException("\n".join(lines))


def _translation_table(report: dict[str, Any], checked_stale: bool) -> str:
    from surveykit.instruments.translations import report_rows

    if not report:
        return "  translations: the instrument has only its default language"
    rows = report_rows(report)
    summary = ", ".join(
        f"{language}: {len(states['missing'])} missing"
        + (f", {len(states['stale'])} stale" if checked_stale else "")
        for language, states in report.items()
    )
    lines = [f"  translations: {summary}"]
    if not checked_stale:
        lines.append(
            "  (stale translations not checked: add --published to compare with the published versions)"
        )
    if rows:
        shown = [[language, state, path, _shorten(source)] for language, state, path, source in rows]
        table = format_table([["language", "state", "path", "source text"], *shown])
        lines += ["  " + line for line in table.splitlines()]
    return "\n".join(lines)


def _shorten(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@instruments.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--published",
    "against_published",
    is_flag=True,
    help="Also list stale translations, comparing with the published versions in the database.",
)
@click.pass_context
def instruments_validate(ctx: click.Context, files: tuple[str, ...], against_published: bool) -> None:
    """Check instrument FILES without storing anything; list missing (and stale) translations."""
    from surveykit.instruments import services as instrument_services
    from surveykit.instruments.translations import translation_report

    failures = []
    for file in files:
        try:
            definition = instrument_services.validate_definition(
                instrument_services.read_definition_file(file), source=file
            )
        except instrument_services.DefinitionError as exc:
            failures.append(_definition_error(exc).message)
            continue
        questions = sum(1 for _ in instrument_services.iter_questions(definition))
        click.echo(
            f"{file}: valid ({definition['slug']}, {questions} questions, "
            f"hash {instrument_services.content_hash(definition)[:12]})"
        )
        history: list[Any] = []
        if against_published:
            obj = ctx.find_object(CLIContext)
            obj.require_schema()
            with obj.session() as session:
                history = instrument_services.published_definitions(session, definition["slug"])
        click.echo(_translation_table(translation_report(definition, history), against_published))
    if failures:
        raise click.ClickException("\n".join(failures))


def publish_files(
    session: Session, files: list[Path | str], operator: str, echo: Callable[[str], None]
) -> list[Any]:
    """Publish every file, or none: one bad file leaves the database untouched."""
    from surveykit import server

    return server.publish_files(session, files, operator, echo)


@instruments.command("publish")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@pass_cli
def instruments_publish(obj: CLIContext, files: tuple[str, ...]) -> None:
    """Store FILES as immutable numbered versions (identical content changes nothing)."""
    from surveykit.instruments import services as instrument_services

    obj.require_schema()
    try:
        with obj.session() as session:
            publish_files(session, list(files), operator(), click.echo)
    except instrument_services.DefinitionError as exc:
        raise click.ClickException(_definition_error(exc).message + "\nnothing was published") from exc


@instruments.command("list")
@click.option("--all", "include_retired", is_flag=True, help="Include retired instruments.")
@json_option()
@pass_cli
def instruments_list(obj: CLIContext, include_retired: bool, as_json: bool) -> None:
    """Show published instruments as a table."""
    from surveykit.instruments import services as instrument_services

    obj.require_schema()
    with obj.session() as session:
        rows = instrument_services.list_instruments(session, include_retired=include_retired)
    if as_json:
        echo_json({"instruments": rows})
        return
    if not rows:
        click.echo("no instruments published")
        return
    table = [["slug", "activity", "version", "languages", "hash", "status", "title"]]
    for row in rows:
        table.append(
            [
                row["slug"],
                row["activity"],
                str(row["current_version"]),
                ",".join(row["languages"]),
                row["content_hash"][:12],
                "retired" if row["retired"] else "active",
                row["title"],
            ]
        )
    click.echo(format_table(table))


@instruments.command("retire")
@click.argument("slug")
@pass_cli
def instruments_retire(obj: CLIContext, slug: str) -> None:
    """Hide SLUG from the tablets' list; its versions stay downloadable."""
    from surveykit.instruments import services as instrument_services

    obj.require_schema()
    try:
        with obj.session() as session:
            instrument_services.retire(session, slug)
    except instrument_services.InstrumentNotFound as exc:
        raise click.ClickException(f"no instrument {slug!r}") from exc
    click.echo(f"{slug} retired")


def _sheet_problems(file: str, problems: list[Any]) -> click.ClickException:
    table = [["sheet", "row", "column", "problem"]]
    for problem in problems:
        column = f"{problem.letter} ({problem.column})" if problem.letter else problem.column
        table.append([problem.sheet or "-", str(problem.row or "-"), column or "-", problem.message])
    return click.ClickException(f"{file} is not valid:\n{format_table(table)}")


@instruments.command("import-xlsform")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Write the instrument as a YAML file.")
@click.option("--publish", "publish", is_flag=True, help="Publish the instrument as its next version.")
@pass_cli
def instruments_import_xlsform(obj: CLIContext, file: str, out: str | None, publish: bool) -> None:
    """Read an XLSForm workbook FILE (.xlsx) as an instrument; check it, and write or publish it."""
    import yaml

    from surveykit.instruments import services as instrument_services
    from surveykit.instruments.xlsform import read_xlsform

    if out and publish:
        raise click.UsageError("choose --out or --publish, not both")
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{file}: cannot read ({exc.strerror})") from exc
    raw, problems = read_xlsform(data)
    if raw is None:
        raise _sheet_problems(file, problems)
    definition = instrument_services.validate_definition(raw, source=file)
    questions = sum(1 for _ in instrument_services.iter_questions(definition))
    digest = instrument_services.content_hash(definition)
    summary = f"{definition['slug']}, {questions} questions, hash {digest[:12]}"
    if out:
        text = yaml.safe_dump(raw, allow_unicode=True, sort_keys=False, width=100)
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"{file}: valid ({summary}); written to {out}")
    elif publish:
        obj.require_schema()
        try:
            with obj.session() as session:
                result = instrument_services.publish(session, definition, operator())
        except instrument_services.DefinitionError as exc:
            raise click.ClickException(
                _definition_error(instrument_services.DefinitionError(exc.errors, file)).message
                + "\nnothing was published"
            ) from exc
        state = "published as new version" if result.created else "unchanged, still version"
        click.echo(f"{file}: {result.slug} {state} {result.version}")
    else:
        click.echo(f"{file}: valid ({summary})")


@instruments.command("export-xlsform")
@click.argument("slug")
@click.argument("version", type=click.IntRange(min=1))
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(dir_okay=False), help="The .xlsx file to write."
)
@pass_cli
def instruments_export_xlsform(obj: CLIContext, slug: str, version: int, out: str) -> None:
    """Write published VERSION of SLUG as an XLSForm workbook (it imports back to the same hash)."""
    from surveykit.instruments import services as instrument_services
    from surveykit.instruments.xlsform import version_workbook

    obj.require_schema()
    try:
        with obj.session() as session:
            data = version_workbook(session, slug, version)
    except instrument_services.VersionNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    except instrument_services.InstrumentNotFound as exc:
        raise click.ClickException(f"no instrument {slug!r}") from exc
    Path(out).write_bytes(data)
    click.echo(f"{slug} version {version} written to {out}")


# ------------------------------------------------------------------------------------------ serve


def prepare_database(obj: CLIContext, echo: Callable[[str], None]) -> None:
    """The server's first start (see ``surveykit.server.prepare_database``)."""
    from surveykit import server

    try:
        server.prepare_database(obj.settings, obj.engine, echo)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.option(
    "--host",
    default=None,
    help="Address to listen on (default: the ini's [server:main] listen, else 127.0.0.1).",
)
@click.option(
    "--port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port; default 6543).",
)
@click.option("--threads", default=None, type=click.IntRange(1, 64), help="Worker threads (default 8).")
@pass_cli
def serve(obj: CLIContext, host: str | None, port: int | None, threads: int | None) -> None:
    """Run the API server: the same hardened waitress server as `pserve` with the same ini.

    Logging follows the ini's [loggers] sections (INFO to stderr without them); the server listens
    where the ini's [server:main] says unless --host or --port is given.
    """
    from surveykit import logs, make_app, server

    settings = obj.settings
    logs.configure_logging(obj.ini, settings["surveykit.log_format"])
    options = server_options(obj.ini)
    if host is not None or port is not None:
        options.pop("listen", None)
        options["host"] = host or "127.0.0.1"
        options["port"] = 6543 if port is None else port
    if threads is not None:
        options["threads"] = threads
    app = make_app({**settings, "surveykit.engine": obj.engine})
    server.run(app, {}, **options)


def server_options(ini: str | None) -> dict[str, Any]:
    """The ini's ``[server:main]`` options (none without an ini or that section)."""
    if not ini:
        return {}
    from configparser import ConfigParser

    parser = ConfigParser(interpolation=None)
    parser.read(ini)
    if not parser.has_section("server:main"):
        return {}
    return {key: value for key, value in parser.items("server:main") if key != "use"}


# --------------------------------------------------------------------------------------- failures


def explain_failure(exc: BaseException) -> str | None:
    """One line saying what went wrong and what to do, for failures an operator can fix; None for
    the others (their stack is printed)."""
    from surveykit.server import SchemaBehind

    if isinstance(exc, ConfigurationError):
        return f"configuration: {exc}"
    if isinstance(exc, SchemaBehind):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in {98, 48}:  # EADDRINUSE on Linux, BSD
        return (
            f"cannot listen: the address is already in use ({exc.strerror}); stop the other server "
            "or choose another port (--port, or listen in [server:main])"
        )
    if isinstance(exc, OSError) and exc.errno == 99:
        return f"cannot listen on that address ({exc.strerror}): check --host or [server:main] listen"
    if type(exc).__module__.startswith("sqlalchemy"):
        from sqlalchemy import exc as sa_exc

        if isinstance(exc, sa_exc.NoSuchModuleError | sa_exc.ArgumentError):
            return (
                f"database URL not usable: {exc}; write postgresql+psycopg://user@host/db, or leave it "
                "empty for the embedded SQLite file"
            )
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            return (
                f"cannot reach the database: {detail}; check that PostgreSQL runs and that "
                "SURVEYKIT_DATABASE_URL (host, port, user, database name) is right"
            )
        if isinstance(exc, sa_exc.ProgrammingError) and "alembic_version" not in str(exc):
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            return f"database error: {detail}; is the schema built? run `surveykit db upgrade`"
    return None


def main() -> None:
    try:
        status = cli.main(prog_name="surveykit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        message = explain_failure(exc)
        if message is None or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        click.echo(f"Error: {message}", err=True)
        click.echo(f"(run with --traceback or {TRACEBACK_ENV}=1 for the full stack)", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
