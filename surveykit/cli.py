"""The ``surveykit`` command. Each subcommand is a thin shell over plain functions in the packages."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from surveykit import migrate
from surveykit.config import ConfigurationError, is_sqlite, load_settings
from surveykit.console import echo_json, format_table, json_option, operator
from surveykit.db import SQLITE_IMMEDIATE, make_engine, make_session_factory
from surveykit.instruments import services as instrument_services
from surveykit.instruments.models import Instrument


class CLIContext:
    """Settings and a lazily built engine, shared by the subcommands of one invocation."""

    def __init__(self, ini: str | None, overrides: dict[str, str]) -> None:
        self.ini = ini
        self.overrides = overrides
        self._settings: dict[str, Any] | None = None
        self._engine: Engine | None = None

    @property
    def settings(self) -> dict[str, Any]:
        if self._settings is None:
            ini_settings: dict[str, Any] = {}
            if self.ini:
                from pyramid.paster import get_appsettings

                ini_settings = dict(get_appsettings(self.ini))
            environ = {**os.environ, **self.overrides}
            try:
                self._settings = load_settings(ini_settings, environ)
            except ConfigurationError as exc:
                raise click.ClickException(f"configuration: {exc}") from exc
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings)
        return self._engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed only if the whole command succeeds."""
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
        if not migrate.is_up_to_date(self.engine):
            raise click.ClickException(
                "the database schema is not up to date: run `surveykit db upgrade` first"
            )


pass_cli = click.make_pass_decorator(CLIContext)


@click.group()
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
@click.pass_context
def cli(ctx: click.Context, ini: str | None, data_dir: str | None, database_url: str | None) -> None:
    """surveykit: interview instruments, participant registry, sync and exports for field research."""
    overrides = {}
    if data_dir:
        overrides["SURVEYKIT_DATA_DIR"] = data_dir
    if database_url:
        overrides["SURVEYKIT_DATABASE_URL"] = database_url
    ctx.obj = CLIContext(ini, overrides)
    ctx.call_on_close(ctx.obj.close)


# --------------------------------------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_cli
def db_upgrade(obj: CLIContext, revision: str) -> None:
    """Apply migrations up to REVISION."""
    migrate.upgrade(obj.engine, revision)
    click.echo(f"database at revision {migrate.current_revision(obj.engine)}")


@db.command("current")
@pass_cli
def db_current(obj: CLIContext) -> None:
    """Show the database's revision and whether it is the newest."""
    current, head = migrate.current_revision(obj.engine), migrate.head_revision(obj.engine)
    click.echo(
        f"current: {current or '(empty)'}  head: {head}  {'up to date' if current == head else 'behind'}"
    )


# ------------------------------------------------------------------------------------ instruments


@cli.group()
def instruments() -> None:
    """Validate, publish, list and retire interview instruments."""


def _definition_error(exc: instrument_services.DefinitionError) -> click.ClickException:
    lines = [f"{exc.source or 'definition'} is not valid:"]
    lines += [f"  {path or '(top level)'}: {message}" for path, message in exc.errors]
    return click.ClickException("\n".join(lines))


@instruments.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def instruments_validate(files: tuple[str, ...]) -> None:
    """Check instrument FILES without storing anything."""
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
    if failures:
        raise click.ClickException("\n".join(failures))


def publish_files(
    session: Session, files: list[Path | str], operator: str, echo: Callable[[str], None]
) -> list[instrument_services.PublishResult]:
    """Publish every file, or none: one bad file leaves the database untouched."""
    results = []
    for file in files:
        result = instrument_services.publish_file(session, file, operator)
        results.append(result)
        state = "published as new version" if result.created else "unchanged, still version"
        echo(f"{file}: {result.slug} {state} {result.version}")
    return results


@instruments.command("publish")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@pass_cli
def instruments_publish(obj: CLIContext, files: tuple[str, ...]) -> None:
    """Store FILES as immutable numbered versions (identical content changes nothing)."""
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
    obj.require_schema()
    try:
        with obj.session() as session:
            instrument_services.retire(session, slug)
    except instrument_services.InstrumentNotFound as exc:
        raise click.ClickException(f"no instrument {slug!r}") from exc
    click.echo(f"{slug} retired")


# ------------------------------------------------------------------------------------------ serve


# Key of the PostgreSQL advisory lock that lets one process at a time make the first start.
FIRST_START_LOCK = 0x73_6B_66_73  # "skfs"
FIRST_START_ACTOR = "surveykit serve (first start)"


def prepare_database(obj: CLIContext, echo: Callable[[str], None]) -> None:
    """What ``serve`` does before it listens, the same on both stores.

    On the embedded SQLite database it first applies the migrations (on PostgreSQL the operator
    runs ``surveykit db upgrade``, and serve refuses a schema that is behind). Then, when no
    instrument has been published yet, it publishes every file in ``instruments/``, and when no
    admin exists it creates one (``SURVEYKIT_ADMIN_PASSWORD`` or a password printed once).

    Several processes may start at once on one database: a lock (a file lock beside the SQLite
    file, a PostgreSQL advisory lock) lets one process at a time do this, and the others then find
    the instruments and the admin there, so there is one publication and one admin.
    """
    url = obj.settings["sqlalchemy.url"]
    embedded = is_sqlite(url)
    with _first_start_lock(obj, embedded):
        if embedded:
            migrate.upgrade(obj.engine)
        else:
            obj.require_schema()
        with obj.session() as session:
            if embedded:
                session.connection(execution_options={SQLITE_IMMEDIATE: True})
            else:
                # Held until this transaction ends; a second process waits here, then reads what
                # the first committed.
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FIRST_START_LOCK})
            if session.scalar(select(Instrument.id).limit(1)) is None:
                files = instrument_services.definition_files(obj.settings["surveykit.instruments_dir"])
                publish_files(session, files, FIRST_START_ACTOR, echo)
            ensure_admin(obj, session, echo)


@contextmanager
def _first_start_lock(obj: CLIContext, embedded: bool) -> Iterator[None]:
    """On SQLite, an exclusive lock on a file beside the database, so two processes starting at
    once do not both migrate a new file (PostgreSQL's lock is taken in the transaction itself)."""
    database = obj.engine.url.database if embedded else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.first-start.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_admin(obj: CLIContext, session: Session, echo: Callable[[str], None]) -> None:
    """Create the first admin when there is none, printing its password once."""
    from surveykit.accounts.cli import ensure_first_admin
    from surveykit.accounts.services import AccountError, AccountPolicy

    given = obj.settings["surveykit.admin_password"]
    try:
        created = ensure_first_admin(session, AccountPolicy.from_settings(obj.settings), given)
    except AccountError as exc:
        raise click.ClickException(f"SURVEYKIT_ADMIN_PASSWORD: {exc}") from exc
    if created:
        username, password = created
        shown = "from SURVEYKIT_ADMIN_PASSWORD" if given else f"{password}  (shown once; change it)"
        echo(f"created the first admin: username {username}, password {shown}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=6543, show_default=True, type=click.IntRange(0, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
@pass_cli
def serve(obj: CLIContext, host: str, port: int, threads: int) -> None:
    """Run the API server (waitress)."""
    import waitress

    from surveykit import make_app

    settings = obj.settings
    prepare_database(obj, click.echo)
    if is_sqlite(settings["sqlalchemy.url"]):
        click.echo(f"data: {settings['surveykit.data_dir']} (SQLite)")
    else:
        click.echo(f"data: {obj.engine.url.render_as_string(hide_password=True)}")
    app = make_app({**settings, "surveykit.engine": obj.engine})
    listeners: dict[Any, Any] = {}
    server = waitress.create_server(
        app,
        map=listeners,
        host=host,
        port=port,
        threads=threads,
        ident="surveykit",
        # The application answers oversized bodies with a JSON 413; waitress's own cap is a backstop.
        max_request_body_size=settings["surveykit.max_body_bytes"] * 2,
        clear_untrusted_proxy_headers=True,
    )
    adapt_waitress(
        listeners.values(),
        read_seconds=settings["surveykit.request_read_seconds"],
        max_body_bytes=settings["surveykit.max_body_bytes"],
    )
    bound_port = server.effective_port
    click.echo(f"surveykit is serving on http://{host}:{bound_port}/api/v1/instruments", err=False)
    sys.stdout.flush()
    try:
        server.run()
    except KeyboardInterrupt:
        click.echo("stopped")


def adapt_waitress(listeners: Any, read_seconds: float, max_body_bytes: int) -> None:
    """Four changes to waitress's connections, made through its own extension points:

    - its own refusals (a body over its cap, a request line it cannot parse, ...), which never reach
      the application, answer in the API's JSON error envelope instead of text/plain;
    - a request still incomplete ``read_seconds`` after its first byte (a client trickling its body
      a byte at a time) is answered ``408 request_timeout`` and its connection closed; waitress by
      itself only drops connections that send nothing at all for ``channel_timeout`` (120 s);
    - a keep-alive connection stays open after an answer without a body (a 304 to a tablet's
      revalidation, a 204). waitress 3.0 closes it because such an answer carries no
      Content-Length (Pylons/waitress PR #502), so every revalidation paid for a new TCP
      connection; without a body there is nothing to delimit, so the connection can go on;
    - a request with ``Expect: 100-continue`` whose declared Content-Length exceeds
      ``max_body_bytes`` is answered ``413 body_too_large`` at once, without ``100 Continue``, and
      its body is never read. waitress alone sends ``100 Continue`` for every such request (even one
      over its own cap, which it then refuses), so a client uploaded up to twice the limit before
      hearing the answer it could have had from the headers.
    """
    import json

    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser
    from waitress.server import BaseWSGIServer
    from waitress.task import ErrorTask, WSGITask
    from waitress.utilities import Error, RequestEntityTooLarge

    class RequestTimeout(Error):
        code = 408
        reason = "Request Timeout"

    class BodyTooLarge(Error):
        code = 413
        reason = "Request Entity Too Large"

    class DeclaredLengthParser(HTTPRequestParser):
        def received(self, data: bytes) -> int:
            headers_were_finished = self.headers_finished
            consumed = super().received(data)
            if self.headers_finished and not headers_were_finished:
                refused_anyway = isinstance(self.error, RequestEntityTooLarge)
                if self.content_length > max_body_bytes and (self.expect_continue or refused_anyway):
                    # Answered from the declared length, in the application's own words.
                    self.error = BodyTooLarge(
                        f"request body of {self.content_length} bytes exceeds the limit of "
                        f"{max_body_bytes} bytes"
                    )
                    self.completed = True
                if self.error is not None:
                    # An answer is ready: the client must not be invited to send the body.
                    self.expect_continue = False
            return consumed

    from surveykit.errors import ErrorCode

    codes = {408: ErrorCode.REQUEST_TIMEOUT, 413: ErrorCode.BODY_TOO_LARGE}

    class JsonErrorTask(ErrorTask):
        def execute(self) -> None:
            error = self.request.error
            status = int(error.code)
            code = codes.get(status, ErrorCode.INTERNAL_ERROR if status >= 500 else ErrorCode.BAD_REQUEST)
            message = f"{error.reason.lower()}: {error.body}"
            body = json.dumps({"status": status, "code": str(code), "message": message, "details": []})
            data = body.encode("utf-8")
            self.status = f"{status} {error.reason}"
            self.response_headers.extend(
                [("Content-Type", "application/json; charset=utf-8"), ("Cache-Control", "no-store")]
            )
            self.set_close_on_finish()
            self.content_length = len(data)
            self.write(data)

    class KeepAliveTask(WSGITask):
        _building_header = False

        def build_response_header(self) -> bytes:
            self._building_header = True
            try:
                return super().build_response_header()
            finally:
                self._building_header = False

        def set_close_on_finish(self) -> None:
            bodiless_keep_alive = (
                self._building_header
                and not self.has_body
                and self.version == "1.1"
                and self.request.headers.get("CONNECTION", "").lower() != "close"
            )
            if not bodiless_keep_alive:
                super().set_close_on_finish()

    class SurveykitChannel(HTTPChannel):
        parser_class = DeclaredLengthParser
        task_class = KeepAliveTask
        error_task_class = JsonErrorTask
        _request_started = 0.0

        def received(self, data: bytes) -> bool:
            # Runs on waitress's I/O thread whenever bytes arrive.
            now = time.monotonic()
            if self.request is None:
                self._request_started = now
            elif data and now - self._request_started > read_seconds:
                with self.requests_lock:
                    if self.will_close or self.close_when_flushed:
                        return False
                    late = self.request
                    late.error = RequestTimeout(
                        f"the request was not complete {read_seconds:g} s after its first byte"
                    )
                    late.completed = True
                    self.request = None
                    self.requests.append(late)
                    if len(self.requests) == 1:
                        self.server.add_task(self)
                return True
            return super().received(data)

    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = SurveykitChannel


def _register_capability_commands() -> None:
    from surveykit.accounts.cli import COMMANDS
    from surveykit.exports.cli import COMMANDS as EXPORTS_COMMANDS
    from surveykit.openapi import COMMANDS as OPENAPI_COMMANDS
    from surveykit.participants.cli import COMMANDS as PARTICIPANTS_COMMANDS
    from surveykit.studies.cli import COMMANDS as STUDIES_COMMANDS

    for command in [
        *COMMANDS,
        *STUDIES_COMMANDS,
        *PARTICIPANTS_COMMANDS,
        *EXPORTS_COMMANDS,
        *OPENAPI_COMMANDS,
    ]:
        cli.add_command(command)


_register_capability_commands()


def main() -> None:
    cli(prog_name="surveykit")


if __name__ == "__main__":
    main()
