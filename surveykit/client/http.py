"""HTTP for the reference client: one request, one answer or one ``NetworkError``.

Standard library only (``http.client``), no proxies, no redirects. What a retry may do depends on
whether the request can have reached the server, so ``NetworkError.sent`` says which side of that
line the failure fell: ``False`` when the connection was never made (nothing was sent, any request
may be repeated), ``True`` once bytes may have left (the server may have acted on it).
"""

from __future__ import annotations

import gzip
import http.client
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

DEFAULT_CONNECT_TIMEOUT = 10.0
# A batch of 100 records is validated and committed before the answer leaves: allow for it.
DEFAULT_READ_TIMEOUT = 120.0
USER_AGENT = "surveykit-reference-client/1"


class ClientError(Exception):
    """Base of everything the client raises on purpose."""


class NetworkError(ClientError):
    """No usable answer: the connection failed, broke, or timed out.

    ``sent`` is False only when no connection was established, so the server cannot have seen the
    request; otherwise it may have processed it and its answer was lost.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def error_code(self) -> str | None:
        """The ``code`` of surveykit's JSON error envelope, or None when the body is not one."""
        envelope = self.envelope()
        return envelope.get("code") if envelope else None

    def envelope(self) -> dict[str, Any] | None:
        if not (self.header("content-type") or "").startswith("application/json"):
            return None
        try:
            body = self.json()
        except (ValueError, UnicodeDecodeError):
            return None
        if isinstance(body, dict) and isinstance(body.get("code"), str) and "status" in body:
            return body
        return None


class Transport(Protocol):
    """What the client needs from HTTP; tests wrap it to lose, delay or repeat requests."""

    def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> Response: ...  # pragma: no cover


class HttpTransport:
    """A new connection per request: a tablet's connection rarely survives long enough to reuse."""

    def __init__(
        self,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(parts.hostname, parts.port, timeout=self.connect_timeout)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            try:
                connection.connect()
            except (OSError, http.client.HTTPException) as exc:
                raise NetworkError(f"could not connect to {parts.netloc}: {exc}", sent=False) from exc
            if connection.sock is not None:
                connection.sock.settimeout(self.read_timeout)
            all_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip", **headers}
            try:
                connection.request(method, target, body=body, headers=all_headers)
                answer = connection.getresponse()
                raw = answer.read()
            except (OSError, http.client.HTTPException) as exc:
                raise NetworkError(f"{method} {target}: no complete answer: {exc}", sent=True) from exc
            response_headers = {name.lower(): value for name, value in answer.getheaders()}
            encoding = response_headers.get("content-encoding", "").lower()
            if encoding == "gzip" and raw:
                try:
                    raw = gzip.decompress(raw)
                except (OSError, EOFError, zlib.error) as exc:
                    raise NetworkError(f"{method} {target}: corrupt gzip body: {exc}", sent=True) from exc
            return Response(answer.status, response_headers, raw)
        finally:
            connection.close()
