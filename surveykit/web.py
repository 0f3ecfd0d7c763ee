"""Request and response plumbing shared by every API view.

- a tween that refuses bodies over the configured size before any view reads them (413);
- ``json_body``: content type (415), strict UTF-8 and JSON (400), colander validation (422);
- ``representation``: strong ETags, 304 answers and gzip for content that is known in advance.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import colander
from pyramid.request import Request
from pyramid.response import Response

from surveykit.errors import APIError, ErrorCode, error_response, field_error

JSON_CONTENT_TYPES = {"application/json"}
# Python's json module recurses per nesting level; refuse absurd depth before it runs out of stack.
MAX_JSON_DEPTH = 64


def body_too_large(request: Request) -> bool:
    limit = request.registry.settings["surveykit.max_body_bytes"]
    return request.content_length is not None and request.content_length > limit


def retry_attempts(request: Request) -> int | None:
    """pyramid_retry hook: a body that is refused anyway must not be copied for replays first."""
    return 1 if body_too_large(request) else None


def body_limit_tween_factory(handler: Callable[[Request], Response], registry: Any):
    limit = registry.settings["surveykit.max_body_bytes"]

    def body_limit_tween(request: Request) -> Response:
        if body_too_large(request):
            return error_response(
                413,
                ErrorCode.BODY_TOO_LARGE,
                f"request body of {request.content_length} bytes exceeds the limit of {limit} bytes",
            )
        if not _url_decodes(request):
            # Refused here because routing, views and the error views all decode the URL and
            # would otherwise fail with an unhandled UnicodeDecodeError.
            return error_response(400, ErrorCode.BAD_REQUEST, "request URL is not valid UTF-8")
        return handler(request)

    return body_limit_tween


def _url_decodes(request: Request) -> bool:
    try:
        request.path_info  # noqa: B018  (decoding is the check)
        request.GET  # noqa: B018
    except UnicodeDecodeError:
        return False
    return True


def _refuse_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and neither do the databases.
    raise ValueError(f"{name} is not valid JSON")


def json_body(request: Request, schema: colander.SchemaNode | None = None) -> Any:
    """The request's JSON body, validated by ``schema`` when one is given."""
    if request.content_type not in JSON_CONTENT_TYPES:
        raise APIError(
            415,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"expected Content-Type application/json, got {request.content_type or 'none'}",
        )
    raw = request.body
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(
            400, ErrorCode.MALFORMED_JSON, f"request body is not valid UTF-8 (byte {exc.start})"
        ) from exc
    if _nesting_depth_exceeds(text, MAX_JSON_DEPTH):
        raise APIError(400, ErrorCode.MALFORMED_JSON, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise APIError(
            400,
            ErrorCode.MALFORMED_JSON,
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from exc
    except ValueError as exc:
        raise APIError(400, ErrorCode.MALFORMED_JSON, f"request body is not valid JSON: {exc}") from exc
    if schema is None:
        return data
    try:
        return schema.deserialize(data)
    except colander.Invalid as invalid:
        raise invalid_input(invalid) from invalid


def _nesting_depth_exceeds(text: str, limit: int) -> bool:
    # A quick scan that ignores brackets inside strings; exact enough to guard the parser.
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def colander_path(dotted: str) -> str:
    """``sections.0.questions.1.id`` -> ``sections[0].questions[1].id``."""
    out = ""
    for part in dotted.split("."):
        if part.isdigit():
            out += f"[{part}]"
        elif part:
            out += f".{part}" if out else part
    return out


def invalid_details(invalid: colander.Invalid, location: str = "body") -> list[dict[str, str]]:
    details = [
        field_error(colander_path(path), message, location)
        for path, message in sorted(invalid.asdict().items())
    ]
    return details or [field_error("", str(invalid.msg), location)]


def invalid_input(invalid: colander.Invalid, location: str = "body") -> APIError:
    details = invalid_details(invalid, location)
    summary = "; ".join(f"{d['path'] or '(root)'}: {d['message']}" for d in details[:3])
    more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
    return APIError(422, ErrorCode.INVALID_INPUT, f"invalid input: {summary}{more}", details)


@dataclass(frozen=True)
class Representation:
    """A response body fixed in advance, with its gzip form, identified by a strong ETag."""

    etag: str
    body: bytes
    gzipped: bytes
    content_type: str = "application/json"

    @classmethod
    def of_json(cls, etag: str, payload: Any) -> Representation:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(etag=etag, body=body, gzipped=gzip.compress(body, compresslevel=6, mtime=0))


def representation(request: Request, rep: Representation, cache_control: str) -> Response:
    """Answer with ``rep``, or 304 when the client already holds it."""
    held = _held_tag(request, rep.etag)
    if held is not None:
        # The tablet's usual re-check: answered before anything else is worked out.
        response = Response(status=304, content_type=None)
        response.headers["ETag"] = f'"{held}"'
        response.headers["Cache-Control"] = cache_control
        response.headers["Vary"] = "Accept-Encoding, Authorization"
        return response
    # With no Accept-Encoding header webob treats every coding as acceptable; plain bytes are safer.
    wants_gzip = "Accept-Encoding" in request.headers and bool(
        request.accept_encoding.acceptable_offers(["gzip"])
    )
    # The gzip bytes are a different representation, so they carry a different strong tag.
    etag = f"{rep.etag}-gzip" if wants_gzip else rep.etag
    response = Response(
        content_type=rep.content_type, charset="utf-8" if "json" in rep.content_type else None
    )
    response.headers["ETag"] = f'"{etag}"'
    response.headers["Cache-Control"] = cache_control
    response.headers["Vary"] = "Accept-Encoding, Authorization"
    if wants_gzip:
        response.body = rep.gzipped
        response.content_encoding = "gzip"
    else:
        response.body = rep.body
    return response


def _held_tag(request: Request, etag: str) -> str | None:
    """Which of the representation's tags (plain or gzip) the client says it holds, if any."""
    header = request.headers.get("If-None-Match")
    if not header:
        return None
    if header.strip() == "*":
        return etag
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        tag = tag.strip('"')
        if tag in (etag, f"{etag}-gzip"):
            return tag
    return None


def query_params(request: Request, schema: colander.SchemaNode) -> Any:
    """The query string validated by ``schema`` (a parameter given twice is an error)."""
    params: dict[str, str] = {}
    for key, value in request.GET.items():
        if key in params:
            raise APIError(
                422,
                ErrorCode.INVALID_INPUT,
                f"query parameter {key!r} is given twice",
                [field_error(key, "given twice", "querystring")],
            )
        params[key] = value
    try:
        return schema.deserialize(params)
    except colander.Invalid as invalid:
        raise invalid_input(invalid, "querystring") from invalid
