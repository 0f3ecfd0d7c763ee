"""The one HTTP server of surveykit: waitress, adapted, behind both `surveykit serve` and `pserve`.

``run`` is the ``paste.server_runner`` entry point (``use = egg:surveykit#main`` in ``[server:main]``):
``pserve production.ini`` builds the application from ``[app:main]`` and hands it here, and
``surveykit serve`` does the same with the ini it is given, so both make the same first start and
run the same hardened server on the ini's listen address.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from surveykit.config import ConfigurationError, is_sqlite

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:6543"
DEFAULT_THREADS = 8

# Key of the PostgreSQL advisory lock that lets one process at a time make the first start.
FIRST_START_LOCK = 0x73_6B_66_73  # "skfs"
FIRST_START_ACTOR = "surveykit serve (first start)"


class SchemaBehind(ConfigurationError):
    """The database's schema is not at the newest migration."""


# ------------------------------------------------------------------------------------ first start


def prepare_database(settings: dict[str, Any], engine: Engine, echo: Callable[[str], None]) -> None:
    """What the server does before it listens, the same on both stores.

    On the embedded SQLite database it first applies the migrations (on PostgreSQL the operator
    runs ``surveykit db upgrade``, and the server refuses a schema that is behind). Then, when no
    instrument has been published yet, it publishes every file in ``instruments/``, and when no
    admin exists it creates one (``SURVEYKIT_ADMIN_PASSWORD`` or a password printed once).

    Several processes may start at once on one database: a lock (a file lock beside the SQLite
    file, a PostgreSQL advisory lock) lets one process at a time do this, and the others then find
    the instruments and the admin there, so there is one publication and one admin.
    """
    from surveykit import migrate
    from surveykit.db import SQLITE_IMMEDIATE, make_session_factory
    from surveykit.instruments import services as instrument_services
    from surveykit.instruments.models import Instrument

    embedded = is_sqlite(settings["sqlalchemy.url"])
    with _first_start_lock(engine, embedded):
        if embedded:
            migrate.upgrade(engine)
        elif not migrate.is_up_to_date(engine):
            raise SchemaBehind("the database schema is not up to date: run `surveykit db upgrade` first")
        session = make_session_factory(engine)()
        try:
            if embedded:
                session.connection(execution_options={SQLITE_IMMEDIATE: True})
            else:
                # Held until this transaction ends; a second process waits here, then reads what
                # the first committed.
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FIRST_START_LOCK})
            if session.scalar(select(Instrument.id).limit(1)) is None:
                files = instrument_services.definition_files(settings["surveykit.instruments_dir"])
                publish_files(session, files, FIRST_START_ACTOR, echo)
            ensure_admin(settings, session, echo)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


def publish_files(
    session: Session, files: list[Any], operator: str, echo: Callable[[str], None]
) -> list[Any]:
    """Publish every file, or none: one bad file leaves the database untouched."""
    from surveykit.instruments import services as instrument_services

    results = []
    for file in files:
        result = instrument_services.publish_file(session, file, operator)
        results.append(result)
        state = "published as new version" if result.created else "unchanged, still version"
        echo(f"{file}: {result.slug} {state} {result.version}")
    return results


def ensure_admin(settings: dict[str, Any], session: Session, echo: Callable[[str], None]) -> None:
    """Create the first admin when there is none, printing its password once."""
    from surveykit.accounts.cli import ensure_first_admin
    from surveykit.accounts.services import AccountError, AccountPolicy

    given = settings["surveykit.admin_password"]
    try:
        created = ensure_first_admin(session, AccountPolicy.from_settings(settings), given)
    except AccountError as exc:
        raise ConfigurationError(f"SURVEYKIT_ADMIN_PASSWORD: {exc}") from exc
    if created:
        username, password = created
        shown = "from SURVEYKIT_ADMIN_PASSWORD" if given else f"{password}  (shown once; change it)"
        echo(f"created the first admin: username {username}, password {shown}")


@contextmanager
def _first_start_lock(engine: Engine, embedded: bool) -> Iterator[None]:
    """On SQLite, an exclusive lock on a file beside the database, so two processes starting at
    once do not both migrate a new file (PostgreSQL's lock is taken in the transaction itself)."""
    database = engine.url.database if embedded else None
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


# ----------------------------------------------------------------------------------------- server


def waitress_options(settings: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """waitress's keyword arguments: ``[server:main]``'s options, then what surveykit's settings fix.

    Proxy headers are honoured only from ``surveykit.trusted_proxy``; from anyone else they are
    removed before the application sees them, so a client cannot pose as another address.
    """
    chosen = {key: value for key, value in options.items() if key != "use" and value is not None}
    if "host" not in chosen and "port" not in chosen:
        chosen.setdefault("listen", DEFAULT_LISTEN)
    chosen.setdefault("threads", DEFAULT_THREADS)
    chosen.setdefault("ident", "surveykit")
    # The application answers oversized bodies with a JSON 413; waitress's own cap is a backstop.
    chosen["max_request_body_size"] = settings["surveykit.max_body_bytes"] * 2
    chosen["clear_untrusted_proxy_headers"] = True
    if settings["surveykit.trusted_proxy"]:
        chosen["trusted_proxy"] = settings["surveykit.trusted_proxy"]
        chosen["trusted_proxy_headers"] = settings["surveykit.trusted_proxy_headers"]
        chosen["trusted_proxy_count"] = settings["surveykit.trusted_proxy_count"]
    return chosen


def create_server(app: Any, settings: dict[str, Any], options: dict[str, Any]) -> tuple[Any, list[str]]:
    """A waitress server for ``app`` with surveykit's adaptations (see ``adapt_waitress``), and the
    addresses it listens on."""
    import waitress
    from waitress.server import BaseWSGIServer

    listeners: dict[Any, Any] = {}
    server = waitress.create_server(app, map=listeners, **waitress_options(settings, options))
    adapt_waitress(
        listeners.values(),
        read_seconds=settings["surveykit.request_read_seconds"],
        max_body_bytes=settings["surveykit.max_body_bytes"],
    )
    addresses = [
        f"http://{listener.effective_host}:{listener.effective_port}"
        for listener in listeners.values()
        if isinstance(listener, BaseWSGIServer)
    ]
    return server, addresses


def run(app: Any, global_conf: dict[str, Any] | None = None, **options: Any) -> int:
    """The ``paste.server_runner``: first start, then serve ``app`` until interrupted."""
    from surveykit.logs import apply_format

    registry = app.registry
    settings = registry.settings
    apply_format(settings["surveykit.log_format"])
    echo = _stdout_echo
    describe_store(settings, registry["db_engine"], echo)
    prepare_database(settings, registry["db_engine"], echo)
    from surveykit.exports.worker import start_worker

    export_worker = start_worker(registry)
    server, addresses = create_server(app, settings, options)
    for address in addresses:
        echo(f"the web console: {address}/console/ (sign in; change a printed password under My account)")
        echo(f"surveykit is serving on {address}/api/v1/instruments")
    sys.stdout.flush()
    try:
        server.run()
    except KeyboardInterrupt:
        echo("stopped")
    finally:
        export_worker.stop()
    return 0


def describe_store(settings: dict[str, Any], engine: Engine, echo: Callable[[str], None]) -> None:
    if is_sqlite(settings["sqlalchemy.url"]):
        echo(f"data: {settings['surveykit.data_dir']} (SQLite)")
        if settings["surveykit.environment"] == "production":
            log.warning(
                "PRODUCTION ON SQLITE: no database URL is set (SURVEYKIT_DATABASE_URL or sqlalchemy.url), "
                "so this production server stores everything in %s; set the PostgreSQL URL unless "
                "one embedded database is really meant",
                settings["sqlalchemy.url"],
            )
    else:
        echo(f"data: {engine.url.render_as_string(hide_password=True)}")


def _stdout_echo(line: str) -> None:
    print(line, flush=True)


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
    from surveykit.logs import log_server_refusal

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
            peer = self.channel.addr[0] if isinstance(self.channel.addr, tuple) else None
            # A request line waitress could not parse has no method.
            log_server_refusal(getattr(self.request, "command", None), status, len(data), peer)

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
