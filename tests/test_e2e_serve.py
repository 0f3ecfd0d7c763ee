"""End to end: `surveykit serve` as a real process, spoken to over real HTTP."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from instrument_samples import RA1_FILE, RA1_SLUG

from surveykit.instruments import services

pytestmark = pytest.mark.e2e

START_TIMEOUT = 30.0
SERVING = re.compile(r"serving on (http://127\.0\.0\.1:(\d+))")
PASSWORD = "e2e-password-" + "z" * 12
# Talk to the server directly, whatever proxy the environment names.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Server:
    url: str
    output: list[str] = field(default_factory=list)


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment without any SURVEYKIT_* setting (SURVEYKIT_DATABASE_URL above all)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SURVEYKIT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def surveykit(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "surveykit.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@contextmanager
def serving(args: list[str], env: dict[str, str], log: Path) -> Iterator[Server]:
    """Start `surveykit ... serve --port 0`, wait for its "serving on" line, and stop it afterwards."""
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "surveykit.cli", *args, "serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        # Keeps draining stdout so the server never blocks on a full pipe.
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    server: Server | None = None
    output: list[str] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while server is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no 'serving on' line within {START_TIMEOUT}s: {output}\n{log.read_text()}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"server exited with {process.wait()}: {output}\n{log.read_text()}")
            output.append(line)
            match = SERVING.search(line)
            if match:
                server = Server(match.group(1), output)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def fetch(server: Server, path: str, *, token: str | None = None, body: Any = None, **headers: str) -> Answer:
    request = urllib.request.Request(server.url + path, method="GET" if body is None else "POST")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
        request.data = json.dumps(body).encode("utf-8")
    try:
        with OPENER.open(request, timeout=15) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        # urllib reports every non-2xx answer, 304 included, as an HTTPError.
        with error:
            return Answer(error.code, error.headers, error.read())


def login(server: Server, username: str, password: str) -> str:
    answer = fetch(server, "/api/v1/auth/token", body={"username": username, "password": password})
    assert answer.status == 200, answer.body
    return answer.json()["access_token"]


def check_ra1_is_served(server: Server, token: str) -> None:
    expected = services.validate_definition(services.read_definition_file(RA1_FILE))
    digest = services.content_hash(expected)

    listed = fetch(server, "/api/v1/instruments", token=token)
    assert listed.status == 200, listed.body
    assert listed.headers["Content-Type"].startswith("application/json")
    [row] = [row for row in listed.json()["instruments"] if row["slug"] == RA1_SLUG]
    assert (row["current_version"], row["content_hash"], row["languages"]) == (1, digest, ["en", "pt"])

    path = f"/api/v1/instruments/{RA1_SLUG}"
    answer = fetch(server, path, token=token)
    assert answer.status == 200, answer.body
    assert answer.json() == {"slug": RA1_SLUG, "version": 1, "content_hash": digest, "definition": expected}
    etag = answer.headers["ETag"]
    assert etag.startswith('"') and answer.headers["Cache-Control"] == "private, no-cache"

    cached = fetch(server, path, token=token, If_None_Match=etag)
    assert (cached.status, cached.body) == (304, b"")

    zipped = fetch(server, path, token=token, Accept_Encoding="gzip")
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(zipped.body)) == answer.json()

    # Errors from the real server are the JSON envelope too.
    anonymous = fetch(server, path)
    assert anonymous.status == 401
    assert anonymous.headers["Content-Type"].startswith("application/json")
    assert anonymous.json()["code"] == "unauthenticated"
    missing = fetch(server, "/api/v1/instruments/never-published", token=token)
    assert (missing.status, missing.json()["code"]) == (404, "instrument_not_found")


def test_serve_on_the_embedded_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = child_env(SURVEYKIT_DATA_DIR=str(data_dir), SURVEYKIT_ADMIN_PASSWORD=PASSWORD)
    with serving([], env, tmp_path / "serve.log") as server:
        assert (data_dir / "surveykit.sqlite3").is_file()
        assert any(f"{RA1_SLUG} published as new version 1" in line for line in server.output), server.output
        check_ra1_is_served(server, login(server, "admin", PASSWORD))


def test_serve_on_a_database_prepared_by_the_cli(
    fresh_database: Callable[[], str], backend: str, tmp_path: Path
) -> None:
    # On the PostgreSQL run this is a fresh PostgreSQL database; on the SQLite run, a SQLite file
    # named by URL. Either way the schema, the instrument and the account come from the CLI.
    url = fresh_database()
    assert url.startswith("postgresql" if backend == "postgresql" else "sqlite")
    env = child_env(SURVEYKIT_DATA_DIR=str(tmp_path / "unused-data"))
    for args, stdin in [
        (("db", "upgrade"), None),
        (("instruments", "publish", str(RA1_FILE)), None),
        (("users", "add", "reader", "--password-stdin"), PASSWORD + "\n"),
    ]:
        result = surveykit("--database-url", url, *args, env=env, stdin=stdin)
        assert result.returncode == 0, result.stdout + result.stderr

    with serving(["--database-url", url], env, tmp_path / "serve.log") as server:
        check_ra1_is_served(server, login(server, "reader", PASSWORD))
    assert not (tmp_path / "unused-data" / "surveykit.sqlite3").exists()


def test_two_processes_starting_together_make_one_first_start(
    fresh_database: Callable[[], str], backend: str, tmp_path: Path
) -> None:
    """The README's first start on both stores: with two `serve` processes starting at once on a new
    database, the instruments are published once and there is exactly one admin, whose printed
    password works. (On PostgreSQL the schema comes from `db upgrade`; SQLite is migrated by serve.)"""
    from sqlalchemy import create_engine, func, select

    from surveykit.accounts.models import Grant, User
    from surveykit.instruments.models import InstrumentVersion

    url = fresh_database()
    env = child_env(SURVEYKIT_DATA_DIR=str(tmp_path / "unused-data"))
    if backend == "postgresql":
        result = surveykit("--database-url", url, "db", "upgrade", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    with contextlib.ExitStack() as stack:
        starts = [
            threading.Thread(
                target=lambda i=i: servers.__setitem__(
                    i, stack.enter_context(serving(["--database-url", url], env, tmp_path / f"serve{i}.log"))
                )
            )
            for i in range(2)
        ]
        servers: dict[int, Server] = {}
        for thread in starts:
            thread.start()
        for thread in starts:
            thread.join(START_TIMEOUT * 2)
        assert sorted(servers) == [0, 1]
        output = [line for server in servers.values() for line in server.output]
        published = [line for line in output if f"{RA1_SLUG} published as new version 1" in line]
        admins = [line for line in output if line.startswith("created the first admin: username admin")]
        assert (len(published), len(admins)) == (1, 1), output
        assert sum(line.startswith("the web console: http://127.0.0.1:") for line in output) == 2, output
        password = admins[0].split("password ", 1)[1].split()[0]
        for server in servers.values():
            check_ra1_is_served(server, login(server, "admin", password))
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(InstrumentVersion)) == 1
            assert connection.scalar(select(func.count()).select_from(User)) == 1
            assert (
                connection.scalar(select(func.count()).select_from(Grant).where(Grant.role == "admin")) == 1
            )
    finally:
        engine.dispose()
