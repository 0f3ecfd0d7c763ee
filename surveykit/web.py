"""Request and response plumbing shared by every API view.

- a tween that refuses bodies over the configured size before any view reads them (413);
- ``json_body``: content type (415), strict UTF-8 and JSON without duplicate keys (400), the text
  rule of ``surveykit.text`` (422), colander validation (422);
- ``refuse_unusable_url_text``: the text rule for path segments and the query string (400);
- ``representation``: strong ETags, 304 answers and gzip for content that is known in advance.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import colander
import orjson
from pyramid.events import BeforeTraversal
from pyramid.request import Request
from pyramid.response import Response

from surveykit import spreadsheet_files
from surveykit import text as text_rule
from surveykit.errors import APIError, ErrorCode, error_response, field_error

JSON_CONTENT_TYPES = {"application/json"}
# The views, the text rule and colander walk bodies recursively in Python: refuse absurd depth.
MAX_JSON_DEPTH = 64
# orjson refuses more than 1,024 nested arrays and objects: inside this many arrays, a body may be
# nested MAX_JSON_DEPTH levels deep and no more.
_DEPTH_PADDING = 1024 - MAX_JSON_DEPTH
_PAD_OPEN, _PAD_CLOSE = b"[" * _DEPTH_PADDING, b"]" * _DEPTH_PADDING
# orjson reads an integer beyond 64 bits as a float; Python's json keeps it whole. Such a literal has
# at least 19 digits in a row: with every digit mapped to "0" and the rest to " ", a C-speed search.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19
# Where a JSON text may carry a character the text rule refuses: an escape of a C0 or C1 control, DEL
# or a surrogate half (\u0000, \b, \f, \udc80, ...), or a raw DEL or C1 character (raw C0 characters
# in strings are already invalid JSON). Only a body with such a spot is walked string by string; the
# others are cleared by this one scan at C speed. Escaped backslashes and surrogate pairs match too:
# the walk decides. Two expressions: one alternation of both scans three times slower.
_SUSPECT_ESCAPE = re.compile(r"\\(?:u(?:00[01]|00[89]|007[fF]|[dD][89a-fA-F])|[bf])")
_SUSPECT_RAW = re.compile(r"[\x7f-\x9f]")


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


def json_body(
    request: Request,
    schema: colander.SchemaNode | None = None,
    *,
    text_checked_by_view: re.Pattern[str] | None = None,
) -> Any:
    """The request's JSON body, validated by ``schema`` when one is given.

    Every string in it must obey the text rule (``surveykit.text``); ``text_checked_by_view`` names
    the paths (matched from the start of a detail's path) whose text the view checks itself, item by
    item (a sync batch answers a bad record ``rejected`` and stores the others).
    """
    if request.content_type not in JSON_CONTENT_TYPES:
        raise APIError(
            415,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"expected Content-Type application/json, got {request.content_type or 'none'}",
        )
    raw = request.body
    data = _parse_json(raw)
    text = raw.decode("utf-8")  # valid: the parse refused anything else
    if _SUSPECT_ESCAPE.search(text) or _may_hold_raw_control(raw, text):
        problems = [
            (path, message)
            for path, message in text_rule.tree_problems(data)
            if text_checked_by_view is None or not text_checked_by_view.match(path)
        ]
        if problems:
            details = [field_error(path, message) for path, message in problems]
            raise APIError(422, ErrorCode.INVALID_INPUT, _summary("invalid text", details), details)
    if schema is None:
        return data
    try:
        return schema.deserialize(data)
    except colander.Invalid as invalid:
        raise invalid_input(invalid) from invalid


def _duplicate_key_error(data: Any, obj: dict[str, Any], key: str) -> APIError:
    where = _path_of(data, obj, "") or ""
    path = text_rule.json_path(where, key)
    place = f"the object at {where}" if where else "the top-level object"
    return APIError(
        400,
        ErrorCode.MALFORMED_JSON,
        f"request body is not valid JSON for this API: the key {text_rule.printable(key)!r} appears "
        f"more than once in {place}",
        [field_error(path, "this key appears more than once in its object")],
    )


def _path_of(data: Any, target: Any, path: str) -> str | None:
    """The path of the object ``target`` (by identity) inside ``data``; only used to report an error."""
    if data is target:
        return path
    if isinstance(data, dict):
        items: Any = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return None
    for key, child in items:
        if isinstance(child, dict | list):
            found = _path_of(child, target, text_rule.json_path(path, key))
            if found is not None:
                return found
    return None


def _parse_json(raw: bytes) -> Any:
    """The body parsed by orjson, which refuses invalid UTF-8, NaN, infinities, numbers that do not
    fit a double, lone surrogates and (padded, see ``_DEPTH_PADDING``) nesting deeper than
    ``MAX_JSON_DEPTH``, all at C speed. Bodies it refuses for another reason than depth, and the rare
    one that may hold a key twice or an integer orjson would turn into a float, go through
    ``_parse_json_strictly`` (the standard library): it gives the precise error or, for what the sync
    refuses record by record (a lone surrogate, a 400-digit number), the data with it."""
    try:
        padded = orjson.loads(_PAD_OPEN + raw + _PAD_CLOSE)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise APIError(
                400, ErrorCode.MALFORMED_JSON, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
            ) from exc
        return _parse_json_strictly(raw)
    data = padded
    for _ in range(_DEPTH_PADDING):
        if not isinstance(data, list) or len(data) != 1:
            return _parse_json_strictly(raw)  # not one JSON value, e.g. "1], [2"
        data = data[0]
    if _may_repeat_a_key(raw, data) or _LONG_DIGIT_RUN in raw.translate(_DIGITS_AS_ZEROS):
        return _parse_json_strictly(raw)
    return data


def _may_hold_raw_control(raw: bytes, text: str) -> bool:
    # In UTF-8, DEL is the byte 7F and every C1 character starts with the byte C2: when neither byte
    # occurs (most bodies), the slower character search is not needed.
    return b"\x7f" in raw or (b"\xc2" in raw and _SUSPECT_RAW.search(text) is not None)


def _may_repeat_a_key(raw: bytes, data: Any) -> bool:
    """Whether an object of the body may hold a key twice (orjson keeps the last one silently).

    Outside strings, a colon follows each key and nothing else, so the body's colons are its keys
    plus the colons inside its strings; orjson's serialisation of the data counts the same unless a
    key was dropped with its value. Only a colon written as an escape (``\\u003a``) could make up for a
    dropped one: a body with any ``\\u003X`` escape is suspect (an exact test would cost a walk)."""
    if b"\\u003" in raw:
        return True
    return raw.count(b":") != orjson.dumps(data).count(b":")


def _parse_json_strictly(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(
            400, ErrorCode.MALFORMED_JSON, f"request body is not valid UTF-8 (byte {exc.start})"
        ) from exc
    if _nesting_depth_exceeds(text, MAX_JSON_DEPTH):
        raise APIError(400, ErrorCode.MALFORMED_JSON, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    duplicated: list[tuple[dict[str, Any], str]] = []

    def build_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            key = next(key for key, _ in pairs if key in seen or seen.add(key))
            duplicated.append((obj, key))
        return obj

    try:
        data = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=build_object)
    except json.JSONDecodeError as exc:
        raise APIError(
            400,
            ErrorCode.MALFORMED_JSON,
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from exc
    except ValueError as exc:
        raise APIError(400, ErrorCode.MALFORMED_JSON, f"request body is not valid JSON: {exc}") from exc
    if duplicated:
        raise _duplicate_key_error(data, *duplicated[0])
    return data


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
    return APIError(422, ErrorCode.INVALID_INPUT, _summary("invalid input", details), details)


def _summary(lead: str, details: list[dict[str, str]]) -> str:
    summary = "; ".join(f"{d['path'] or '(root)'}: {d['message']}" for d in details[:3])
    more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
    return f"{lead}: {summary}{more}"


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


def client_holds(request: Request, tag: str) -> bool:
    """Whether ``If-None-Match`` names ``tag`` (or ``*``): a weak comparison, as is right for
    If-None-Match (RFC 9110 13.1.2)."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    return tag in [part.strip().removeprefix("W/").strip('"') for part in header.split(",")]


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


def refuse_unusable_url_text(event: BeforeTraversal) -> None:
    """The text rule for the URL (one-line text): every path segment a route matched and every query
    key and value. Runs after route matching and before the route's factory loads anything."""
    request = event.request
    details = [
        field_error(name, message, "path")
        for name, value in (request.matchdict or {}).items()
        for segment in (value if isinstance(value, tuple) else (value,))
        if isinstance(segment, str) and (message := text_rule.text_problem(segment))
    ]
    for key, value in request.GET.items():
        if message := text_rule.text_problem(key):
            details.append(field_error(text_rule.printable(key), f"the name {message}", "querystring"))
        elif message := text_rule.text_problem(value):
            details.append(field_error(key, message, "querystring"))
    if details:
        raise APIError(400, ErrorCode.BAD_REQUEST, _summary("the URL holds unusable text", details), details)


TABLE_CONTENT_TYPES = frozenset({*spreadsheet_files.CSV_CONTENT_TYPES, spreadsheet_files.XLSX_CONTENT_TYPE})


def uploaded_table(request: Request, noun: str) -> tuple[bytes, str | None, str | None, dict[str, str]]:
    """A CSV or XLSX upload (the registry's sheet, a codebook): sent raw with its content type, or
    as the multipart form field ``file``. Returns the file's bytes, declared type and name, and the
    form's other fields (multipart only); ``noun`` names the file in the errors."""
    if request.content_type == "multipart/form-data":
        try:
            items = list(request.POST.items())
        except Exception as exc:  # webob's multipart parser fails in many ways on a broken body
            raise APIError(400, ErrorCode.BAD_REQUEST, "the multipart body cannot be read") from exc
        form: dict[str, str] = {}
        upload = None
        for key, value in items:
            if hasattr(value, "file"):
                if key != "file" or upload is not None:
                    message = "send exactly one file, in the form field 'file'"
                    raise APIError(
                        422, ErrorCode.INVALID_INPUT, message, [field_error(key, "unexpected file")]
                    )
                upload = value
            elif key in form:
                message = f"form field {key!r} is given twice"
                raise APIError(422, ErrorCode.INVALID_INPUT, message, [field_error(key, "given twice")])
            else:
                form[key] = value
        if upload is None:
            message = f"no file: send the {noun} in the multipart form field 'file'"
            raise APIError(422, ErrorCode.INVALID_INPUT, message, [field_error("file", "required")])
        return upload.file.read(), upload.type, upload.filename, form
    if request.content_type in TABLE_CONTENT_TYPES:
        return request.body, request.content_type, None, {}
    raise APIError(
        415,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"send a CSV or XLSX {noun} (Content-Type text/csv, {spreadsheet_files.XLSX_CONTENT_TYPE} or "
        f"multipart/form-data), not {request.content_type or 'no content type'}",
    )


def form_or_query_params(request: Request, form: dict[str, str], schema: colander.SchemaNode) -> Any:
    """An upload's options, from the query string or from the fields of its multipart form (the
    same option in both is refused)."""
    both = set(form) & set(request.GET)
    if both:
        name = sorted(both)[0]
        message = f"{name!r} is given both in the query string and in the form"
        raise APIError(
            422, ErrorCode.INVALID_INPUT, message, [field_error(name, "given twice", "querystring")]
        )
    if form:
        try:
            return schema.deserialize({**dict(request.GET), **form})
        except colander.Invalid as invalid:
            raise invalid_input(invalid, "body") from invalid
    return query_params(request, schema)
