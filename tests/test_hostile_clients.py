"""Hostile clients against a real `surveykit serve`: every refusal is the JSON error envelope.

Some requests never reach the application: waitress itself refuses a body over its cap (twice
SURVEYKIT_MAX_BODY_BYTES) or a request line it cannot parse. Those answers were waitress's
text/plain pages; `surveykit serve` now answers them in the envelope too (found by
bench/load_fault.py). The other hostile requests of that benchmark are checked here as well.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_client_support import STUDY, serving_one_tablet

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
READ_SECONDS = 3


def exchange(port: int, head: bytes, body: bytes = b"", body_size: int = 0) -> tuple[int, str, Any]:
    """Send ``head`` then ``body`` (or ``body_size`` spaces in 1 MiB pieces, stopping when the
    server closes early), and read the answer as JSON."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(head + body)
        try:
            piece = b" " * MIB
            for _ in range(body_size // MIB):
                sock.sendall(piece)
        except OSError:  # the server answered and closed before the body was in
            pass
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
        content_type = response.getheader("Content-Type") or ""
    finally:
        sock.close()
    return response.status, content_type, json.loads(data.decode("utf-8")) if data else None


def head(method: str, target: bytes, token: str | None = None, **headers: str) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {token}".encode())
    lines += [f"{name.replace('_', '-')}: {value}".encode() for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def assert_envelope(answer: tuple[int, str, Any], status: int, code: str) -> None:
    got_status, content_type, body = answer
    assert got_status == status, answer
    assert content_type.startswith("application/json"), answer
    assert body["status"] == status and body["code"] == code, body
    assert isinstance(body["message"], str) and isinstance(body["details"], list), body


@pytest.fixture(scope="module")
def server(databases: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir: Path = tmp_path_factory.mktemp("hostile")
    env = {"SURVEYKIT_REQUEST_READ_SECONDS": str(READ_SECONDS)}
    with serving_one_tablet(databases.create(), workdir, threads=4, env=env) as process:
        yield process
    assert "Traceback" not in process.log_text()


def test_a_body_declared_far_over_the_limit_is_refused_in_the_envelope_before_it_is_sent(server: Any) -> None:
    size = 100 * 1000 * 1000
    answer = exchange(
        server.port,
        head(
            "POST", b"/api/v1/sync", server.token, Content_Type="application/json", Content_Length=str(size)
        ),
        body_size=4 * MIB,  # the answer comes after the head; the rest is never sent
    )
    assert_envelope(answer, 413, "body_too_large")


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize(
    "declared",
    [10 * MIB + 1, 15 * MIB, 100 * 1000 * 1000],
    ids=["one-over", "under-waitress-cap", "far-over"],
)
def test_an_over_limit_body_announced_with_expect_100_continue_is_refused_before_it_is_invited(
    server: Any, declared: int
) -> None:
    """The 413 answers the headers: no `100 Continue` is sent and the body is never asked for (waitress
    alone invited it, and read up to twice the limit before refusing)."""
    request = head(
        "POST",
        b"/api/v1/sync",
        server.token,
        Content_Type="application/json",
        Content_Length=str(declared),
        Expect="100-continue",
    )
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(request)
        received = read_until_closed(sock)  # the server answers and closes without any body byte
    finally:
        sock.close()
    assert b"100 Continue" not in received, received[:200]
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), received[:200]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"application/json" in headers.lower()
    envelope = json.loads(body)
    assert envelope["status"] == 413 and envelope["code"] == "body_too_large", envelope
    assert f"{declared} bytes" in envelope["message"]


def test_a_body_within_the_limit_announced_with_expect_100_continue_is_invited_and_served(
    server: Any,
) -> None:
    body = b'{"changes": []}'
    request = head(
        "POST",
        b"/api/v1/sync",
        server.token,
        Content_Type="application/json",
        Content_Length=str(len(body)),
        Expect="100-continue",
    )
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(request)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        sock.sendall(body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = json.loads(response.read())
    finally:
        sock.close()
    assert response.status == 200 and answer["results"] == [], answer


def test_a_chunked_body_over_the_servers_cap_is_refused_in_the_envelope(server: Any) -> None:
    # No length announced: waitress counts the bytes and stops at its cap (2 x 10 MiB).
    frame = f"{MIB:x}\r\n".encode() + b" " * MIB + b"\r\n"
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(
            head(
                "POST",
                b"/api/v1/sync",
                server.token,
                Content_Type="application/json",
                Transfer_Encoding="chunked",
            )
        )
        try:
            for _ in range(24):
                sock.sendall(frame)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = (response.status, response.getheader("Content-Type") or "", json.loads(response.read()))
    finally:
        sock.close()
    assert_envelope(answer, 413, "body_too_large")


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /api/v1/instruments/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/instruments HTTP/1.1\r\nHost: x\r\nBroken header line\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nContent-Length: twelve\r\nConnection: close\r\n\r\n",
    ],
    ids=["raw-0xff-in-path", "malformed-header", "bad-content-length"],
)
def test_a_request_waitress_cannot_parse_is_answered_in_the_envelope(
    server: Any, request_head: bytes
) -> None:
    assert_envelope(exchange(server.port, request_head), 400, "bad_request")


@pytest.mark.parametrize(
    "target", [b"/api/v1/sync/changes?study=%ff%fe", b"/api/v1/instruments/%c3%28"], ids=["query", "path"]
)
def test_percent_encoded_invalid_utf8_in_the_url_is_a_json_400(server: Any, target: bytes) -> None:
    assert_envelope(exchange(server.port, head("GET", target, server.token)), 400, "bad_request")


def test_invalid_utf8_and_deep_nesting_in_the_body_are_json_400s(server: Any) -> None:
    for body in (
        b'{"changes":[{"uuid":"\xff\xfe","base_revision":0,"record":{}}]}',
        b'{"changes":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ):
        request = head(
            "POST",
            b"/api/v1/sync",
            server.token,
            Content_Type="application/json",
            Content_Length=str(len(body)),
        )
        assert_envelope(exchange(server.port, request, body), 400, "malformed_json")


def test_ten_thousand_records_in_one_batch_are_refused_whole(server: Any) -> None:
    record = {"study": STUDY, "country": "KE", "activity": "RA1", "interview_number": 1}
    body = json.dumps(
        {
            "changes": [
                {"uuid": str(uuid.uuid4()), "base_revision": 0, "record": record} for _ in range(10_000)
            ]
        }
    ).encode()
    request = head(
        "POST", b"/api/v1/sync", server.token, Content_Type="application/json", Content_Length=str(len(body))
    )
    assert_envelope(exchange(server.port, request, body), 413, "batch_too_large")


def test_a_request_trickled_past_the_read_deadline_gets_a_json_408(server: Any) -> None:
    """One byte every half second: once the request is READ_SECONDS old, the next byte is answered
    with 408 in the envelope and the connection closed; other clients are served meanwhile."""
    body = b'{"changes":[]}' + b" " * 30
    request = head(
        "POST", b"/api/v1/sync", server.token, Content_Type="application/json", Content_Length=str(len(body))
    )
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        started = time.monotonic()
        sock.sendall(request)
        for index in range(len(body)):
            if select.select([sock], [], [], 0.5)[0]:
                break  # the server answered
            sock.sendall(body[index : index + 1])
            if index == 1:
                # A trickling client holds no worker thread: others are answered at once.
                other = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                other.request("GET", "/api/v1/me", headers={"Authorization": f"Bearer {server.token}"})
                assert other.getresponse().status == 200
                other.close()
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = (response.status, response.getheader("Content-Type") or "", json.loads(response.read()))
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    assert_envelope(answer, 408, "request_timeout")
    assert READ_SECONDS <= elapsed < READ_SECONDS + 5, elapsed
    assert response.getheader("Connection") == "close"
