"""Helpers for the reference-client tests (no tests here): real `surveykit serve` processes that can be
killed and restarted, set-up through the CLI, RA1 records, misbehaving transports, and the audit of
the server's database against what the clients hold."""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid as uuid_module
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from surveykit.cli import cli
from surveykit.client import Client, HttpTransport, NetworkError, Response, RetryPolicy
from surveykit.client.store import content_hash
from surveykit.config import PROJECT_ROOT
from surveykit.studies.models import Study
from surveykit.sync import validation
from surveykit.sync.models import Interview, InterviewRevision

RA1_FILE = PROJECT_ROOT / "instruments" / "ra1-duty-bearers.yaml"
RA1 = "ra1-duty-bearers"
STUDY = "ocsea"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
SERVING = re.compile(r"serving on (http://127\.0\.0\.1:(\d+))")
SECRET = "client-e2e-secret-" + "k" * 32
PASSWORD = "client-e2e-password-" + "p" * 8
# Quick retries: a test waits for a restarted server, not for a tablet's patience.
FAST_RETRY = RetryPolicy(attempts=12, base=0.05, cap=1.0)

LONG_TEXT_QUESTIONS = (
    "pa_understanding",
    "pa_awareness_raising",
    "gov_capacity",
    "gov_budget",
    "gov_good_practices",
    "pol_assessment",
    "pol_challenges",
    "pol_future",
    "le_mechanisms",
    "le_challenges",
    "successes_main",
    "challenges_main",
)
# Text in several scripts, so the content hash is checked on more than ASCII.
PHRASES = (
    "Officers are trained every year on online exploitation; ",
    "ክፍሉ በየዓመቱ ስልጠና ይሰጣል; ",
    "ការបណ្តុះបណ្តាលប្រចាំឆ្នាំ; ",
    "Formação anual para a polícia — “ciber” ",
    "no budget line, partners fund the hotline 🙂 ",
)


def child_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SURVEYKIT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["SURVEYKIT_SECRET"] = SECRET
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------ processes


class ServerProcess:
    """One `surveykit serve` process on a database; it can be killed and started again on its port."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        name: str = "server",
        threads: int = 8,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.name = name
        self.threads = threads
        self.env = env or {}
        self.process: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self.url: str | None = None
        self.starts = 0
        self.output: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self, port: int | None = None) -> str:
        assert self.process is None, "already running"
        self.starts += 1
        log = (self.workdir / f"{self.name}-{self.starts}.log").open("w")
        env = child_env(SURVEYKIT_DATA_DIR=str(self.workdir / "data"), **self.env)
        args = [sys.executable, "-m", "surveykit.cli", "--database-url", self.database_url, "serve"]
        args += ["--port", str(port if port is not None else self.port or 0), "--threads", str(self.threads)]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        log.close()
        self.process = process
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                pytest.fail(f"{self.name}: no 'serving on' line within {START_TIMEOUT}s: {self.log_text()}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = process.wait(timeout=STOP_TIMEOUT)
                self.process = None
                pytest.fail(f"{self.name} exited with {code} while starting: {self.log_text()}")
            self.output.append(line)
            match = SERVING.search(line)
            if match:
                self.url, self.port = match.group(1), int(match.group(2))
                return self.url

    def log_text(self) -> str:
        return "\n".join(path.read_text()[-3000:] for path in sorted(self.workdir.glob(f"{self.name}-*.log")))

    def kill(self) -> None:
        """SIGKILL: no cleanup, no rollback by the process itself; the database must cope."""
        process = self.process
        if process is None:
            return
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)
        self._close()

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        self._close()

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=STOP_TIMEOUT)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def restart_on_same_port(self) -> str:
        """Start again on the port clients know; a just-closed port may take a moment to free."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                return self.start(self.port)
            except pytest.fail.Exception:
                if time.monotonic() > deadline or "address already in use" not in self.log_text().lower():
                    raise
                time.sleep(0.5)


@contextmanager
def running(*servers: ServerProcess) -> Iterator[tuple[ServerProcess, ...]]:
    """Start the servers; whatever happens, none is left running."""
    try:
        for server in servers:
            server.start()
        yield servers
    except BaseException:
        for server in servers:  # shown with the failure
            print(f"---- {server.name} log (end) ----\n{server.log_text()}")
        raise
    finally:
        for server in servers:
            server.stop()


# ---------------------------------------------------------------------------------------- set-up


class Setup:
    """A study, people and devices made with the `surveykit` CLI (in process: the same commands)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.runner = CliRunner()
        self._count = 0

    def cli(self, *args: str, stdin: str | None = None) -> str:
        result = self.runner.invoke(
            cli, ["--database-url", self.database_url, *args], input=stdin, catch_exceptions=False
        )
        assert result.exit_code == 0, f"surveykit {' '.join(args)}: {result.output}"
        return result.output

    def prepare(self, countries: tuple[str, ...] = ("KE", "TZ")) -> Setup:
        self.cli("db", "upgrade")
        self.cli("instruments", "publish", str(RA1_FILE))
        self.cli("studies", "add", STUDY, "--name", "OCSEA in 14 countries")
        self.cli("studies", "add-activity", STUDY, "RA1", "--name", "Interviews with duty bearers")
        for code in countries:
            self.cli("studies", "add-country", STUDY, code, "--name", f"Country {code}", "--language", "en")
        return self

    def fieldworker(self, countries: tuple[str, ...] = ("KE",), username: str | None = None) -> str:
        self._count += 1
        username = username or f"fieldworker{self._count}"
        self.cli("users", "add", username, "--password-stdin", stdin=PASSWORD + "\n")
        args = ["users", "grant", username, "fieldworker", "--study", STUDY]
        for code in countries:
            args += ["--country", code]
        self.cli(*args)
        return username

    def coordinator(self, countries: tuple[str, ...] = ("KE",)) -> str:
        self._count += 1
        username = f"coordinator{self._count}"
        self.cli("users", "add", username, "--password-stdin", stdin=PASSWORD + "\n")
        args = ["users", "grant", username, "coordinator", "--study", STUDY]
        for code in countries:
            args += ["--country", code]
        self.cli(*args)
        return username

    def enrol(self, username: str) -> str:
        self._count += 1
        output = self.cli("devices", "enrol", username, "--label", f"tablet {self._count}")
        match = re.search(r"enrolment code: (\S+)", output)
        assert match, output
        return match.group(1)

    def reenrol(self, device_id: str) -> str:
        """A coordinator's re-enrolment code for an existing device (`surveykit devices reenrol`)."""
        output = self.cli("devices", "reenrol", device_id)
        assert f"device {device_id} re-enrolled" in output, output
        match = re.search(r"enrolment code: (\S+)", output)
        assert match, output
        return match.group(1)


def tablet(
    path: Path,
    server_url: str,
    code: str,
    *,
    transport: Any = None,
    retry: RetryPolicy = FAST_RETRY,
    **options: Any,
) -> Client:
    client = Client(path, server_url, transport=transport, retry=retry, **options)
    client.activate(code)
    return client


# --------------------------------------------------------------------------------------- records


def answers(rng: random.Random, size: int = 12) -> dict[str, Any]:
    """Answers to RA1: the metadata and ``size`` long texts of about 300 characters each."""
    chosen: dict[str, Any] = {
        # The bound metadata (agency, date, mode, consent) is left out: it is taken from the
        # participants and the record's own fields, which are its home.
        "interview_language": "en",
        "gov_focal_point_exists": rng.random() < 0.5,
        "le_cooperation_partners": ["ngos", "hotlines"],
    }
    for question in LONG_TEXT_QUESTIONS[:size]:
        text = ""
        while len(text) < 300:
            text += rng.choice(PHRASES)
        chosen[question] = text
    return chosen


def participants(count: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "agency": "National Council for Children, Ministry of Social Affairs",
            "position": "Director" if index == 0 else None,
            "consent_given": True,
            "consent_date": "2026-05-04",
            "consent_recorded_how": "verbal_notes",
        }
        for index in range(count)
    ]


def new_interview(client: Client, rng: random.Random, country: str = "KE", **fields: Any) -> str:
    interview = client.new_interview(
        study=STUDY,
        country=country,
        activity="RA1",
        instrument=RA1,
        participants=participants(rng.choice((1, 1, 2))),
        language="en",
        mode="in_person",
        answers=answers(rng),
        started_at="2026-05-04T09:30:00+03:00",
        notes="created",
        **fields,
    )
    return interview.uuid


# ------------------------------------------------------------------------------------ transports


class Hooked(HttpTransport):
    """The real transport, with a hook run just before each request leaves."""

    def __init__(self, before: Any = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.before = before
        self.sent: Counter[str] = Counter()

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        path = urlsplit(url).path
        self.sent[f"{method} {path}"] += 1
        if self.before is not None:
            self.before(method, path, body)
        return super().request(method, url, headers, body)


class Flaky:
    """Misbehaves on the sync and block endpoints, as a bad mobile connection does:

    - refuse: the connection fails before anything is sent;
    - lose: the request reaches the server and is processed, then the answer is thrown away;
    - duplicate: the request is sent twice (the first answer thrown away);
    - replay: an earlier request that the server already processed is sent again first, out of
      order, before the current one (its answer thrown away).
    """

    PATHS = ("/api/v1/sync", "/api/v1/blocks")

    def __init__(
        self,
        inner: Any,
        seed: int,
        refuse: float = 0.1,
        lose: float = 0.3,
        duplicate: float = 0.15,
        replay: float = 0.15,
    ) -> None:
        self.inner = inner
        self.rng = random.Random(seed)
        self.rates = (refuse, lose, duplicate, replay)
        self.counts: Counter[str] = Counter()
        self.history: list[tuple[str, str, dict[str, str], bytes | None]] = []
        self.enabled = True

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        path = urlsplit(url).path
        if not self.enabled or path not in self.PATHS:
            return self.inner.request(method, url, headers, body)
        refuse, lose, duplicate, replay = self.rates
        roll = self.rng.random()
        if roll < refuse:
            self.counts["refused"] += 1
            raise NetworkError("simulated: connection refused", sent=False)
        roll -= refuse
        if roll < replay and self.history:
            self.counts["replayed"] += 1
            old = self.rng.choice(self.history)
            try:
                self.inner.request(*old)
            except NetworkError:
                pass
        elif roll < replay + duplicate:
            self.counts["duplicated"] += 1
            self.inner.request(method, url, headers, body)
        response = self.inner.request(method, url, headers, body)
        if method == "POST" and path == "/api/v1/sync" and response.status == 200:
            self.history.append((method, url, headers, body))
        if self.rng.random() < lose:
            self.counts["lost"] += 1
            raise NetworkError(f"simulated: the answer ({response.status}) was lost", sent=True)
        return response


class RoundRobin:
    """Sends each request to the next of several servers (a load balancer over app processes)."""

    def __init__(self, inner: Any, urls: list[str]) -> None:
        self.inner = inner
        self.netlocs = [urlsplit(url).netloc for url in urls]
        self.index = random.randrange(len(urls))
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        with self.lock:
            netloc = self.netlocs[self.index % len(self.netlocs)]
            self.index += 1
            self.counts[netloc] += 1
        parts = urlsplit(url)
        return self.inner.request(method, urlunsplit(parts._replace(netloc=netloc)), headers, body)


# ------------------------------------------------------------------------------------------- audit


def database_engine(url: str) -> Engine:
    return create_engine(url, poolclass=None)


def audit(
    engine: Engine, clients: list[Client], *, converged: bool = True, exclusive: bool = False
) -> dict[str, int]:
    """Check the server's database against what the clients hold; returns a few counts.

    - every receipt a client holds names an accepted revision with exactly that content;
    - every conflict a client was told of is a conflict revision with exactly that content;
    - no interview exists twice, none the clients do not know, no interview number twice;
    - every record's accepted revisions run 1..n without gaps, its current row is revision n, and no
      change was stored twice (same base revision and content);
    - with ``converged``: each client's copy of each record it holds is the server's current one,
      and its outbox is empty;
    - with ``exclusive`` (the database serves only these clients): the server has no record that
      no client knows.
    """
    with engine.connect() as connection:
        interviews = {
            row.uuid: row
            for row in connection.execute(
                select(
                    Interview.uuid,
                    Interview.revision,
                    Interview.content_hash,
                    Interview.record,
                    Interview.study_id,
                    Interview.activity,
                    Interview.country_code,
                    Interview.interview_number,
                )
            )
        }
        revisions = connection.execute(
            select(
                InterviewRevision.id,
                InterviewRevision.interview_uuid,
                InterviewRevision.kind,
                InterviewRevision.revision,
                InterviewRevision.base_revision,
                InterviewRevision.content_hash,
                InterviewRevision.record,
            ).order_by(InterviewRevision.id)
        ).all()
        numbers = connection.execute(
            select(
                Interview.study_id,
                Interview.activity,
                Interview.country_code,
                Interview.interview_number,
                func.count(),
            )
            .group_by(
                Interview.study_id, Interview.activity, Interview.country_code, Interview.interview_number
            )
            .having(func.count() > 1)
        ).all()
        assert connection.scalar(select(func.count()).select_from(Study)) >= 1
    assert not numbers, f"interview numbers used twice: {numbers}"

    accepted: dict[tuple[str, int], Any] = {}
    conflicts: dict[int, Any] = {}
    per_record: dict[str, list[int]] = {}
    stored_changes: Counter[tuple[str, int, str]] = Counter()
    for row in revisions:
        # The stored content is exactly what its hash says.
        assert validation.content_hash(row.record) == row.content_hash, row.id
        stored_changes[(row.interview_uuid, row.base_revision, row.content_hash)] += 1
        if row.kind == "accepted":
            key = (row.interview_uuid, row.revision)
            assert key not in accepted, f"revision stored twice: {key}"
            accepted[key] = row
            per_record.setdefault(row.interview_uuid, []).append(row.revision)
        else:
            assert row.kind == "conflict", row.kind
            conflicts[row.id] = row
    duplicates = [key for key, count in stored_changes.items() if count > 1]
    assert not duplicates, f"a change was stored twice: {duplicates}"
    for uuid, row in interviews.items():
        numbers_seen = sorted(per_record.get(uuid, []))
        assert numbers_seen == list(range(1, row.revision + 1)), (uuid, numbers_seen, row.revision)
        assert accepted[(uuid, row.revision)].content_hash == row.content_hash, uuid
        assert validation.content_hash(row.record) == row.content_hash, uuid

    known: set[str] = set()
    receipts = 0
    for client in clients:
        known.update(client.uuids())
        for uuid, revision, digest in client.receipts():
            receipts += 1
            assert uuid in interviews, f"receipt for {uuid}, which the server does not have"
            stored = accepted.get((uuid, revision))
            assert stored is not None, f"receipt ({uuid}, {revision}) names no accepted revision"
            assert stored.content_hash == digest, f"receipt ({uuid}, {revision}) does not match"
        for conflict in client.conflicts():
            stored = conflicts.get(conflict["id"])
            assert stored is not None, f"conflict {conflict['id']} is not stored"
            assert (stored.interview_uuid, stored.content_hash) == (
                conflict["uuid"],
                conflict["content_hash"],
            )
        if converged:
            assert client.outbox() == [], client.outbox()
            for uuid in client.uuids():
                state = client.state(uuid)
                assert uuid in interviews, f"{uuid} never reached the server"
                assert state.content_hash == interviews[uuid].content_hash, f"{uuid}: the copy differs"
                assert state.record == interviews[uuid].record
                assert content_hash(state.record) == state.content_hash
    unknown = set(interviews) - known
    assert not exclusive or not unknown, f"the server has records no client made: {sorted(unknown)[:5]}"
    return {
        "interviews": len(interviews),
        "accepted": len(accepted),
        "conflicts": len(conflicts),
        "receipts": receipts,
    }


def new_uuid() -> str:
    return str(uuid_module.uuid4())


def edit_notes(client: Client, uuid: str, text: str) -> None:
    client.edit(uuid, notes=text)


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@contextmanager
def serving_one_tablet(
    database_url: str, workdir: Path, threads: int = 4, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A running `surveykit serve` on a prepared database, with one activated tablet whose access
    token is the process's ``token`` attribute (for raw-socket and raw-HTTP tests)."""
    setup = Setup(database_url).prepare()
    process = ServerProcess(database_url, workdir, threads=threads, env=env)
    with running(process):
        client = tablet(workdir / "tablet.sqlite3", process.url, setup.enrol(setup.fieldworker()))
        client.me()
        process.token = client.store.get("access_token")
        try:
            yield process
        finally:
            client.close()
