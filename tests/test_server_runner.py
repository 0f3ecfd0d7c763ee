"""`pserve` and `surveykit serve` run one server: the same first start, the ini's listen address, the
same answers to the hostile requests the waitress adaptations exist for, an access line per request,
and client addresses taken from X-Forwarded-For only when the proxy is trusted."""

from __future__ import annotations

import http.client
import json
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from test_client_support import PASSWORD, RA1, SERVING, START_TIMEOUT, STOP_TIMEOUT, Setup, child_env
from test_hostile_clients import assert_envelope, exchange, head

from surveykit.audit.models import AuditEvent

pytestmark = pytest.mark.e2e

READ_SECONDS = 2
BIN = Path(sys.executable).parent
INI = """\
[app:main]
use = egg:surveykit
surveykit.environment = development
sqlalchemy.url = {database_url}

[server:main]
use = egg:surveykit#main
listen = 127.0.0.1:0
threads = 4

[loggers]
keys = root, surveykit, access

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[logger_surveykit]
level = INFO
handlers =
qualname = surveykit

[logger_access]
level = INFO
handlers =
qualname = surveykit.access

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)s [%(name)s] [%(request_id)s] %(message)s
"""


class Running:
    def __init__(self, process: subprocess.Popen[str], port: int, output: list[str], log: Path) -> None:
        self.process, self.port, self.output, self.log = process, port, output, log

    def log_text(self) -> str:
        return self.log.read_text()


@contextmanager
def start(args: list[str], workdir: Path, name: str, **env: str) -> Iterator[Running]:
    log = workdir / f"{name}.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=workdir, env=child_env(**env)
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                pytest.fail(f"{name} exited while starting: {output} {log.read_text()}")
            output.append(line)
            if match := SERVING.search(line):
                break
        yield Running(process, int(match.group(2)), output, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="module")
def both(databases: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`pserve` and `surveykit serve` with one ini on one database."""
    workdir = tmp_path_factory.mktemp("runner")
    database_url = databases.create()
    setup = Setup(database_url)
    setup.cli("db", "upgrade")
    setup.cli("users", "add", "runner-admin", "--password-stdin", stdin=PASSWORD + "\n")
    setup.cli("users", "grant", "runner-admin", "admin", "--all-studies")
    ini = workdir / "site.ini"
    ini.write_text(INI.format(database_url=database_url))
    env = {"SURVEYKIT_REQUEST_READ_SECONDS": str(READ_SECONDS), "SURVEYKIT_DATA_DIR": str(workdir / "data")}
    with (
        start([str(BIN / "pserve"), str(ini)], workdir, "pserve", **env) as pserve,
        start(
            [sys.executable, "-m", "surveykit.cli", "-c", str(ini), "serve"], workdir, "serve", **env
        ) as serve,
    ):
        yield {"pserve": pserve, "serve": serve, "token": login(pserve.port, "runner-admin")}
    for running in (pserve, serve):
        assert "Traceback" not in running.log_text()


def login(port: int, username: str, password: str = PASSWORD, **headers: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"username": username, "password": password})
    connection.request("POST", "/api/v1/auth/token", body, {"Content-Type": "application/json", **headers})
    response = connection.getresponse()
    data = json.loads(response.read())
    connection.close()
    return data.get("access_token", "")


SERVERS = ["pserve", "serve"]


def test_both_make_the_first_start_and_listen_where_the_ini_says(both: dict[str, Any]) -> None:
    # listen = 127.0.0.1:0 in the ini: both took a free port there (not the default 6543).
    assert both["pserve"].port != 6543 and both["serve"].port != 6543
    first = "\n".join(both["pserve"].output)
    assert f"{RA1} published as new version 1" in first
    # The second process found the first start done: nothing published twice.
    assert "published as new version" not in "\n".join(both["serve"].output)
    assert both["token"]


@pytest.mark.parametrize("name", SERVERS)
def test_a_declared_oversized_body_with_expect_continue_gets_a_json_413(
    both: dict[str, Any], name: str
) -> None:
    request = head(
        "POST",
        b"/api/v1/sync",
        both["token"],
        Content_Type="application/json",
        Content_Length=str(100 * 1000 * 1000),
        Expect="100-continue",
    )
    assert_envelope(exchange(both[name].port, request), 413, "body_too_large")
    # Refused by waitress before the application: still one access line.
    wait_for_log(both[name], "POST - status=413")
    assert "refused by the server" in both[name].log_text()


def wait_for_log(running: Running, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in running.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert text in running.log_text()


@pytest.mark.parametrize("name", SERVERS)
def test_an_unparseable_request_gets_a_json_400(both: dict[str, Any], name: str) -> None:
    answer = exchange(both[name].port, b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert_envelope(answer, 400, "bad_request")


@pytest.mark.parametrize("name", SERVERS)
def test_a_trickled_request_gets_a_json_408(both: dict[str, Any], name: str) -> None:
    sock = socket.create_connection(("127.0.0.1", both[name].port), timeout=30)
    try:
        body = b'{"changes": []}'
        sock.sendall(
            head(
                "POST",
                b"/api/v1/sync",
                both["token"],
                Content_Type="application/json",
                Content_Length=str(len(body)),
            )
        )
        sock.sendall(body[:1])
        time.sleep(READ_SECONDS + 0.5)
        try:
            sock.sendall(body[1:2])
        except OSError:
            pass
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = (response.status, response.getheader("Content-Type") or "", json.loads(response.read()))
    finally:
        sock.close()
    assert_envelope(answer, 408, "request_timeout")


@pytest.mark.parametrize("name", SERVERS)
def test_a_304_keeps_the_connection_and_carries_a_request_id(both: dict[str, Any], name: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", both[name].port, timeout=30)
    auth = {"Authorization": f"Bearer {both['token']}"}
    try:
        connection.request("GET", f"/api/v1/instruments/{RA1}", headers=auth)
        first = connection.getresponse()
        first.read()
        assert first.status == 200
        sock = connection.sock
        connection.request(
            "GET",
            f"/api/v1/instruments/{RA1}",
            headers={**auth, "If-None-Match": first.getheader("ETag"), "X-Request-ID": f"tablet-{name}-304"},
        )
        again = connection.getresponse()
        again.read()
        assert again.status == 304
        assert again.getheader("X-Request-ID") == f"tablet-{name}-304"
        assert (again.getheader("Connection") or "").lower() != "close"
        connection.request("GET", "/api/v1/health")
        health = connection.getresponse()
        assert (health.status, json.loads(health.read())["status"]) == (200, "ok")
        assert connection.sock is sock
    finally:
        connection.close()
    # The ini's logging applies: the access line of that request, found by its id, without the token.
    deadline = time.monotonic() + 10
    while f"[tablet-{name}-304]" not in both[name].log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(line for line in both[name].log_text().splitlines() if f"[tablet-{name}-304]" in line)
    assert "[surveykit.access]" in line and "GET instrument status=304" in line, line
    assert both["token"] not in both[name].log_text()


# ------------------------------------------------------------------------------------ trusted proxy


def failed_login_addresses(database_url: str, username: str) -> list[str | None]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(AuditEvent.remote_addr).where(
                    AuditEvent.action == "auth.login_failed", AuditEvent.actor == username
                )
            )
            return [row[0] for row in rows]
    finally:
        engine.dispose()


@pytest.mark.parametrize("trusted", ["127.0.0.1", "192.0.2.99"])
def test_x_forwarded_for_is_believed_only_from_the_trusted_proxy(
    databases: Any, tmp_path: Path, trusted: str
) -> None:
    database_url = databases.create()
    setup = Setup(database_url)
    setup.cli("db", "upgrade")
    setup.cli("users", "add", "proxied", "--password-stdin", stdin=PASSWORD + "\n")
    args = [sys.executable, "-m", "surveykit.cli", "--database-url", database_url, "serve", "--port", "0"]
    env = {"SURVEYKIT_TRUSTED_PROXY": trusted, "SURVEYKIT_DATA_DIR": str(tmp_path / "data")}
    with start(args, tmp_path, "proxied", **env) as server:
        assert login(server.port, "proxied", "wrong-password-123", **{"X-Forwarded-For": "203.0.113.7"}) == ""
    expected = "203.0.113.7" if trusted == "127.0.0.1" else "127.0.0.1"
    assert failed_login_addresses(database_url, "proxied") == [expected]
    assert f"addr={expected}" in server.log_text()
