"""Interview records per second through POST /api/v1/sync, beside Kinto and a bare psycopg insert loop.

A benchmark that prints figures, not a test. In one run it measures:

- surveykit push: complete interview records (~4 KB, every question of ra1-duty-bearers answered,
  two verbatim quotes) through ``POST /api/v1/sync`` in batches of 25, with 1 and 8 concurrent
  clients, each client its own enrolled device minting interview numbers from its own number
  blocks, on the embedded SQLite database and on a throwaway PostgreSQL database;
- surveykit pull: paging ``GET /api/v1/sync/changes`` from cursor 0 with a device token;
- Kinto (the ``kinto`` package from PyPI, installed into a separate virtual environment under
  ~/.cache/surveykit-bench, PostgreSQL storage/permission/cache backends on its own throwaway
  database), in two deployments (one shared collection, a collection per tablet): the same records
  created through ``/v1/batch``, 25 create-only PUTs (``If-None-Match: *``) per batch, same 1 and 8
  clients, resending a whole batch after the Retry-After Kinto gives whenever a sub-request answers
  409/5xx (a 201 inside such a batch is not durable; a record already stored answers 412 and counts
  as stored when its content is the one sent), then pulled in pages of 1,000;
- the durability floor: the same records, generated before the window in one process per client,
  inserted by psycopg into one table, one transaction per batch of 25, on its own throwaway
  database on the same PostgreSQL server.

Every PostgreSQL database gets planner statistics as a production server's autovacuum would give
them (``harness.PlannerStatistics``; ``--analyze off`` to leave them as the server does).

It prints a table (system, clients, records/s, p50/p95 batch latency, CPU per record, retries,
errors), the settings that produced it, and the ratios surveykit/Kinto and surveykit/bare-insert
on PostgreSQL (target: surveykit >= 3x Kinto's shared collection at 8 clients). After each
system's pushes it checks that every acknowledged record is stored exactly once, as sent.

    .venv/bin/python bench/bench_sync.py                      # everything, 15 s per scenario
    .venv/bin/python bench/bench_sync.py --seconds 5 --skip-kinto
    .venv/bin/python bench/bench_sync.py --backends sqlite

Every request goes to 127.0.0.1; every loop is bounded in time and in count. It exits 0 whatever
the ratios are, unless --strict is given (then 1 on a missed target or errors; 2 means the
benchmark itself could not run).
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import hashlib
import http.client
import json
import os
import platform
import random
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import PlannerStatistics, ThrowawayDatabase

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SLUG = "ra1-duty-bearers"
DEFINITION_FILE = PROJECT_ROOT / "instruments" / f"{SLUG}.yaml"
HOST = "127.0.0.1"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_KINTO_VENV = Path.home() / ".cache" / "surveykit-bench" / "kinto-venv"
DEFAULT_KINTO_SPEC = "kinto[postgresql]"
READY_PATTERN = re.compile(r"serving on http://127\.0\.0\.1:(\d+)", re.IGNORECASE)
READY_TIMEOUT_S = 90.0
REQUEST_TIMEOUT_S = 120.0

STUDY = "bench-sync"
ACTIVITY = "RA1"
COUNTRIES = ("KE", "TZ")
BATCH_SIZE = 25
BLOCK_SIZE = 100  # the server's maximum block size
PULL_PAGE = 1000
SYNC_PATH = "/api/v1/sync"
PULL_PATH = "/api/v1/sync/changes"
KINTO_BUCKET = "surveykit"
KINTO_COLLECTION = "interviews"
KINTO_RECORDS = f"/v1/buckets/{KINTO_BUCKET}/collections/{KINTO_COLLECTION}/records"
# A batch is sent at most this many times before it counts as an error.
MAX_ATTEMPTS = 40
# Statuses after which a client re-sends the same batch (all three systems are idempotent on
# re-send: surveykit by UUID and content hash, Kinto by PUT to the record's id).
RETRY_STATUSES = {409, 412, 429, 500, 502, 503, 504}
TARGET_KINTO_RATIO = 3.0


# ------------------------------------------------------------------------------------- records

TEXTS = {
    "pa_understanding": (
        "Officials in the capital know the term, but most parents and teachers think of it as a "
        "stranger problem and do not see grooming by people the child already knows. Children "
        "understand the risks better than adults do, yet rarely tell anyone when something happens."
    ),
    "pa_awareness_raising": (
        "The ministry ran a radio and school campaign on safe internet use in 2024, funded with a "
        "UN partner, and an NGO coalition trained teachers in four regions. Rural schools were "
        "reached only once, and the material was in the national language alone."
    ),
    "gov_capacity": (
        "There is one cybercrime unit with eleven officers for the whole country, two of them "
        "trained in digital forensics. Social workers have no training on online cases and refer "
        "them to the police, who lack the equipment to examine phones quickly."
    ),
    "gov_budget": (
        "Funding comes from the general child protection allocation, which is small and paid late "
        "in the year. Most training is financed by international partners project by project, so "
        "it stops when a project ends and nobody keeps the trained staff."
    ),
    "budget_line_details": (
        "A line for online child protection was added to the 2025 budget of the ministry of ICT, "
        "covering the helpline and a public campaign; it was cut by a third mid-year."
    ),
    "gov_good_practices": (
        "The joint referral protocol between the helpline, the police unit and the hospitals works "
        "well: a report reaches an investigator within a day and the child is seen by a social "
        "worker. The school clubs that teach children to report are also effective."
    ),
    "pol_assessment": (
        "The child act and the cybercrime law cover most offences, but live-streamed abuse and "
        "grooming without a meeting are not clearly criminalised. Platforms have no legal duty to "
        "report, and data retention periods are too short for investigations to succeed."
    ),
    "nap_implementation": (
        "The national action plan was adopted in 2023 with a steering committee that has met twice. "
        "Activities are behind schedule because no ministry leads them and the plan has no budget."
    ),
    "pol_challenges": (
        "Coordination between ministries is weak, responsibilities overlap, and drafts wait years "
        "for parliament. Officials who draft policy rarely hear from children or from frontline "
        "workers, so the rules do not match what happens online."
    ),
    "pol_future": (
        "Amend the cybercrime law to cover grooming and live streaming, give the plan a budget "
        "line, require platforms to report and preserve evidence, and fund the helpline properly."
    ),
    "le_mechanisms": (
        "Cases come from the helpline, schools and international referrals through the national "
        "central bureau. The cybercrime unit investigates, but prosecutors rarely specialise and "
        "courts accept digital evidence inconsistently."
    ),
    "le_foreign_cooperation": (
        "Requests go through the INTERPOL bureau and take months; direct contact with foreign "
        "units happens only when a partner agency has a liaison officer in the region."
    ),
    "le_challenges": (
        "Officers lack forensic tools and storage, victims withdraw because cases take years, and "
        "providers answer data requests slowly or not at all when they have no local office."
    ),
    "successes_main": (
        "The helpline now answers around the clock, and the first convictions for online grooming "
        "under the child act came last year after a case referred from abroad."
    ),
    "challenges_main": (
        "Too few trained people, no dedicated budget, and families who prefer to settle cases "
        "privately rather than report them to the police or to social services."
    ),
}


def canonical_json(value: Any) -> bytes:
    """As surveykit hashes a record: sorted keys, no whitespace, UTF-8 (a tablet computes the same)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def content_hash(record: Any) -> str:
    return hashlib.sha256(canonical_json(record)).hexdigest()


def template_record() -> dict[str, Any]:
    """A complete interview answering every question of ra1-duty-bearers (28) with every relevance
    condition true, two quotes with offsets into their answers, and notes: about 4 KB of JSON."""
    answers: dict[str, Any] = {
        "agency": "Ministry of Information and Communication Technology",
        "position": "Director of Cyber Security",
        "interview_date": "2026-05-04",
        "mode": "in_person",
        "interview_language": "English",
        "consent_given": True,
        "consent_date": "2026-05-04",
        "consent_recorded_how": "written_form",
        "pa_understanding": TEXTS["pa_understanding"],
        "pa_awareness_raising": TEXTS["pa_awareness_raising"],
        "pa_campaign_focus": "both",
        "gov_capacity": TEXTS["gov_capacity"],
        "gov_focal_point_exists": True,
        "gov_budget": TEXTS["gov_budget"],
        "budget_line_exists": True,
        "budget_line_details": TEXTS["budget_line_details"],
        "gov_good_practices": TEXTS["gov_good_practices"],
        "pol_assessment": TEXTS["pol_assessment"],
        "national_action_plan_exists": True,
        "nap_implementation": TEXTS["nap_implementation"],
        "pol_challenges": TEXTS["pol_challenges"],
        "pol_future": TEXTS["pol_future"],
        "le_mechanisms": TEXTS["le_mechanisms"],
        "le_cooperation_partners": ["ngos", "hotlines", "foreign_police"],
        "le_foreign_cooperation": TEXTS["le_foreign_cooperation"],
        "le_challenges": TEXTS["le_challenges"],
        "successes_main": TEXTS["successes_main"],
        "challenges_main": TEXTS["challenges_main"],
    }
    return {
        "study": STUDY,
        "country": COUNTRIES[0],
        "activity": ACTIVITY,
        "interview_number": 1,
        "participants": [
            {
                "letter": "A",
                "agency": answers["agency"],
                "position": answers["position"],
                "consent_given": True,
                "consent_date": "2026-05-04",
                "consent_recorded_how": "written_form",
            }
        ],
        "instrument": {"slug": SLUG, "version": 1},
        "language": "en",
        "mode": "in_person",
        "started_at": "2026-05-04T09:30:00+03:00",
        "ended_at": "2026-05-04T10:45:00+03:00",
        "status": "complete",
        "answers": answers,
        "quotes": [],
        "notes": "",
    }


QUOTED = (("gov_capacity", "one cybercrime unit with eleven officers"), ("pol_future", "fund the helpline"))


class RecordFactory:
    """Fresh records (new UUID, number, quote ids, notes) from one template, as canonical JSON text.

    The template is serialised once with placeholders; a record is the text with its own values
    put in, so making one costs a few microseconds and the clients spend their time on the wire.
    The first record is checked against the same record built as a dict and serialised."""

    QUOTE_ID = "@@quote-{}@@"
    NUMBER = 987654321  # a placeholder number no record uses
    COUNTRY = "@@country@@"

    def __init__(self) -> None:
        self.template = template_record()
        self.quotes = []
        for question, text in QUOTED:
            start = self.template["answers"][question].index(text)
            self.quotes.append((question, text, start, start + len(text)))
        placeholder = self._record(self.COUNTRY, self.NUMBER, [self.QUOTE_ID.format(i) for i in range(2)])
        text = canonical_json(placeholder).decode("utf-8")
        self.pieces = re.split(r"(@@quote-\d@@|@@country@@|987654321)", text)
        for country, number in ((COUNTRIES[1], 7), (COUNTRIES[0], 4321)):
            quote_ids = [str(uuid.uuid4()) for _ in self.quotes]
            made = self._fill(country, number, quote_ids)
            if made != canonical_json(self._record(country, number, quote_ids)).decode("utf-8"):
                raise RuntimeError("the record template does not give the canonical JSON of a record")

    def _record(self, country: str, number: int, quote_ids: list[str]) -> dict[str, Any]:
        record = copy.deepcopy(self.template)
        record["country"] = country
        record["interview_number"] = number
        record["quotes"] = [
            {
                "id": quote_id,
                "question_id": question,
                "text": text,
                "start": start,
                "end": end,
                "tags": ["capacity"],
            }
            for quote_id, (question, text, start, end) in zip(quote_ids, self.quotes, strict=True)
        ]
        record["notes"] = (
            f"Interview {ACTIVITY}-{country}-{number:02d}: quiet office, one interruption; the "
            "participant asked for the summary report."
        )
        return record

    def _fill(self, country: str, number: int, quote_ids: list[str]) -> str:
        values = {self.COUNTRY: country, str(self.NUMBER): str(number)}
        values.update({self.QUOTE_ID.format(i): quote_id for i, quote_id in enumerate(quote_ids)})
        # The notes spell the number with at least two digits.
        pieces = [values.get(piece, piece) for piece in self.pieces]
        text = "".join(pieces)
        return text.replace(f"-{country}-{number}:", f"-{country}-{number:02d}:")

    def make(self, country: str, number: int) -> Record:
        text = self._fill(country, number, [str(uuid.uuid4()) for _ in self.quotes])
        return str(uuid.uuid4()), text, hashlib.sha256(text.encode("utf-8")).hexdigest()


Record = tuple[str, str, str]  # uuid, the record as canonical JSON text, its content hash


# -------------------------------------------------------------------------------- subprocesses


class Server:
    """A server subprocess whose output goes to a log file; ready once it prints its URL."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    def start(self) -> int:
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.log_path.parent,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            match = READY_PATTERN.search(self.log_text())
            if match:
                self.port = int(match.group(1))
                return self.port
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.name} did not report its port in {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}"
        )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def surveykit_command() -> str:
    script = Path(sys.executable).parent / "surveykit"
    if not script.exists():
        sys.exit(f"no surveykit console script beside {sys.executable}: run this with the project's venv")
    return str(script)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The command line says which database to use; a stray variable must not pick another.
    for name in ("SURVEYKIT_DATABASE_URL", "SURVEYKIT_DATA_DIR", "SURVEYKIT_SYNC_MAX_BATCH"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(argv: list[str], env: dict[str, str], stdin: str | None = None, cwd: Path = PROJECT_ROOT) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:])} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


# Runs surveykit's click commands one after another in one process (the import alone costs a
# second or more per command on a busy machine): stdin is a JSON list of [argv, stdin text].
CLI_BATCH = """
import json, sys
from click.testing import CliRunner
from surveykit.cli import cli
runner = CliRunner()
for argv, text in json.load(sys.stdin):
    result = runner.invoke(cli, argv, input=text)
    print(json.dumps({"argv": argv, "code": result.exit_code, "output": result.output}), flush=True)
    if result.exit_code != 0:
        if result.exc_info and not isinstance(result.exception, SystemExit):
            import traceback
            traceback.print_exception(*result.exc_info)
        sys.exit(1)
"""


def run_cli_batch(
    base: list[str], commands: list[tuple[list[str], str | None]], env: dict[str, str]
) -> list[str]:
    """The outputs of ``surveykit <global options> <argv>`` for each command, in one process;
    ``base`` is the console script followed by its global options."""
    payload = json.dumps([[[*base[1:], *argv], text] for argv, text in commands])
    done = subprocess.run(
        [sys.executable, "-c", CLI_BATCH],
        env=env,
        cwd=PROJECT_ROOT,
        input=payload,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        last = results[-1] if results else {"argv": "?", "output": ""}
        raise RuntimeError(
            f"surveykit {' '.join(last['argv'])} failed:\n{last['output']}{done.stderr[-3000:]}"
        )
    return [result["output"] for result in results]


# ---------------------------------------------------------------------------------------- HTTP


class TransportError(Exception):
    pass


class Http:
    """One keep-alive connection to 127.0.0.1:port, reopened after a transport error."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.headers = headers or {}
        self.connection: http.client.HTTPConnection | None = None
        self.not_before = 0.0  # monotonic time before which a server asked this client not to send

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        all_headers = {**self.headers, **(headers or {})}
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT_S)
            self.connection.request(method, path, body=body, headers=all_headers)
            response = self.connection.getresponse()
            data = response.read()
            if response.will_close:
                self.close()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    def json(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,)) -> Any:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        status, _, data = self.request(method, path, payload, headers)
        if status not in expect:
            raise RuntimeError(f"{method} {path} answered {status}: {data[:400]!r}")
        return json.loads(data) if data else None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def retry_after(headers: dict[str, str]) -> float:
    """The seconds a ``Retry-After`` header asks for (0 when absent or not a number of seconds)."""
    try:
        return max(0.0, float(headers.get("retry-after", "0").strip()))
    except ValueError:
        return 0.0


def backoff(attempt: int, asked: float = 0.0) -> None:
    """Exponential with jitter, short (10 ms doubling, at most 0.5 s), or longer when the server
    asked for more with Retry-After: both clients wait what their server asks, as their own
    reference clients do."""
    time.sleep(max(asked, random.uniform(0.5, 1.0) * min(0.5, 0.01 * 2**attempt)))


# ------------------------------------------------------------------------------- load generation


@dataclass
class OpResult:
    """What one operation (a pushed batch or a pulled page) gave."""

    records: int = 0
    retries: int = 0  # re-sent batches
    errors: int = 0  # records not acknowledged in the end
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)  # retry causes
    messages: list[str] = field(default_factory=list)
    acked: list[tuple[str, str]] = field(default_factory=list)  # acknowledged (uuid, content hash)
    ran_out: bool = False  # a bare-insert client had no generated record left


@dataclass
class Tally:
    records: int = 0
    operations: int = 0
    retries: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    messages: list[str] = field(default_factory=list)
    acked: list[tuple[str, str]] = field(default_factory=list)  # every acknowledgement, in the window or not
    ran_out: int = 0  # bare-insert clients that used up their records before the window ended
    elapsed: float = 0.0
    all_records: int = 0  # in the window or not: what the CPU figures are divided by
    app_cpu: float | None = None  # CPU seconds of the server's processes over the whole run
    db_cpu: float | None = None  # CPU seconds of the PostgreSQL backends of its database

    def add(self, result: OpResult, latency: float, counted: bool) -> None:
        self.acked.extend(result.acked)
        self.ran_out += result.ran_out
        self.all_records += result.records
        if len(self.messages) < 5:
            self.messages.extend(result.messages[: 5 - len(self.messages)])
        if counted:
            self.records += result.records
            self.operations += 1
            self.retries += result.retries
            self.statuses.update(result.statuses)
            self.errors += result.errors
            self.latencies.append(latency)


Operation = Callable[[], OpResult]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: str) -> tuple[int, float] | None:
    """(process group, user + system CPU seconds) of a process, from /proc (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[2]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds used by a server's process group and by the PostgreSQL backends serving one
    database: a machine-load-independent cost per record beside the throughput. Backends that
    exit during a run take their CPU with them (pools keep theirs open)."""

    def __init__(self, pgids: list[int] | None, admin_url: str | None = None, database: str | None = None):
        self.pgids = set(pgids or ())
        self.admin_url = admin_url
        self.database = database

    def app(self) -> float | None:
        if not self.pgids or not Path("/proc").is_dir():
            return None
        total = 0.0
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                found = _cpu_of(entry.name)
                if found is not None and found[0] in self.pgids:
                    total += found[1]
        return total

    def db(self) -> float | None:
        if self.admin_url is None or self.database is None:
            return None
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as connection:
            pids = [
                str(row[0])
                for row in connection.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)
                )
            ]
        found = [_cpu_of(pid) for pid in pids]
        if any(item is None for item in found):
            return None  # the server runs elsewhere or as another user: /proc does not show it
        return sum(item[1] for item in found if item is not None)

    def read(self) -> tuple[float | None, float | None]:
        return self.app(), self.db()


def run_clients(
    operations: list[Operation], warmup: float, seconds: float, max_ops: int, meter: CpuMeter | None = None
) -> Tally:
    """One thread per operation, calling it back to back. An operation counts when it ends inside
    the measured window (after ``warmup``, for ``seconds``); no new one starts after the window."""
    before = meter.read() if meter is not None else (None, None)
    start_at = time.monotonic() + 0.2
    measure_from = start_at + warmup
    measure_to = measure_from + seconds
    tally = Tally()
    lock = threading.Lock()

    def worker(operation: Operation) -> None:
        delay = start_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for _ in range(max_ops):
            began = time.monotonic()
            if began >= measure_to:
                break
            try:
                result = operation()
            except Exception as exc:  # a broken client must not hang the run
                result = OpResult(errors=BATCH_SIZE, messages=[f"{type(exc).__name__}: {exc}"])
            ended = time.monotonic()
            with lock:
                tally.add(result, ended - began, measure_from <= ended <= measure_to)

    threads = [threading.Thread(target=worker, args=(op,), daemon=True) for op in operations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, measure_to - time.monotonic()) + 3 * REQUEST_TIMEOUT_S)
    hung = sum(thread.is_alive() for thread in threads)
    if hung:
        tally.errors += hung
        tally.messages.append(f"{hung} client thread(s) did not finish")
    tally.elapsed = seconds
    if meter is not None:
        after = meter.read()
        if before[0] is not None and after[0] is not None:
            tally.app_cpu = after[0] - before[0]
        if before[1] is not None and after[1] is not None:
            tally.db_cpu = after[1] - before[1]
    return tally


# -------------------------------------------------------------------------------------- surveykit


@dataclass
class Device:
    username: str
    country: str | None  # None: all countries of the study (the puller)
    device_id: str = ""
    code: str = ""
    token: str = ""


class NumberSupply:
    """Interview numbers from the device's own blocks, reserved with POST /api/v1/blocks."""

    def __init__(self, http: Http, country: str) -> None:
        self.http = http
        self.country = country
        self.numbers: collections.deque[int] = collections.deque()
        self.reserved_blocks = 0

    def reserve(self, blocks: int) -> None:
        for _ in range(blocks):
            body = {"study": STUDY, "country": self.country, "activity": ACTIVITY, "size": BLOCK_SIZE}
            block = self.http.json("POST", "/api/v1/blocks", body, expect=(201,))
            self.numbers.extend(range(block["first_number"], block["last_number"] + 1))
            self.reserved_blocks += 1

    def take(self, count: int) -> list[int]:
        while len(self.numbers) < count:
            self.reserve(1)
        return [self.numbers.popleft() for _ in range(count)]


class CounterSupply:
    """Numbers for Kinto and the bare inserts (they check none): a per-client range."""

    def __init__(self, country: str, first: int) -> None:
        self.country = country
        self.next = first

    def take(self, count: int) -> list[int]:
        numbers = [(self.next + i - 1) % 99_999 + 1 for i in range(count)]
        self.next += count
        return numbers


def make_batch(factory: RecordFactory, supply: NumberSupply | CounterSupply) -> list[Record]:
    return [factory.make(supply.country, number) for number in supply.take(BATCH_SIZE)]


def surveykit_body(batch: list[Record]) -> bytes:
    changes = ",".join(f'{{"base_revision":0,"record":{text},"uuid":"{u}"}}' for u, text, _ in batch)
    return f'{{"changes":[{changes}]}}'.encode()


def surveykit_push(http: Http, batch: list[Record]) -> OpResult:
    """One batch through POST /api/v1/sync, re-sent after a transport error or 409/429/5xx
    (waiting what Retry-After asks, if anything); a record counts as acknowledged only with a
    receipt whose content hash matches the local one."""
    body = surveykit_body(batch)
    result = OpResult()
    asked = 0.0
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            result.retries += 1
            backoff(attempt, asked)
        try:
            status, headers, data = http.request(
                "POST", SYNC_PATH, body, {"Content-Type": "application/json"}
            )
        except TransportError as exc:
            result.statuses["transport"] += 1
            result.messages.append(str(exc))
            asked = 0.0
            continue
        if status in RETRY_STATUSES:
            result.statuses[str(status)] += 1
            asked = retry_after(headers)
            continue
        if status != 200:
            result.errors = len(batch)
            result.messages.append(f"sync answered {status}: {data[:300]!r}")
            return result
        answers = json.loads(data)["results"]
        for (record_uuid, _, digest), answer in zip(batch, answers, strict=True):
            receipt_ok = (
                answer.get("uuid") == record_uuid
                and answer.get("result") in ("created", "unchanged")
                and answer.get("content_hash") == digest
                and isinstance(answer.get("revision"), int)
            )
            if receipt_ok:
                result.records += 1
                result.acked.append((record_uuid, digest))
            else:
                result.errors += 1
                if len(result.messages) < 3:
                    result.messages.append(json.dumps(answer)[:400])
        return result
    result.errors = len(batch)
    result.messages.append(f"gave up after {MAX_ATTEMPTS} attempts")
    return result


def surveykit_pull_pages(http: Http) -> Operation:
    """Each call fetches the next page of the change feed; at the end it starts again from 0."""
    cursor = 0

    def page() -> OpResult:
        nonlocal cursor
        query = urllib.parse.urlencode({"study": STUDY, "cursor": cursor, "limit": PULL_PAGE})
        status, _, data = http.request("GET", f"{PULL_PATH}?{query}")
        if status != 200:
            return OpResult(errors=1, messages=[f"pull answered {status}: {data[:300]!r}"])
        body = json.loads(data)
        records = sum(1 for change in body["changes"] if change["kind"] == "interview" and change["object"])
        cursor = body["next_cursor"] if body["has_more"] else 0
        return OpResult(records=records)

    return page


class SurveykitSite:
    """A surveykit database prepared with the CLI, and its server."""

    def __init__(
        self,
        label: str,
        base: list[str],
        env: dict[str, str],
        workdir: Path,
        threads: int,
        processes: int = 1,
    ):
        self.label = label
        self.base = base
        self.env = env
        self.workdir = workdir
        self.threads = threads
        self.processes = processes
        self.servers: list[Server] = []
        self.ports: list[int] = []
        self.devices: list[Device] = []
        self.puller = Device("bench-puller", None)
        self.factory = RecordFactory()
        self.acked: dict[str, str] = {}  # uuid: content hash
        self.meter: CpuMeter | None = None
        self.database: tuple[str, str] | None = None  # admin URL and name, on PostgreSQL

    def prepare(self, clients: int) -> None:
        """The study, its countries, one fieldworker and one enrolled tablet per client, and a
        puller (a fieldworker of every country), all with surveykit's own CLI commands."""
        started = time.monotonic()
        commands: list[tuple[list[str], str | None]] = [
            (["db", "upgrade"], None),
            (["instruments", "publish", str(DEFINITION_FILE)], None),
            (["studies", "add", STUDY, "--name", "Sync benchmark"], None),
            (["studies", "add-activity", STUDY, ACTIVITY, "--name", "Interviews with duty bearers"], None),
        ]
        for code in COUNTRIES:
            commands.append(
                (
                    ["studies", "add-country", STUDY, code, "--name", f"Country {code}", "--language", "en"],
                    None,
                )
            )
        self.devices = [Device(f"bench-fw{i + 1:02d}", COUNTRIES[i % len(COUNTRIES)]) for i in range(clients)]
        for device in [*self.devices, self.puller]:
            countries = ["--country", device.country] if device.country else []
            commands += [
                (["users", "add", device.username, "--password-stdin"], secrets.token_urlsafe(18) + "\n"),
                (["users", "grant", device.username, "fieldworker", "--study", STUDY, *countries], None),
                (["devices", "enrol", device.username, "--label", f"{device.username} tablet"], None),
            ]
        outputs = run_cli_batch(self.base, commands, self.env)
        codes = [m.group(1) for m in re.finditer(r"enrolment code: (\S+)", "\n".join(outputs))]
        if len(codes) != clients + 1:
            raise RuntimeError(f"expected {clients + 1} enrolment codes, found {len(codes)}")
        for device, code in zip([*self.devices, self.puller], codes, strict=True):
            device.code = code
        print(
            f"  {self.label}: study, 2 countries, {clients + 1} fieldworkers with a tablet each, "
            f"{len(commands)} CLI commands ({time.monotonic() - started:.0f} s)"
        )

    def start(self) -> None:
        """``processes`` servers on one database, as behind a proxy (docs/operations.md)."""
        argv = [*self.base, "serve", "--port", "0", "--threads", str(self.threads)]
        name = f"surveykit-{self.label.split()[-1].lower()}"
        for number in range(self.processes):
            self.servers.append(Server(f"{name}-{number + 1}", argv, self.workdir, self.env))
            self.ports.append(self.servers[-1].start())
        pgids = [server.process.pid for server in self.servers if server.process is not None]
        self.meter = CpuMeter(pgids, *(self.database or (None, None)))
        for device in [*self.devices, self.puller]:
            answer = Http(self.ports[0]).json("POST", "/api/v1/devices/activate", {"code": device.code})
            device.device_id = answer["device_id"]
            device.token = answer["access_token"]

    def http(self, device: Device) -> Http:
        """A connection to one of the servers: the clients are spread over them in turn."""
        index = self.devices.index(device) if device in self.devices else 0
        return Http(self.ports[index % len(self.ports)], {"Authorization": f"Bearer {device.token}"})

    def push(self, clients: int, args: argparse.Namespace, expected_rate: float | None) -> Tally:
        connections = [self.http(device) for device in self.devices[:clients]]
        supplies = [NumberSupply(h, d.country or "") for h, d in zip(connections, self.devices, strict=False)]
        # Numbers for the whole run are reserved up front when a rate is known (a tablet reserves
        # blocks while online); a client that runs out reserves another block in the window.
        if expected_rate:
            need = expected_rate * (args.warmup + args.seconds) * 1.5 / clients
            blocks = max(1, min(args.max_records // BLOCK_SIZE, int(need // BLOCK_SIZE) + 1))
        else:
            blocks = 5
        for supply in supplies:
            supply.reserve(blocks)
        reserved = sum(s.reserved_blocks for s in supplies)

        def operation(http: Http, supply: NumberSupply) -> Operation:
            return lambda: surveykit_push(http, make_batch(self.factory, supply))

        ops = [operation(h, s) for h, s in zip(connections, supplies, strict=True)]
        tally = run_clients(ops, args.warmup, args.seconds, args.max_records // BATCH_SIZE, self.meter)
        for connection in connections:
            connection.close()
        topups = sum(s.reserved_blocks for s in supplies) - reserved
        if topups:
            tally.messages.append(f"(note) {topups} block(s) reserved during the run")
        self.acked.update(tally.acked)
        return tally

    def pull(self, args: argparse.Namespace) -> Tally:
        connection = self.http(self.puller)
        tally = run_clients(
            [surveykit_pull_pages(connection)], args.warmup, args.seconds, 100_000, self.meter
        )
        connection.close()
        return tally

    def stop(self) -> None:
        for server in self.servers:
            if not server.alive():
                print(f"  {self.label}: {server.name} died:\n{server.log_tail()}")
            server.stop()


# What a database holds for each record id: (stored copies, the content hash of one copy).
Stored = dict[str, tuple[int, str]]


def stored_surveykit(rows: Any) -> Stored:
    """From (uuid, content hash, revisions) rows: a record stored once has one revision."""
    return {str(uuid_): (int(revisions), digest) for uuid_, digest, revisions in rows}


SURVEYKIT_STORED = (
    "SELECT i.uuid, i.content_hash, (SELECT count(*) FROM interview_revisions r "
    "WHERE r.interview_uuid = i.uuid) FROM interviews i"
)


def stored_sqlite(path: Path) -> Stored:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return stored_surveykit(connection.execute(SURVEYKIT_STORED))
    finally:
        connection.close()


def stored_postgres_surveykit(url: str) -> Stored:
    import psycopg

    with psycopg.connect(url) as connection:
        return stored_surveykit(connection.execute(SURVEYKIT_STORED))


def stored_bare(url: str) -> Stored:
    """The bare table keeps each record's JSON text as inserted (``json``, not ``jsonb``)."""
    import psycopg

    stored: Stored = {}
    with psycopg.connect(url) as connection:
        for record_uuid, text in connection.execute("SELECT uuid, record::text FROM bare_records"):
            key = str(record_uuid)
            copies = stored.get(key, (0, ""))[0] + 1
            stored[key] = (copies, hashlib.sha256(text.encode("utf-8")).hexdigest())
    return stored


# ------------------------------------------------------------------------------------- bare insert

BARE_TABLE = """
CREATE TABLE bare_records (
    uuid uuid PRIMARY KEY,
    record json NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
)
"""
BARE_INSERT = "INSERT INTO bare_records (uuid, record) VALUES (%s, %s)"


def bare_client(
    url: str,
    country: str,
    first_number: int,
    count: int,
    ready: Any,
    go: Any,
    window: Any,
    results: Any,
    finished: Any,
) -> None:
    """One bare-insert client in its own process: it generates ``count`` records before the window,
    then inserts them a batch of 25 per committed transaction (one pipelined ``executemany``) until
    the window ends or they run out. A batch counts when it ends inside the window."""
    import psycopg

    factory = RecordFactory()
    supply = CounterSupply(country, first_number)
    batches = [make_batch(factory, supply) for _ in range(max(1, count // BATCH_SIZE))]
    connection = psycopg.connect(url)
    ready.put(os.getpid())
    go.wait()
    measure_from, measure_to = window[0], window[1]
    start_at = measure_from - window[2]
    delay = start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    done: list[tuple[float, bool, int, list[tuple[str, str]]]] = []
    errors: list[str] = []
    ran_out = True
    for batch in batches:
        began = time.monotonic()
        if began >= measure_to:
            ran_out = False
            break
        try:
            with connection.cursor() as cursor:
                cursor.executemany(BARE_INSERT, [(u, text) for u, text, _ in batch])
            connection.commit()
        except psycopg.Error as exc:
            connection.rollback()
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        ended = time.monotonic()
        done.append(
            (ended - began, measure_from <= ended <= measure_to, len(batch), [(u, d) for u, _, d in batch])
        )
    ran_out = ran_out and time.monotonic() < measure_to
    results.put((done, errors, ran_out))
    # The connection stays open until the CPU of its backend has been read (a backend that exits
    # takes its CPU time with it).
    finished.wait(timeout=600)
    connection.close()


class BareInsert:
    """The floor: each batch of 25 records inserted into one table in one committed transaction,
    by one process per client, from records generated before the window."""

    def __init__(self, url: str, meter: CpuMeter) -> None:
        import psycopg

        self.url = url
        self.meter = meter
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(BARE_TABLE)
        self.acked: dict[str, str] = {}

    def push(self, clients: int, args: argparse.Namespace, offset: int) -> Tally:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        per_client = max(BATCH_SIZE, args.bare_records // clients)
        ready, results, go, finished = context.Queue(), context.Queue(), context.Event(), context.Event()
        window = context.Array("d", 3)
        processes = [
            context.Process(
                target=bare_client,
                args=(
                    self.url,
                    COUNTRIES[i % 2],
                    offset + i * per_client,
                    per_client,
                    ready,
                    go,
                    window,
                    results,
                    finished,
                ),
                daemon=True,
            )
            for i in range(clients)
        ]
        for process in processes:
            process.start()
        try:
            for _ in processes:
                ready.get(timeout=600)
            before = self.meter.read()
            start_at = time.monotonic() + 0.2
            window[0], window[1], window[2] = (
                start_at + args.warmup,
                start_at + args.warmup + args.seconds,
                args.warmup,
            )
            go.set()
            outcomes = [
                results.get(timeout=args.warmup + args.seconds + 3 * REQUEST_TIMEOUT_S) for _ in processes
            ]
            after = self.meter.read()
        finally:
            finished.set()
            for process in processes:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
        tally = Tally()
        for done, errors, ran_out in outcomes:
            for latency, counted, records, acked in done:
                tally.add(OpResult(records=records, acked=acked), latency, counted)
            tally.errors += len(errors) * BATCH_SIZE
            tally.messages.extend(errors[:2])
            tally.ran_out += ran_out
        if tally.ran_out:
            tally.messages.append(
                f"RAN OUT: {tally.ran_out} client(s) used all {per_client:,} generated records before the "
                "window ended, so this rate understates the floor: raise --bare-records"
            )
        tally.elapsed = args.seconds
        if before[1] is not None and after[1] is not None:
            tally.db_cpu = after[1] - before[1]
        self.acked.update(tally.acked)
        return tally


# ------------------------------------------------------------------------------------------ Kinto


def kinto_ini(storage_url: str, threads: int, retry_after_seconds: int) -> str:
    return f"""\
# Written by bench/bench_sync.py for one run.
[app:main]
use = egg:kinto
kinto.includes =
kinto.storage_backend = kinto.core.storage.postgresql
kinto.storage_url = {storage_url}
kinto.cache_backend = kinto.core.cache.postgresql
kinto.cache_url = {storage_url}
kinto.permission_backend = kinto.core.permission.postgresql
kinto.permission_url = {storage_url}
kinto.userid_hmac_secret = {secrets.token_hex(32)}
multiauth.policies = basicauth
kinto.bucket_create_principals = system.Authenticated
kinto.batch_max_requests = {BATCH_SIZE}
# What Kinto tells clients to wait (Retry-After) after a 409 or 503; its default is 30.
kinto.retry_after_seconds = {retry_after_seconds}

[server:main]
use = egg:waitress#main
host = {HOST}
port = 0
threads = {threads}

[loggers]
keys = root, waitress

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

# INFO for waitress only: its "Serving on" line tells the port; no per-request logging anywhere.
[logger_waitress]
level = INFO
handlers = console
qualname = waitress
propagate = 0

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(asctime)s %(levelname)s [%(name)s] %(message)s
"""


def ensure_kinto_venv(venv: Path, spec: str) -> Path:
    """The kinto console script of a separate virtual environment, created on first use."""
    kinto = venv / "bin" / "kinto"
    if kinto.exists():
        return kinto
    print(f"  creating {venv} and installing {spec} (once; reused by later runs)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"python -m venv {venv} failed:\n{done.stdout}{done.stderr}")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", spec]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not kinto.exists():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise RuntimeError(f"pip install {spec} into {venv} failed ({done.returncode}):\n{tail}")
    return kinto


def kinto_body(batch: list[Record], collection_path: str) -> bytes:
    """A /v1/batch of PUTs to the records' own ids, each with ``If-None-Match: *``: create only, as
    kinto-http's ``create_record`` does; a record already stored answers 412 and is left alone."""
    requests = ",".join(
        f'{{"path":"{collection_path}/records/{u}","headers":{{"If-None-Match":"*"}},"body":{{"data":{text}}}}}'
        for u, text, _ in batch
    )
    return f'{{"defaults":{{"method":"PUT"}},"requests":[{requests}]}}'.encode()


def kinto_hash(data: dict[str, Any]) -> str:
    """The content hash of a record as Kinto returns it (without the fields Kinto adds)."""
    return content_hash({k: v for k, v in data.items() if k not in ("id", "last_modified")})


def honour_backoff(http: Http, headers: dict[str, str]) -> None:
    """Kinto's ``Backoff`` header asks a client to stay away for that many seconds (kinto-http
    refuses to send until then); the next request of this client waits for it."""
    value = headers.get("backoff", "").strip()
    if value.isdigit() and int(value) > 0:
        http.not_before = max(http.not_before, time.monotonic() + int(value))


def kinto_push(http: Http, batch: list[Record], collection_path: str) -> OpResult:
    """One /v1/batch of 25 create-only PUTs, driven as Kinto's own clients drive it.

    A 409 or 5xx inside a batch means the batch's transaction was rolled back, so none of its 201s
    is trusted and the whole batch is sent again after the Retry-After Kinto gave (sub-response or
    response). On the re-send, a record an earlier attempt did store answers 412 with the stored
    record: it counts as stored when the stored content is the content sent."""
    body = kinto_body(batch, collection_path)
    result = OpResult()
    asked = 0.0
    attempt = 0
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            result.retries += 1
            backoff(attempt, asked)
        wait = http.not_before - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            status, headers, data = http.request(
                "POST", "/v1/batch", body, {"Content-Type": "application/json"}
            )
        except TransportError as exc:
            result.statuses["transport"] += 1
            result.messages.append(str(exc))
            asked = 0.0
            continue
        honour_backoff(http, headers)
        if status in RETRY_STATUSES:
            result.statuses[str(status)] += 1
            asked = retry_after(headers)
            continue
        if status != 200:
            result.errors = len(batch)
            result.messages.append(f"batch answered {status}: {data[:300]!r}")
            return result
        responses = json.loads(data)["responses"]
        if len(responses) != len(batch):
            result.errors = len(batch)
            result.messages.append(f"{len(responses)} sub-responses for {len(batch)} requests")
            return result
        rolled_back = [r for r in responses if r["status"] == 409 or r["status"] >= 500]
        if rolled_back:
            result.statuses.update(f"sub {r['status']}" for r in rolled_back)
            asked = max(
                retry_after({k.lower(): v for k, v in r.get("headers", {}).items()}) for r in rolled_back
            )
            continue
        for (record_uuid, _, digest), answer in zip(batch, responses, strict=True):
            if answer["status"] == 201:
                stored = answer["body"]["data"]
            elif answer["status"] == 412:
                stored = answer["body"].get("details", {}).get("existing", {})
                result.statuses["sub 412"] += 1
            else:
                stored = None
            if stored is not None and stored.get("id") == record_uuid and kinto_hash(stored) == digest:
                result.records += 1
                result.acked.append((record_uuid, digest))
            else:
                result.errors += 1
                if len(result.messages) < 3:
                    result.messages.append(
                        f"sub-request answered {answer['status']}: {json.dumps(answer['body'])[:300]}"
                    )
        return result
    result.errors = len(batch)
    result.messages.append(f"gave up after {attempt + 1} attempts")
    return result


def kinto_pull_pages(http: Http, collection_paths: list[str]) -> Operation:
    """Each call fetches the next page of 1,000 records (oldest first, following Next-Page), going
    through the collections in turn and starting again after the last."""
    firsts = [f"{path}/records?_sort=last_modified&_limit={PULL_PAGE}" for path in collection_paths]
    position = 0
    path = firsts[0]

    def page() -> OpResult:
        nonlocal path, position
        status, headers, data = http.request("GET", path)
        honour_backoff(http, headers)
        if status != 200:
            path = firsts[position]
            return OpResult(errors=1, messages=[f"records answered {status}: {data[:300]!r}"])
        records = len(json.loads(data)["data"])
        following = headers.get("next-page")
        if following:
            parts = urllib.parse.urlsplit(following)
            path = f"{parts.path}?{parts.query}"
        else:
            position = (position + 1) % len(firsts)
            path = firsts[position]
        return OpResult(records=records)

    return page


@dataclass
class KintoDeployment:
    """How the tablets' records are laid out in Kinto: one collection for the whole study, or
    one collection per tablet (no two writers bump the same collection timestamp)."""

    label: str
    per_client: bool

    def collection(self, client: int) -> str:
        name = f"tablet-{client + 1:02d}" if self.per_client else KINTO_COLLECTION
        return f"/v1/buckets/{KINTO_BUCKET}/collections/{name}"

    def collections(self, clients: int) -> list[str]:
        return [self.collection(i) for i in range(clients if self.per_client else 1)]


KINTO_DEPLOYMENTS = (
    KintoDeployment("one shared collection", per_client=False),
    KintoDeployment("a collection per tablet", per_client=True),
)


class KintoSite:
    def __init__(
        self, kinto: Path, url: str, workdir: Path, args: argparse.Namespace, database: tuple[str, str]
    ) -> None:
        self.kinto = kinto
        self.database = database
        self.meter: CpuMeter | None = None
        self.url = url
        self.workdir = workdir
        self.threads = args.threads
        self.processes = args.processes
        self.retry_after_seconds = args.kinto_retry_after
        self.ini = workdir / "kinto.ini"
        self.servers: list[Server] = []
        self.ports: list[int] = []
        self.factory = RecordFactory()
        self.acked: dict[str, str] = {}
        self.version = ""
        self.max_clients = max(args.client_counts)

    def start(self) -> None:
        self.ini.write_text(kinto_ini(self.url, self.threads, self.retry_after_seconds))
        env = child_env()
        self.version = run_cli([str(self.kinto), "version"], env, cwd=self.workdir).strip()
        run_cli([str(self.kinto), "migrate", "--ini", str(self.ini)], env, cwd=self.workdir)
        for number in range(self.processes):
            argv = [str(self.kinto), "start", "--ini", str(self.ini)]
            self.servers.append(Server(f"kinto-{number + 1}", argv, self.workdir, env))
            self.ports.append(self.servers[-1].start())
        pgids = [server.process.pid for server in self.servers if server.process is not None]
        self.meter = CpuMeter(pgids, *self.database)
        admin = self.http("bench-setup")
        admin.json("PUT", f"/v1/buckets/{KINTO_BUCKET}", {"data": {}}, expect=(200, 201))
        permissions = {"read": ["system.Authenticated"], "write": ["system.Authenticated"]}
        paths = {path for d in KINTO_DEPLOYMENTS for path in d.collections(self.max_clients)}
        for path in sorted(paths):
            admin.json("PUT", path, {"data": {}, "permissions": permissions}, expect=(200, 201))
        admin.close()

    def http(self, user: str, client: int = 0) -> Http:
        """A connection for ``user`` to one of the servers (client number ``client``, in turn)."""
        token = base64.b64encode(f"{user}:{user}-secret".encode()).decode()
        return Http(self.ports[client % len(self.ports)], {"Authorization": f"Basic {token}"})

    def push(self, deployment: KintoDeployment, clients: int, args: argparse.Namespace, offset: int) -> Tally:
        connections = [self.http(f"device-{i + 1:02d}", i) for i in range(clients)]
        supplies = [CounterSupply(COUNTRIES[i % 2], offset + i * args.max_records) for i in range(clients)]

        def operation(http: Http, supply: CounterSupply, client: int) -> Operation:
            path = deployment.collection(client)
            return lambda: kinto_push(http, make_batch(self.factory, supply), path)

        ops = [operation(h, s, i) for i, (h, s) in enumerate(zip(connections, supplies, strict=True))]
        tally = run_clients(ops, args.warmup, args.seconds, args.max_records // BATCH_SIZE, self.meter)
        for connection in connections:
            connection.close()
        self.acked.update(tally.acked)
        return tally

    def pull(self, deployment: KintoDeployment, args: argparse.Namespace) -> Tally:
        connection = self.http("device-puller")
        pages = kinto_pull_pages(connection, deployment.collections(self.max_clients))
        tally = run_clients([pages], args.warmup, args.seconds, 100_000, self.meter)
        connection.close()
        return tally

    def stored(self) -> Stored:
        import psycopg

        stored: Stored = {}
        statement = "SELECT id, data::text FROM objects WHERE resource_name = 'record' AND parent_id LIKE %s"
        with psycopg.connect(self.url) as connection:
            for record_id, text in connection.execute(statement, (f"/buckets/{KINTO_BUCKET}/collections/%",)):
                copies = stored.get(record_id, (0, ""))[0] + 1
                stored[record_id] = (copies, kinto_hash(json.loads(text)))
        return stored

    def stop(self) -> None:
        for server in self.servers:
            if not server.alive():
                print(f"  kinto: {server.name} died:\n{server.log_tail()}")
            server.stop()


# ------------------------------------------------------------------------------------ reporting


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass
class Row:
    system: str
    operation: str
    clients: int
    tally: Tally

    @property
    def rate(self) -> float:
        return self.tally.records / self.tally.elapsed if self.tally.elapsed else 0.0

    def cpu_per_record(self, seconds: float | None) -> str:
        if seconds is None or not self.tally.all_records:
            return "-"
        return f"{seconds * 1000 / self.tally.all_records:.2f}"

    def cells(self) -> list[str]:
        latencies = sorted(self.tally.latencies)
        retry_causes = ", ".join(f"{k}: {v}" for k, v in sorted(self.tally.statuses.items()))
        return [
            self.system,
            self.operation,
            str(self.clients),
            f"{self.tally.records:,}",
            f"{self.rate:,.0f}",
            f"{percentile(latencies, 0.5) * 1000:,.0f}",
            f"{percentile(latencies, 0.95) * 1000:,.0f}",
            self.cpu_per_record(self.tally.app_cpu),
            self.cpu_per_record(self.tally.db_cpu),
            f"{self.tally.retries:,}" + (f" ({retry_causes})" if retry_causes else ""),
            f"{self.tally.errors:,}",
        ]


def print_table(header: list[str], rows: list[list[str]], align: str) -> None:
    """``align``: one letter per column, l or r."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.ljust(width) if side == "l" else cell.rjust(width)
            for cell, width, side in zip(cells, widths, align, strict=True)
        ]
        return "  ".join(padded).rstrip()

    print(line(header))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))


def report_row(row: Row) -> None:
    latencies = sorted(row.tally.latencies)
    print(
        f"    {row.system} {row.operation} x{row.clients}: {row.rate:,.0f} records/s "
        f"(p50 {percentile(latencies, 0.5) * 1000:,.0f} ms, retries {row.tally.retries}, "
        f"errors {row.tally.errors})",
        flush=True,
    )
    for message in row.tally.messages[:3]:
        print(f"      {message}")


def check_stored(label: str, acked: dict[str, str], stored: Stored) -> bool:
    """Every acknowledged record is stored exactly once, with the content its client sent."""
    missing = sum(1 for record_uuid in acked if record_uuid not in stored)
    twice = sum(1 for record_uuid in acked if stored.get(record_uuid, (1, ""))[0] > 1)
    differing = sum(
        1
        for record_uuid, digest in acked.items()
        if record_uuid in stored and stored[record_uuid][1] != digest
    )
    problems = [
        f"{n} {what}" for n, what in ((missing, "MISSING"), (twice, "STORED TWICE"), (differing, "DIFFERENT"))
    ]
    problems = [p for p in problems if not p.startswith("0 ")]
    verdict = "each stored exactly once, as sent" if not problems else ", ".join(problems)
    print(f"  {label}: {len(acked):,} records acknowledged, {len(stored):,} stored: {verdict}")
    return not problems


# ----------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time per scenario (default 15)")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured lead-in per scenario (default 3)"
    )
    parser.add_argument(
        "--clients", default="1,8", help="concurrent push clients, comma-separated (default 1,8)"
    )
    parser.add_argument("--threads", type=int, default=8, help="waitress threads of each server (default 8)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes of surveykit and of Kinto on PostgreSQL, each on its own port with the "
        "clients spread over them in turn, as behind a proxy (default 1; SQLite: always 1)",
    )
    parser.add_argument(
        "--max-records",
        type=int,
        default=20_000,
        help="at most this many records per client and scenario, surveykit and Kinto (default 20000)",
    )
    parser.add_argument(
        "--bare-records",
        type=int,
        help="records the bare-insert clients generate before each window, all clients together "
        "(default 12,000 per second of warm-up and window)",
    )
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql",
        help="sqlite, postgresql or both, comma-separated (default both)",
    )
    parser.add_argument("--skip-kinto", action="store_true", help="leave Kinto out")
    parser.add_argument(
        "--sqlite-only", action="store_true", help="only surveykit on SQLite (--backends sqlite)"
    )
    parser.add_argument(
        "--kinto-retry-after",
        type=int,
        default=1,
        metavar="SECONDS",
        help="Kinto's retry_after_seconds, the Retry-After it sends with a 409 or 503 and its clients wait "
        "(Kinto's default is 30; default here 1)",
    )
    parser.add_argument(
        "--analyze",
        choices=("auto", "off"),
        default="auto",
        help="auto: keep planner statistics as autovacuum would (ANALYZE after set-up, then as "
        "autovacuum's rule says when the server's autovacuum is off); off: leave them as the server does",
    )
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES_URL,
        metavar="ADMIN_URL",
        help=f"where the throwaway databases are created and dropped (default {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--kinto-venv",
        type=Path,
        default=DEFAULT_KINTO_VENV,
        help=f"virtual environment for Kinto, created when missing (default {DEFAULT_KINTO_VENV})",
    )
    parser.add_argument("--kinto-spec", default=DEFAULT_KINTO_SPEC, help="what pip installs there")
    parser.add_argument(
        "--keep-logs", type=Path, metavar="DIR", help="copy the servers' logs to DIR at the end"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 on a missed target or errors")
    args = parser.parse_args(argv)
    try:
        args.client_counts = sorted({int(part) for part in args.clients.split(",") if part.strip()})
    except ValueError:
        parser.error("--clients takes numbers such as 1,8")
    if not args.client_counts or min(args.client_counts) < 1 or max(args.client_counts) > 32:
        parser.error("--clients: between 1 and 32")
    if args.seconds <= 0 or args.warmup < 0 or args.threads <= 0 or args.processes <= 0:
        parser.error("--seconds, --threads and --processes must be positive, --warmup not negative")
    if not BATCH_SIZE * 4 <= args.max_records <= 40_000:
        parser.error(f"--max-records: between {BATCH_SIZE * 4} and 40000")
    if args.bare_records is None:
        args.bare_records = int(12_000 * (args.warmup + args.seconds)) + 1_000
    if args.bare_records < BATCH_SIZE * max(args.client_counts):
        parser.error(f"--bare-records: at least {BATCH_SIZE} per client")
    if args.kinto_retry_after < 0:
        parser.error("--kinto-retry-after: not negative")
    args.backend_list = [part.strip() for part in args.backends.split(",") if part.strip()]
    if args.sqlite_only:
        args.backend_list = ["sqlite"]
    if not args.backend_list or set(args.backend_list) - {"sqlite", "postgresql"}:
        parser.error("--backends: sqlite, postgresql or both")
    return args


def surveykit_scenarios(site: SurveykitSite, args: argparse.Namespace, rows: list[Row]) -> None:
    system = f"surveykit {site.label}"
    rate: float | None = None
    for clients in args.client_counts:
        row = Row(system, "push", clients, site.push(clients, args, rate))
        rate = max(rate or 0.0, row.rate * 2)
        rows.append(row)
        report_row(row)
    row = Row(system, "pull", 1, site.pull(args))
    rows.append(row)
    report_row(row)


def run_sqlite(args: argparse.Namespace, workdir: Path, rows: list[Row], env: dict[str, str]) -> bool:
    data_dir = workdir / "sqlite-data"
    base = [surveykit_command(), "--data-dir", str(data_dir)]
    site = SurveykitSite("SQLite", base, env, workdir, args.threads)
    print("surveykit on SQLite (embedded):")
    site.prepare(max(args.client_counts))
    try:
        site.start()
        surveykit_scenarios(site, args, rows)
    finally:
        site.stop()
    return check_stored("surveykit SQLite", site.acked, stored_sqlite(data_dir / "surveykit.sqlite3"))


def start_kinto(args: argparse.Namespace, workdir: Path, kinto_db: ThrowawayDatabase) -> KintoSite | None:
    if args.skip_kinto:
        print("  Kinto skipped (--skip-kinto)")
        return None
    kinto: KintoSite | None = None
    try:
        executable = ensure_kinto_venv(args.kinto_venv, args.kinto_spec)
        kinto = KintoSite(executable, kinto_db.libpq_url(), workdir, args, (args.postgres, kinto_db.name))
        kinto.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"  KINTO NOT MEASURED: {exc}")
        if kinto is not None:
            kinto.stop()
        return None
    print(
        f"  Kinto {kinto.version} from {args.kinto_venv}, PostgreSQL backends, "
        f"{len(kinto.ports)} process(es), ports {' '.join(map(str, kinto.ports))}"
    )
    print(
        "  Kinto clients create each record with PUT to its id and If-None-Match: * in /v1/batch (as "
        "kinto-http's create_record); a 412 with the same stored content counts as stored; a batch with "
        "a 409 or 5xx inside is re-sent whole after the Retry-After Kinto sends "
        f"(retry_after_seconds = {args.kinto_retry_after}; else 10 ms doubling up to 0.5 s); "
        "a Backoff header is honoured"
    )
    print(f"  Kinto deployments: {', '.join(d.label for d in KINTO_DEPLOYMENTS)} (same server, same bucket)")
    return kinto


def run_postgres(args: argparse.Namespace, workdir: Path, rows: list[Row], env: dict[str, str]) -> bool:
    """surveykit, Kinto and the bare loop on one PostgreSQL server, scenario by scenario in turn."""
    all_stored = True
    statistics = PlannerStatistics(args.postgres, enabled=args.analyze == "auto")
    print(f"  {statistics.mode()}")
    with (
        ThrowawayDatabase(args.postgres, "sk") as sk_db,
        ThrowawayDatabase(args.postgres, "kinto") as kinto_db,
        ThrowawayDatabase(args.postgres, "bare") as bare_db,
    ):
        print(f"  throwaway databases {sk_db.name}, {kinto_db.name}, {bare_db.name}")
        base = [surveykit_command(), "--data-dir", str(workdir / "pg-data"), "--database-url", sk_db.url]
        site = SurveykitSite("PostgreSQL", base, env, workdir, args.threads, args.processes)
        site.database = (args.postgres, sk_db.name)
        site.prepare(max(args.client_counts))
        kinto = start_kinto(args, workdir, kinto_db)
        bare = BareInsert(bare_db.libpq_url(), CpuMeter(None, args.postgres, bare_db.name))
        print(
            f"  bare insert: one process per client, {args.bare_records:,} records generated before each "
            "window (all clients), executemany of 25 per committed transaction, no --max-records cap"
        )
        for name, database in (("surveykit", sk_db), ("kinto", kinto_db), ("bare", bare_db)):
            statistics.add(name, database.url)
            statistics.analyse_now(name)
        statistics.start()
        try:
            site.start()
            rate: float | None = None
            offset = 1
            for clients in args.client_counts:
                row = Row("surveykit PostgreSQL", "push", clients, site.push(clients, args, rate))
                rate = max(rate or 0.0, row.rate * 2)
                rows.append(row)
                report_row(row)
                if kinto is not None:
                    for deployment in KINTO_DEPLOYMENTS:
                        tally = kinto.push(deployment, clients, args, offset)
                        row = Row(f"Kinto PostgreSQL, {deployment.label}", "push", clients, tally)
                        rows.append(row)
                        report_row(row)
                row = Row("bare psycopg PostgreSQL", "insert", clients, bare.push(clients, args, offset))
                rows.append(row)
                report_row(row)
                offset += clients * args.max_records
            row = Row("surveykit PostgreSQL", "pull", 1, site.pull(args))
            rows.append(row)
            report_row(row)
            if kinto is not None:
                for deployment in KINTO_DEPLOYMENTS:
                    row = Row(
                        f"Kinto PostgreSQL, {deployment.label}", "pull", 1, kinto.pull(deployment, args)
                    )
                    rows.append(row)
                    report_row(row)
        finally:
            statistics.stop()
            site.stop()
            if kinto is not None:
                kinto.stop()
        print(f"  ANALYZE runs (database and tables): {statistics.summary()}")
        for error in statistics.errors[:3]:
            print(f"  (analysing) {error}")
        all_stored &= check_stored(
            "surveykit PostgreSQL", site.acked, stored_postgres_surveykit(sk_db.libpq_url())
        )
        if kinto is not None:
            all_stored &= check_stored("Kinto PostgreSQL", kinto.acked, kinto.stored())
        all_stored &= check_stored("bare psycopg", bare.acked, stored_bare(bare_db.libpq_url()))
    return all_stored


def ratio_rows(rows: list[Row], clients: list[int]) -> tuple[list[list[str]], bool | None]:
    def rate(system: str, operation: str, n: int) -> float | None:
        for row in rows:
            if row.system == system and row.operation == operation and row.clients == n:
                return row.rate
        return None

    def cpu(system: str, operation: str, n: int) -> float | None:
        for row in rows:
            if row.system == system and row.operation == operation and row.clients == n:
                tally = row.tally
                if tally.app_cpu is None or tally.db_cpu is None or not tally.all_records:
                    return None
                return (tally.app_cpu + tally.db_cpu) / tally.all_records
        return None

    table = []
    verdict: bool | None = None
    kinto_systems = [(f"Kinto PostgreSQL, {d.label}", d.label) for d in KINTO_DEPLOYMENTS]
    shared = kinto_systems[0][0]
    for n in clients:
        ours = rate("surveykit PostgreSQL", "push", n)
        bare = rate("bare psycopg PostgreSQL", "insert", n)
        if ours is None:
            continue
        for system, label in kinto_systems:
            kinto = rate(system, "push", n)
            target = n == 8 and system == shared
            if kinto:
                value = ours / kinto
                result = ("PASS" if value >= TARGET_KINTO_RATIO else "FAIL") if target else ""
                if target:
                    verdict = value >= TARGET_KINTO_RATIO
                table.append(
                    [
                        f"surveykit / Kinto ({label}), push, {n} client(s)",
                        f"{value:.2f}",
                        f">= {TARGET_KINTO_RATIO:.1f}" if target else "",
                        result,
                    ]
                )
            elif target:
                table.append(
                    [
                        f"surveykit / Kinto ({label}), push, {n} client(s)",
                        "n/a",
                        f">= {TARGET_KINTO_RATIO:.1f}",
                        "NOT MEASURED",
                    ]
                )
        if bare:
            table.append([f"surveykit / bare insert, {n} client(s)", f"{ours / bare:.2f}", "", ""])
    for n in clients:
        ours_cpu = cpu("surveykit PostgreSQL", "push", n)
        for system, label in kinto_systems:
            kinto_cpu = cpu(system, "push", n)
            if ours_cpu and kinto_cpu:
                row_label = f"Kinto ({label}) / surveykit CPU per record (app+db), {n} client(s)"
                table.append([row_label, f"{kinto_cpu / ours_cpu:.2f}", "", ""])
    ours_pull = rate("surveykit PostgreSQL", "pull", 1)
    for system, label in kinto_systems:
        kinto_pull = rate(system, "pull", 1)
        if ours_pull and kinto_pull:
            table.append(
                [f"surveykit / Kinto ({label}), pull, 1 client", f"{ours_pull / kinto_pull:.2f}", "", ""]
            )
    return table, verdict


def settings_line(args: argparse.Namespace) -> str:
    """What produced the figures, printed under them (they mean little without it)."""
    parts = [
        f"{args.warmup:g} s warm-up + {args.seconds:g} s window per scenario",
        f"clients {','.join(map(str, args.client_counts))}",
        f"batches of {BATCH_SIZE}",
        f"{args.threads} waitress threads per server",
        f"PostgreSQL: {args.processes} server process(es) each for surveykit and Kinto",
        f"--max-records {args.max_records:,} (surveykit, Kinto)",
        f"--bare-records {args.bare_records:,}",
    ]
    if "postgresql" in args.backend_list:
        parts.append(f"--analyze {args.analyze}")
        if not args.skip_kinto:
            parts.append(f"Kinto retry_after_seconds {args.kinto_retry_after}")
    return "; ".join(parts) + f" (command: {' '.join(['bench/bench_sync.py', *sys.argv[1:]])})"


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    env = child_env()
    run_seconds = 8 * (args.warmup + args.seconds + 30) + 1200
    env["SURVEYKIT_ACCESS_TOKEN_SECONDS"] = str(int(run_seconds))
    env["SURVEYKIT_ENROLMENT_CODE_SECONDS"] = "3600"
    env["SURVEYKIT_ADMIN_PASSWORD"] = secrets.token_urlsafe(18)
    env["SURVEYKIT_BLOCK_SIZE"] = str(BLOCK_SIZE)
    # Each client reserves its numbers for the whole window up front and all activate from one
    # address: lift the per-device cap on unused numbers and the activation throttle, which exist
    # for real tablets and would otherwise be what this benchmark measures.
    env["SURVEYKIT_MAX_UNUSED_NUMBERS"] = "100000"
    env["SURVEYKIT_ACTIVATION_RATE_LIMIT"] = env["SURVEYKIT_LOGIN_RATE_LIMIT"] = "100000"
    size = len(RecordFactory().make("KE", 1)[1].encode())
    print(
        f"records: {size:,} bytes of JSON, {len(template_record()['answers'])} answers "
        f"(every question of {SLUG}), 2 quotes; batches of {BATCH_SIZE}; clients {args.client_counts}; "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s per scenario; {args.threads} waitress threads "
        f"per server; on PostgreSQL {args.processes} server process(es) each for surveykit and Kinto, "
        f"clients spread over them in turn; {os.cpu_count()} CPUs; Python {platform.python_version()}"
    )
    print("load average at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    rows: list[Row] = []
    stored_ok = True
    if "sqlite" in args.backend_list:
        stored_ok &= run_sqlite(args, workdir, rows, env)
    if "postgresql" in args.backend_list:
        print("PostgreSQL:")
        stored_ok &= run_postgres(args, workdir, rows, env)

    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print()
    print_table(
        [
            "system",
            "op",
            "clients",
            "records",
            "records/s",
            "p50 ms",
            "p95 ms",
            "app CPU ms/rec",
            "db CPU ms/rec",
            "retries",
            "errors",
        ],
        [row.cells() for row in rows],
        "llrrrrrrrlr",
    )
    print(
        "(latency: per batch of 25, retries included; pull: per page of up to 1,000 feed entries. "
        "CPU: seconds used by the server's processes (app) and by the PostgreSQL backends of its "
        "database (db) over the whole scenario, per record moved; for SQLite the database is in app. "
        "surveykit pull pages hold an interview and a participant entry per record; records/s counts "
        "interview records)"
    )
    print(f"settings: {settings_line(args)}")
    verdict: bool | None = None
    if "postgresql" in args.backend_list:
        table, verdict = ratio_rows(rows, args.client_counts)
        if table:
            print()
            print_table(["ratio (PostgreSQL)", "value", "target", "result"], table, "lrll")
    errors = sum(row.tally.errors for row in rows)
    if errors:
        print(f"\n{errors} record(s) or page(s) failed")
    if not stored_ok:
        print("\nsome acknowledged records are not stored exactly once as sent")
    if args.strict and (errors or not stored_ok or verdict is False):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="surveykit-bench-sync-") as tmp:
        try:
            return benchmark(args, Path(tmp))
        except RuntimeError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 2
        finally:
            if args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).glob("*.log"):
                    shutil.copy(log, args.keep_logs / log.name)


if __name__ == "__main__":
    sys.exit(main())
