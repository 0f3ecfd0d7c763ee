"""Logging: the server's logging set-up, one access line per request, and request ids.

Every request gets an id: the client's ``X-Request-ID`` when it sends a sensible one (a tablet can
log its own and quote it), a new one otherwise. It is echoed in the answer's ``X-Request-ID``, carried
by every log record made while the request runs (``%(request_id)s``), and quoted in a 500's message,
so "the sync failed" leads to its line in the log. The access line names the method, route, status,
duration, size of the answer and who called (user and device ids); never a token, a query string or
a body.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import logging.config
import re
import secrets
import time
from collections.abc import Callable
from configparser import ConfigParser
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyramid.request import Request
    from pyramid.response import Response

ACCESS_LOGGER = "surveykit.access"
# waitress warns "Task queue depth is N" on every request that waits for a thread: under load, one
# line per request, at a cost of its own just when the server is busiest. The access line's duration
# shows the same wait, so the default (and both inis) log that logger's errors only.
WAITRESS_QUEUE_LOGGER = "waitress.queue"
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
TEXT_FORMAT = "%(asctime)s %(levelname)-5.5s [%(name)s] [%(request_id)s] %(message)s"

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("surveykit_request_id", default="-")
access_log = logging.getLogger(ACCESS_LOGGER)


# ------------------------------------------------------------------------------------ records

_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.request_id = current_request_id.get()
    return record


def install_record_factory() -> None:
    """Give every log record a ``request_id`` (``-`` outside a request), whatever configured logging."""
    if logging.getLogRecordFactory() is not _record_with_request_id:
        logging.setLogRecordFactory(_record_with_request_id)


install_record_factory()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message, the access fields, and the
    stack of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "access", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(ini_path: str | None, log_format: str) -> None:
    """Apply the ini's ``[loggers]`` sections when it has them, else a default: surveykit's INFO
    (the access log) and everything else's warnings to stderr.

    ``log_format`` ``json`` makes every handler write JSON lines.
    """
    parser = ConfigParser(interpolation=None)
    if ini_path:
        parser.read(ini_path)
    if parser.has_section("loggers"):
        from pyramid.paster import setup_logging

        setup_logging(ini_path)
    else:
        logging.basicConfig(level=logging.WARNING, format=TEXT_FORMAT, force=True)
        logging.getLogger("surveykit").setLevel(logging.INFO)
        logging.getLogger(WAITRESS_QUEUE_LOGGER).setLevel(logging.ERROR)
    apply_format(log_format)


def apply_format(log_format: str) -> None:
    """With ``json``, every handler of the root logger writes JSON lines."""
    if log_format == "json":
        formatter = JsonFormatter()
        for handler in logging.getLogger().handlers:
            handler.setFormatter(formatter)


# --------------------------------------------------------------------------------------- access


# A new request id is this process's random prefix and a count: unique without asking the operating
# system for randomness on every request (uuid4 did, at a few per cent of a cached GET's time).
_ID_PREFIX = secrets.token_hex(8)
_request_count = itertools.count(1)


def new_request_id() -> str:
    """32 hex characters, unique across processes and restarts (a random 64-bit prefix each start)."""
    return f"{_ID_PREFIX}{next(_request_count):016x}"


def request_id_for(request: Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.fullmatch(given) else new_request_id()


def _caller(request: Request) -> tuple[int | None, str | None]:
    """The user and device ids, if authentication already ran (never made here just to log)."""
    from pyramid.interfaces import ISecurityPolicy

    policy = request.registry.queryUtility(ISecurityPolicy)
    known = getattr(policy, "known_identity", None)
    identity = known(request) if known is not None else None
    if identity is None:
        return None, None
    return identity.user_id, identity.device_id


def access_log_tween_factory(handler: Callable[[Request], Response], registry: Any):
    def access_log_tween(request: Request) -> Response:
        request_id = request_id_for(request)
        request.environ["surveykit.request_id"] = request_id
        token = current_request_id.set(request_id)
        started = time.perf_counter()
        try:
            response = handler(request)
        except BaseException:
            log_access(request, 500, started, None)
            raise
        finally:
            current_request_id.reset(token)
        response.headers[REQUEST_ID_HEADER] = request_id
        token = current_request_id.set(request_id)
        try:
            log_access(request, response.status_code, started, response.content_length)
        finally:
            current_request_id.reset(token)
        return response

    return access_log_tween


def log_access(request: Request, status: int, started: float, size: int | None) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    route = request.matched_route.name if request.matched_route is not None else "-"
    user_id, device_id = _caller(request)
    fields = {
        "method": request.method,
        "route": route,
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        "bytes": size,
        "user_id": user_id,
        "device_id": device_id,
        "remote_addr": request.remote_addr,
    }
    access_log.info(
        "%s %s status=%s ms=%s bytes=%s user=%s device=%s addr=%s",
        request.method,
        route,
        status,
        fields["duration_ms"],
        "-" if size is None else size,
        "-" if user_id is None else user_id,
        "-" if device_id is None else device_id,
        request.remote_addr or "-",
        extra={"access": fields},
    )


def log_server_refusal(method: str | None, status: int, size: int, remote_addr: str | None) -> None:
    """The access line of a request waitress refused itself (it never reached the application)."""
    fields = {
        "method": method or "-",
        "route": "-",
        "status": status,
        "duration_ms": None,
        "bytes": size,
        "user_id": None,
        "device_id": None,
        "remote_addr": remote_addr,
    }
    access_log.info(
        "%s - status=%s bytes=%s addr=%s refused by the server",
        method or "-",
        status,
        size,
        remote_addr or "-",
        extra={"access": fields},
    )


def includeme(config: Any) -> None:
    from pyramid.tweens import INGRESS

    config.add_tween("surveykit.logs.access_log_tween_factory", under=INGRESS)
