"""A tablet's revalidation keeps its connection: `surveykit serve` answers a 304 without closing a
keep-alive connection (waitress alone closes it after every answer without a body)."""

from __future__ import annotations

import http.client
from typing import Any

import pytest
from test_client_support import serving_one_tablet

pytestmark = pytest.mark.e2e

PATH = "/api/v1/instruments/ra1-duty-bearers"


@pytest.fixture(scope="module")
def server(databases: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving_one_tablet(databases.create(), tmp_path_factory.mktemp("keepalive"), threads=2) as process:
        yield process


def get(connection: http.client.HTTPConnection, token: str, **headers: str) -> http.client.HTTPResponse:
    connection.request("GET", PATH, headers={"Authorization": f"Bearer {token}", **headers})
    response = connection.getresponse()
    response.read()
    return response


def test_a_304_keeps_the_connection_open_for_the_next_request(server: Any) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        first = get(connection, server.token)
        assert first.status == 200
        socket_used = connection.sock

        revalidated = get(connection, server.token, **{"If-None-Match": first.getheader("ETag")})
        assert revalidated.status == 304
        assert (revalidated.getheader("Connection") or "").lower() != "close"
        assert revalidated.getheader("Content-Length") is None  # RFC 9110: none on a 304
        assert revalidated.getheader("ETag") == first.getheader("ETag")

        again = get(connection, server.token)
        assert again.status == 200
        assert connection.sock is socket_used  # the same TCP connection served all three
    finally:
        connection.close()


def test_a_client_asking_to_close_still_gets_its_connection_closed(server: Any) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        etag = get(connection, server.token).getheader("ETag")
        revalidated = get(connection, server.token, **{"If-None-Match": etag, "Connection": "close"})
        assert revalidated.status == 304
        assert revalidated.getheader("Connection") == "close"
        assert connection.sock is None  # http.client dropped the socket the server closes
    finally:
        connection.close()
