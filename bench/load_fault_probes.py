"""Hostile and slow clients for bench/load_fault.py: raw sockets, so a request can be anything.

Each probe sends one misbehaving request to a running ``surveykit serve`` and returns a ``Probe``:
what came back (status, the envelope's ``code``, content type), how long it took, how many bytes
left the client before the answer, and whether that matches the expected outcome. Nothing here
retries; every socket has a timeout, every loop is bounded.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
import uuid as uuid_module
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SYNC = "/api/v1/sync"
MIB = 1024 * 1024


@dataclass
class Answer:
    status: int | None = None
    content_type: str = ""
    body: bytes = b""
    error: str | None = None  # no (complete) answer: why
    elapsed: float = 0.0
    sent: int = 0  # body bytes that left the client before the answer (or the failure)

    def envelope(self) -> dict[str, Any] | None:
        if not self.content_type.startswith("application/json"):
            return None
        try:
            body = json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
        if isinstance(body, dict) and isinstance(body.get("code"), str) and body.get("status") == self.status:
            return body
        return None

    def code(self) -> str | None:
        envelope = self.envelope()
        return envelope["code"] if envelope else None

    def shown(self) -> str:
        if self.status is None:
            return f"no answer ({self.error})"
        code = self.code()
        if code:
            return f"{self.status} {code}"
        kind = self.content_type.split(";")[0] or "no content type"
        snippet = self.body[:60].decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")
        return f"{self.status} {kind} {snippet!r}" if self.status >= 400 else f"{self.status} {kind}"


@dataclass
class Probe:
    name: str
    expected: str
    answer: Answer
    passed: bool
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _read_answer(sock: socket.socket, timeout: float) -> tuple[int, str, bytes]:
    sock.settimeout(timeout)
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        body = response.read()
    finally:
        response.close()
    return response.status, response.getheader("Content-Type") or "", body


def raw_request(
    port: int,
    head: bytes,
    body: bytes = b"",
    *,
    chunks: Callable[[], Any] | None = None,
    timeout: float = 60.0,
) -> Answer:
    """Send ``head`` (request line and headers, CRLF-terminated) and ``body`` at once, or the pieces
    ``chunks()`` yields (bytes, or a float: seconds to wait before the next piece). Stops sending as
    soon as the server answers early (a 413 before the body is in, say) and reads that answer."""
    started = time.monotonic()
    answer = Answer()
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError as exc:
        answer.error = f"connect: {exc}"
        answer.elapsed = time.monotonic() - started
        return answer
    try:
        sock.settimeout(timeout)
        sock.sendall(head)
        pieces = chunks() if chunks is not None else ([body] if body else [])
        try:
            for piece in pieces:
                # Readable before the body is all sent: the server answered (or closed) early.
                wait = piece if isinstance(piece, float) else 0
                readable, _, _ = select.select([sock], [], [], wait)
                if readable:
                    break
                if not isinstance(piece, float):
                    sock.sendall(piece)
                    answer.sent += len(piece)
        except OSError as exc:  # the server closed while we were still sending: read what it said
            answer.error = f"send: {exc.__class__.__name__}"
        try:
            status, content_type, data = _read_answer(sock, timeout)
            answer.status, answer.content_type, answer.body = status, content_type, data
            answer.error = None
        except (OSError, http.client.HTTPException) as exc:
            answer.error = (answer.error + "; " if answer.error else "") + f"read: {exc.__class__.__name__}"
    finally:
        sock.close()
        answer.elapsed = time.monotonic() - started
    return answer


def request_head(method: str, target: bytes, token: str | None, extra: dict[str, str]) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if token:
        lines.append(f"Authorization: Bearer {token}".encode())
    lines += [f"{name}: {value}".encode() for name, value in extra.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def json_head(target: bytes, token: str | None, length: int | None, close: bool = True) -> bytes:
    headers = {"Content-Type": "application/json"}
    if length is not None:
        headers["Content-Length"] = str(length)
    if close:
        headers["Connection"] = "close"
    return request_head("POST", target, token, headers)


def is_envelope(answer: Answer, status: int, codes: tuple[str, ...]) -> bool:
    return answer.status == status and answer.code() in codes


# ------------------------------------------------------------------------------------------ probes


def slow_body(port: int, token: str, seconds: int, deadline: int) -> Probe:
    """A valid (empty) sync batch, padded with JSON whitespace to ``seconds`` bytes and sent one byte
    per second. The server (``SURVEYKIT_REQUEST_READ_SECONDS`` = ``deadline``, shorter than the
    trickle) must cut it off with a JSON 408 once the deadline has passed, without having held a
    worker thread meanwhile."""
    core = b'{"changes":[]}'
    body = core + b" " * max(0, seconds - len(core))

    def pieces() -> Any:
        for index in range(len(body)):
            if index:
                yield 1.0
            yield body[index : index + 1]

    answer = raw_request(port, json_head(SYNC.encode(), token, len(body)), chunks=pieces, timeout=30)
    ok = is_envelope(answer, 408, ("request_timeout",)) and deadline <= answer.elapsed <= deadline + 3
    return Probe(
        f"slow body, 1 byte/s ({len(body)} bytes)",
        f"408 request_timeout about {deadline} s after the first byte",
        answer,
        ok,
        note=f"answered {answer.elapsed:.0f} s after the first byte",
    )


def stalled_body(port: int, token: str, declared: int, seconds: int) -> Probe:
    """Declares ``declared`` bytes, sends one byte per second for ``seconds`` seconds (less than the
    read deadline), then falls silent. The deadline is checked when bytes arrive; a connection that
    sends nothing more is closed after ``channel_timeout`` (120 s) of silence, so the expected
    outcome is that the server waits without answering, and serves others meanwhile."""
    body = b'{"changes":[' + b" " * declared

    def pieces() -> Any:
        for index in range(seconds):
            if index:
                yield 1.0
            yield body[index : index + 1]
        yield 1.0

    answer = raw_request(port, json_head(SYNC.encode(), token, declared), chunks=pieces, timeout=3)
    # No answer while the body is incomplete is the documented outcome; any answer must be JSON.
    ok = answer.status is None or answer.envelope() is not None
    note = (
        "still waiting for the body when the client gave up"
        if answer.status is None
        else "the server answered early"
    )
    return Probe(
        f"stalled body ({seconds} of {declared} bytes, 1 byte/s)",
        "no answer while it is silent (the read deadline is checked as bytes arrive)",
        answer,
        ok,
        note=note,
    )


def huge_body(port: int, token: str, size: int, chunked: bool = False) -> Probe:
    """``size`` bytes of body, announced by Content-Length (or chunked, announced by nothing): the
    server must refuse with a JSON 413 long before the body is in."""
    piece = b" " * MIB
    if chunked:
        head = request_head(
            "POST",
            SYNC.encode(),
            token,
            {"Content-Type": "application/json", "Transfer-Encoding": "chunked", "Connection": "close"},
        )
        frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

        def pieces() -> Any:
            yield b"100000\r\n" + b"{" + piece[1:] + b"\r\n"
            for _ in range(size // MIB - 1):
                yield frame
            yield b"0\r\n\r\n"

    else:
        head = json_head(SYNC.encode(), token, size)

        def pieces() -> Any:
            yield b"{" + piece[1:]
            for _ in range(size // MIB - 1):
                yield piece

    answer = raw_request(port, head, chunks=pieces, timeout=60)
    ok = is_envelope(answer, 413, ("body_too_large",)) and answer.sent < size
    how = "chunked, no length" if chunked else "Content-Length"
    return Probe(
        f"{size // MIB} MiB body ({how})",
        "413 body_too_large before the body is in",
        answer,
        ok,
        note=f"{answer.sent / MIB:.1f} MiB sent before the answer",
    )


def deep_json(port: int, token: str, levels: int) -> Probe:
    body = b'{"changes":' + b"[" * levels + b"]" * levels + b"}"
    answer = raw_request(port, json_head(SYNC.encode(), token, len(body)), body, timeout=60)
    return Probe(
        f"JSON nested {levels:,} levels",
        "400 malformed_json",
        answer,
        is_envelope(answer, 400, ("malformed_json",)),
    )


def bad_utf8_body(port: int, token: str) -> Probe:
    body = b'{"changes":[{"uuid":"\xff\xfe","base_revision":0,"record":{"notes":"\xc3\x28"}}]}'
    answer = raw_request(port, json_head(SYNC.encode(), token, len(body)), body, timeout=30)
    return Probe(
        "invalid UTF-8 in the body",
        "400 malformed_json",
        answer,
        is_envelope(answer, 400, ("malformed_json",)),
    )


def bad_utf8_url(port: int, token: str, target: bytes, label: str) -> Probe:
    head = request_head("GET", target, token, {"Connection": "close"})
    answer = raw_request(port, head, timeout=30)
    return Probe(
        f"invalid UTF-8 in the URL: {label}",
        "400 bad_request",
        answer,
        is_envelope(answer, 400, ("bad_request",)),
    )


def small_record(study: str, country: str, number: int) -> dict[str, Any]:
    return {
        "study": study,
        "country": country,
        "activity": "RA1",
        "interview_number": number,
        "participants": [
            {
                "letter": "A",
                "agency": "Ministry of ICT",
                "position": None,
                "consent_given": True,
                "consent_date": "2026-05-04",
                "consent_recorded_how": "verbal_notes",
            }
        ],
        "instrument": {"slug": "ra1-duty-bearers", "version": 1},
        "language": "en",
        "mode": "in_person",
        "started_at": "2026-05-04T09:30:00+03:00",
        "status": "draft",
        "answers": {"agency": "Ministry of ICT"},
    }


def huge_batch(port: int, token: str, study: str, country: str, count: int, limit: int) -> Probe:
    """``count`` well-formed new records in one push (about 0.6 KB each, so the body stays under the
    body limit and the batch limit is what answers): 413 batch_too_large, nothing stored."""
    changes = [
        {
            "uuid": str(uuid_module.uuid4()),
            "base_revision": 0,
            "record": small_record(study, country, 5000 + i),
        }
        for i in range(count)
    ]
    body = json.dumps({"changes": changes}, separators=(",", ":")).encode("utf-8")
    answer = raw_request(port, json_head(SYNC.encode(), token, len(body)), body, timeout=120)
    return Probe(
        f"{count:,} records in one batch ({len(body) / MIB:.1f} MiB)",
        f"413 batch_too_large (at most {limit} per batch)",
        answer,
        is_envelope(answer, 413, ("batch_too_large",)),
        extra={"uuids": [c["uuid"] for c in changes]},
    )
