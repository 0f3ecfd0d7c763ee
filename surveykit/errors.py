"""One JSON error envelope for every failure the API can answer with.

Every error body has the same shape, whatever raised it::

    {"status": 404, "code": "instrument_not_found", "message": "...", "details": [...]}

``details`` lists field errors as ``{"location": "body", "path": "sections[0].id", "message": "..."}``.
Codes are stable strings that clients may switch on; messages are for people.
"""

from __future__ import annotations

import logging
import sqlite3
from enum import StrEnum
from typing import Any

import psycopg
from pyramid.exceptions import PredicateMismatch
from pyramid.httpexceptions import HTTPException
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import exception_view_config, notfound_view_config
from pyramid_retry import RetryableException
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError as DatabaseOperationalError

log = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    MALFORMED_JSON = "malformed_json"
    INVALID_INPUT = "invalid_input"
    UNAUTHENTICATED = "unauthenticated"
    INVALID_CREDENTIALS = "invalid_credentials"
    ACCOUNT_LOCKED = "account_locked"
    REFRESH_REFUSED = "refresh_refused"
    ENROLMENT_REFUSED = "enrolment_refused"
    USER_NOT_FOUND = "user_not_found"
    DEVICE_NOT_FOUND = "device_not_found"
    DEVICE_REVOKED = "device_revoked"
    FORBIDDEN = "forbidden"
    ACCESS_TOKEN_NOT_ALLOWED = "access_token_not_allowed"
    NOT_FOUND = "not_found"
    INSTRUMENT_NOT_FOUND = "instrument_not_found"
    VERSION_NOT_FOUND = "version_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    CONFLICT = "conflict"
    PRECONDITION_FAILED = "precondition_failed"
    BODY_TOO_LARGE = "body_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    TOO_MANY_REQUESTS = "too_many_requests"
    STUDY_NOT_FOUND = "study_not_found"
    COUNTRY_NOT_FOUND = "country_not_found"
    ACTIVITY_NOT_FOUND = "activity_not_found"
    PARTICIPANT_NOT_FOUND = "participant_not_found"
    INVALID_STATUS_TRANSITION = "invalid_status_transition"
    IMPORT_INVALID = "import_invalid"
    NUMBERS_EXHAUSTED = "interview_numbers_exhausted"
    UNUSED_NUMBERS_LIMIT = "unused_numbers_limit"
    SYNC_BATCH_TOO_LARGE = "batch_too_large"
    SYNC_RECORD_INVALID = "record_invalid"
    SYNC_OUT_OF_SCOPE = "out_of_scope"
    SYNC_NUMBER_REFUSED = "interview_number_refused"
    SYNC_CURSOR_AHEAD = "cursor_ahead"
    SYNC_CONFLICT_NOT_FOUND = "conflict_not_found"
    SYNC_CONFLICT_RESOLVED = "conflict_already_resolved"
    SYNC_STALE_BASE = "stale_base_revision"
    INTERVIEW_NOT_FOUND = "interview_not_found"
    CODING_NOT_FOUND = "coding_not_found"
    CODE_NOT_FOUND = "code_not_found"
    STALE_VERSION = "stale_version"
    INTERNAL_ERROR = "internal_error"
    SERVICE_UNAVAILABLE = "service_unavailable"


# The code used when a plain Pyramid HTTP exception (not an APIError) reaches the error view.
_CODE_FOR_STATUS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.NOT_ACCEPTABLE,
    409: ErrorCode.CONFLICT,
    412: ErrorCode.PRECONDITION_FAILED,
    413: ErrorCode.BODY_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.TOO_MANY_REQUESTS,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


class APIError(Exception):
    """Raise from anywhere in a request to answer with the error envelope."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def field_error(path: str, message: str, location: str = "body") -> dict[str, str]:
    return {"location": location, "path": path, "message": message}


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = Response(status=status, content_type="application/json", charset="utf-8")
    response.json_body = {
        "status": status,
        "code": str(code),
        "message": message,
        "details": details or [],
    }
    response.headers.update(headers or {})
    response.cache_control = "no-store"
    return response


@exception_view_config(APIError)
def api_error_view(exc: APIError, request: Request) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


@notfound_view_config()
def not_found_view(exc: HTTPException, request: Request) -> Response:
    if isinstance(exc, PredicateMismatch) and request.matched_route is not None:
        allowed = allowed_methods(request, request.matched_route.name)
        if request.method not in allowed:
            return error_response(
                405,
                ErrorCode.METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed on {request.path}; allowed: {', '.join(sorted(allowed))}",
                headers={"Allow": ", ".join(sorted(allowed))},
            )
    return error_response(404, ErrorCode.NOT_FOUND, f"nothing is served at {request.path}")


@exception_view_config(HTTPException)
def http_exception_view(exc: HTTPException, request: Request) -> Response:
    if exc.code < 400:
        return exc
    code = _CODE_FOR_STATUS.get(exc.code, ErrorCode.BAD_REQUEST)
    message = exc.detail or exc.explanation or exc.title
    return error_response(exc.code, code, str(message))


class ConcurrentWrite(RetryableException):
    """What a request read is being changed by another transaction that committed while it was
    reading: pyramid_retry replays the request, which then reads the other's outcome."""


@exception_view_config(IntegrityError)
@exception_view_config(ConcurrentWrite)
def integrity_error_view(exc: IntegrityError | ConcurrentWrite, request: Request) -> Response:
    # Reached only after pyramid_retry's replays also collided: a genuine conflict.
    log.warning("concurrent write on %s %s: %s", request.method, request.path, getattr(exc, "orig", exc))
    return error_response(409, ErrorCode.CONFLICT, "the change conflicts with stored data; retry")


# How long a client is asked to wait before retrying when the database does not answer.
DATABASE_RETRY_AFTER_SECONDS = 5


@exception_view_config(DatabaseOperationalError)
@exception_view_config(psycopg.OperationalError)  # the cache epoch's own libpq read
@exception_view_config(sqlite3.OperationalError)  # the cache epoch's own read on SQLite
def database_unavailable_view(exc: Exception, request: Request) -> Response:
    """The database is down, unreachable or too busy (after pyramid_retry's replays): a 503 the
    client retries, not a 500."""
    request_id = request.environ.get("surveykit.request_id", "-")
    log.error("database unavailable on %s %s (request %s): %s", request.method, request.path, request_id, exc)
    return error_response(
        503,
        ErrorCode.SERVICE_UNAVAILABLE,
        f"the database is unavailable or busy; retry shortly (request {request_id})",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


@exception_view_config(Exception)
def unexpected_error_view(exc: Exception, request: Request) -> Response:
    request_id = request.environ.get("surveykit.request_id", "-")
    log.error("unhandled error on %s %s (request %s)", request.method, request.path, request_id, exc_info=exc)
    return error_response(
        500, ErrorCode.INTERNAL_ERROR, f"internal error; it has been logged as request {request_id}"
    )


def allowed_methods(request: Request, route_name: str) -> set[str]:
    """The request methods some view on the route accepts (from Pyramid's introspector)."""
    cache: dict[str, set[str]] = request.registry.setdefault("surveykit.allowed_methods", {})
    if route_name not in cache:
        methods: set[str] = set()
        for view in request.registry.introspector.get_category("views") or []:
            intr = view["introspectable"]
            if intr["route_name"] == route_name and intr["request_methods"]:
                found = intr["request_methods"]
                methods.update([found] if isinstance(found, str) else found)
        if "GET" in methods:
            methods.add("HEAD")
        cache[route_name] = methods
    return cache[route_name]


def exceptions_as_json_tween_factory(handler: Any, registry: Any):
    """Answers an exception raised above Pyramid's exception-view tween with the same exception
    views. pyramid_tm asks for the caller's identity (which reads the cache epoch) before the view
    runs, so a database that does not answer fails there; pyramid_retry, the execution policy,
    re-raises what it cannot replay, and the server would then answer with its own text/plain 500."""

    def exceptions_as_json_tween(request: Request) -> Response:
        try:
            return handler(request)
        except Exception:
            return request.invoke_exception_view(reraise=True)

    return exceptions_as_json_tween
