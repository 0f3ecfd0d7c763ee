"""Load and fault audit: simulated tablets, two app processes, a SIGKILL, hostile clients, then an audit.

One command (issue #6, items 3-5):

    .venv/bin/python bench/load_fault.py                 # 50 tablets, 60 s of load, about 2-3 minutes
    .venv/bin/python bench/load_fault.py --tablets 20 --seconds 30 --no-hostile

What it does, in order:

1. Creates a throwaway PostgreSQL database (``--admin-url``; or uses ``--database-url``), and with
   surveykit's own CLI commands: migrates it, publishes the RA1 instrument, adds a study with five
   countries, one fieldworker per two tablets (granted one country) and one enrolled device per
   tablet (plus one for the hostile probes).
2. Starts two ``surveykit serve`` processes on that database. Each tablet is the reference client
   (``surveykit.client.Client``, its own SQLite file) activated with its enrolment code against one of
   the two processes (even tablets the first, odd ones the second).
3. Runs the tablets for ``--seconds`` in three phases (steady, kill, hostile). Each tablet, in a
   loop: records 0-2 new interviews offline (numbers minted from its own block), edits some of its
   records again (revisions), pushes, and sleeps ``--think`` seconds. Tablets of a sharing group (same
   country) pull and edit the group's shared records, each its own answer, at the same time, so the
   server answers ``conflict``; they merge (the server's version plus their own answer) and push
   again. ``--flaky-share`` of the tablets talk through a transport that loses the answer after the
   server committed (the client retries the same change), duplicates requests and replays old ones.
4. After the steady phase the tablets pause, converge (push until the outbox is empty, merging
   conflicts; then pull) and the database is AUDITED against every tablet (see ``audit``).
5. Kill phase: one app process is killed with SIGKILL while a push is in flight on it and started
   again on the same port; its tablets ride it out with their retries.
6. Hostile phase: while the tablets keep working, hostile clients hit the other process one after
   another (a body at one byte per second, a 100 MiB body with and without a length, JSON nested
   100,000 levels, invalid UTF-8 in the body and in the URL, 10,000 records in one batch); each
   must get its expected answer, and the tablets' p95 latency must stay acceptable.
7. The tablets converge again and the same AUDIT runs on everything since the start.

It prints the phases (throughput, p50/p95/p99), errors by kind, both audits, the hostile probes, the
servers' memory and log findings, and a verdict table. Exit status 0 only when every check passed;
1 when one failed; 2 when the run itself could not be carried out.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import load_fault_probes as probes  # noqa: E402
from harness import DatabaseUnavailable, ThrowawayDatabase  # noqa: E402
from tqdm import tqdm  # noqa: E402

from surveykit.client import (  # noqa: E402
    ApiError,
    Client,
    ClientError,
    HttpTransport,
    NetworkError,
    NoNumbersLeft,
    Response,
    RetryPolicy,
    ServerUnavailable,
    SessionEnded,
)
from surveykit.instruments.services import (  # noqa: E402
    iter_section_questions,
    read_definition_file,
    validate_definition,
)
from surveykit.terminal import format_table  # noqa: E402

STUDY = "ocsea"
ACTIVITY = "RA1"
RA1 = "ra1-duty-bearers"
RA1_FILE = PROJECT_ROOT / "instruments" / "ra1-duty-bearers.yaml"
COUNTRIES = ("KE", "TZ", "UG", "RW", "ET")
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SERVING = re.compile(r"serving on (http://127\.0\.0\.1:(\d+))")
SECRET = "load-fault-bench-secret-" + "s" * 32
PASSWORD = "load-fault-password-" + "p" * 8
START_TIMEOUT = 90.0
# Each tablet's own answer in the records its group shares (merging keeps every tablet's edit):
# the RA1 schedule's open questions that every interview asks (no relevance condition).
LONG_TEXT_QUESTIONS = tuple(
    question["id"]
    for _path, question in iter_section_questions(validate_definition(read_definition_file(RA1_FILE)))
    if question["type"] == "long_text" and "relevance" not in question
)
# What field notes look like: several scripts, so every layer is exercised beyond ASCII.
PHRASES = (
    "The unit reports cases to the national hotline each month; ",
    "ፖሊስ ከአጋሮች ጋር ይሰራል; ",
    "ក្រសួងបានរៀបចំផែនការសកម្មភាពជាតិ; ",
    "กระทรวงมีแผนปฏิบัติการระดับชาติ; ",
    "Há um plano nacional, ainda sem orçamento próprio — ",
)
# Tablets retry quickly enough to ride out a restart of a few seconds (about 5 s in all).
TABLET_RETRY = RetryPolicy(attempts=9, base=0.1, cap=2.0)


READ_SECONDS = 5  # SURVEYKIT_REQUEST_READ_SECONDS of the servers under test


class Fatal(Exception):
    """The run itself could not be carried out (exit status 2)."""


# -------------------------------------------------------------------------------------- processes


def child_env(workdir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SURVEYKIT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["SURVEYKIT_SECRET"] = SECRET
    env["SURVEYKIT_DATA_DIR"] = str(workdir / "data")
    # No access token needs a refresh during the run: a refresh whose answer is lost in a SIGKILL
    # ends that tablet's session by design (docs/client.md), which is not what is measured here.
    env["SURVEYKIT_ACCESS_TOKEN_SECONDS"] = "7200"
    # Short, so the slow-body probe meets it within the hostile phase.
    env["SURVEYKIT_REQUEST_READ_SECONDS"] = str(READ_SECONDS)
    # Every simulated tablet activates from 127.0.0.1 within seconds: no per-address limit here.
    env["SURVEYKIT_ACTIVATION_RATE_LIMIT"] = env["SURVEYKIT_LOGIN_RATE_LIMIT"] = "1000000"
    return env


class AppServer:
    """One ``surveykit serve`` process; it can be killed with SIGKILL and started again on its port."""

    def __init__(self, name: str, database_url: str, workdir: Path, threads: int) -> None:
        self.name = name
        self.database_url = database_url
        self.workdir = workdir
        self.threads = threads
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.url = ""
        self.starts = 0
        self.peak_rss_kib: list[int] = []  # VmHWM of each process, read before it ends

    def log_paths(self) -> list[Path]:
        return sorted(self.workdir.glob(f"{self.name}-*.log"))

    def start(self, port: int = 0) -> None:
        self.starts += 1
        log_path = self.workdir / f"{self.name}-{self.starts}.log"
        argv = [str(Path(sys.executable).parent / "surveykit"), "--database-url", self.database_url, "serve"]
        argv += ["--port", str(port), "--threads", str(self.threads)]
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(self.workdir),
                cwd=self.workdir,
                text=True,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            match = SERVING.search(text)
            if match:
                self.url, self.port = match.group(1), int(match.group(2))
                return
            if self.process.poll() is not None:
                self.process = None
                raise Fatal(f"{self.name} exited while starting:\n{text[-2000:]}")
            time.sleep(0.05)
        self.stop()
        raise Fatal(f"{self.name}: no 'serving on' line within {START_TIMEOUT:.0f} s")

    def restart_on_same_port(self) -> float:
        """Start again on the port the tablets know; returns the seconds it took."""
        started = time.monotonic()
        while True:
            try:
                self.start(self.port)
                return time.monotonic() - started
            except Fatal as exc:
                if "address already in use" not in str(exc).lower() or time.monotonic() - started > 60:
                    raise
                time.sleep(0.3)

    def _remember_peak(self) -> None:
        if self.process is None:
            return
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                self.peak_rss_kib.append(int(match.group(1)))
        except OSError:
            pass

    def rss_kib(self) -> int | None:
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) if match else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to this process only: no cleanup, no rollback by the process itself."""
        if self.process is None:
            return
        self._remember_peak()
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)
        self.process = None

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        self._remember_peak()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        self.process = None

    def log_findings(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for path in self.log_paths():
            text = path.read_text(errors="replace")
            found["tracebacks"] += text.count("Traceback (most recent call last)")
            found["ERROR lines"] += len(re.findall(r"^.*\bERROR\b.*$", text, re.MULTILINE))
        return found


# ------------------------------------------------------------------------------------------- set-up


@dataclass
class TabletPlan:
    index: int
    username: str
    country: str
    code: str = ""
    server: int = 0
    flaky: bool = False
    group: int | None = None  # sharing group, or None
    member: int = 0  # position in the group


def prepare_database(url: str, tablets: int, countries: tuple[str, ...]) -> tuple[list[TabletPlan], str]:
    """The study, its countries, fieldworkers and enrolled devices, with surveykit's CLI commands
    (run in this process with click's runner: the same commands, without an import per command)."""
    from click.testing import CliRunner

    from surveykit.cli import cli

    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> str:
        result = runner.invoke(cli, ["--database-url", url, *args], input=stdin, catch_exceptions=True)
        if result.exit_code != 0:
            detail = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
            raise Fatal(f"surveykit {' '.join(args)} failed: {result.output}{detail[-2000:]}")
        return result.output

    def enrol(username: str, label: str) -> str:
        output = run("devices", "enrol", username, "--label", label)
        match = re.search(r"enrolment code: (\S+)", output)
        if not match:
            raise Fatal(f"no enrolment code in: {output}")
        return match.group(1)

    run("db", "upgrade")
    run("instruments", "publish", str(RA1_FILE))
    run("studies", "add", STUDY, "--name", "Load and fault audit")
    run("studies", "add-activity", STUDY, ACTIVITY, "--name", "Interviews with duty bearers")
    for code in countries:
        run("studies", "add-country", STUDY, code, "--name", f"Country {code}", "--language", "en")
    plans: list[TabletPlan] = []
    users: dict[int, tuple[str, str]] = {}
    for index in range(tablets):
        owner = index // 2  # one fieldworker per two tablets
        if owner not in users:
            username = f"fieldworker{owner + 1:03d}"
            country = countries[owner % len(countries)]
            run("users", "add", username, "--password-stdin", stdin=PASSWORD + "\n")
            run("users", "grant", username, "fieldworker", "--study", STUDY, "--country", country)
            users[owner] = (username, country)
        username, country = users[owner]
        plan = TabletPlan(index, username, country, server=index % 2)
        plan.code = enrol(username, f"tablet {index + 1}")
        plans.append(plan)
    probe_code = enrol(users[0][0], "hostile probe")
    return plans, probe_code


def assign_roles(plans: list[TabletPlan], flaky_share: float, shared_share: float, seed: int) -> None:
    """Pick the flaky tablets and form sharing groups (2-4 tablets of one country)."""
    rng = random.Random(seed)
    flaky = round(len(plans) * flaky_share)
    for plan in rng.sample(plans, flaky):
        plan.flaky = True
    sharing = rng.sample(plans, round(len(plans) * shared_share))
    by_country: dict[str, list[TabletPlan]] = defaultdict(list)
    for plan in sorted(sharing, key=lambda p: p.index):
        by_country[plan.country].append(plan)
    group = 0
    for members in by_country.values():
        chunks = [members[i : i + 4] for i in range(0, len(members), 4)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            chunks[-2].append(chunks.pop()[0])
        for chunk in chunks:
            if len(chunk) < 2:
                continue
            for member, plan in enumerate(chunk):
                plan.group, plan.member = group, member
            group += 1


# -------------------------------------------------------------------------------------- transports


def request_kind(method: str, path: str) -> str:
    if path == "/api/v1/sync":
        return "push"
    if path == "/api/v1/sync/changes":
        return "pull"
    if path.startswith("/api/v1/blocks"):
        return "blocks"
    return "other"


@dataclass
class Sample:
    start: float  # seconds since the load began
    duration: float
    kind: str
    server: str
    outcome: str


class Recorder:
    """Every HTTP exchange of every tablet (timing, outcome) and every push() call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.origin = time.monotonic()
        self.samples: list[Sample] = []
        self.pushes: list[tuple[float, float, str, dict[str, int]]] = []
        self.injected: Counter[str] = Counter()
        self.client_errors: Counter[str] = Counter()
        self.inflight: Counter[tuple[str, str]] = Counter()
        self.examples: dict[str, str] = {}

    def now(self) -> float:
        return time.monotonic() - self.origin

    def note_error(self, kind: str, example: str) -> None:
        with self.lock:
            self.client_errors[kind] += 1
            self.examples.setdefault(kind, example[:300])


def outcome_of(response: Response) -> str:
    if response.status < 400:
        return str(response.status)
    code = response.error_code()
    return f"{response.status} {code}" if code else f"{response.status} (not a JSON envelope)"


class TimedTransport:
    """The real transport, measuring each exchange (innermost: a duplicate is two exchanges)."""

    def __init__(self, recorder: Recorder) -> None:
        self.inner = HttpTransport(read_timeout=120)
        self.recorder = recorder

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        parts = urlsplit(url)
        kind, server = request_kind(method, parts.path), parts.netloc
        recorder = self.recorder
        with recorder.lock:
            recorder.inflight[(server, kind)] += 1
        start = recorder.now()
        try:
            response = self.inner.request(method, url, headers, body)
            outcome = outcome_of(response)
            return response
        except NetworkError as exc:
            outcome = "network: connection broken after sending" if exc.sent else "network: not sent"
            raise
        finally:
            duration = recorder.now() - start
            with recorder.lock:
                recorder.inflight[(server, kind)] -= 1
                recorder.samples.append(Sample(start, duration, kind, server, outcome))


class FlakyTransport:
    """A bad mobile connection on the sync and block endpoints:

    - lose: the request reaches the server, which commits and answers; the answer is thrown away
      (the client sees a broken connection and must resend the same change);
    - duplicate: the request is sent twice (the first answer thrown away);
    - replay: an earlier, already processed sync request is sent again first, out of order;
    - refuse: the connection fails before anything is sent.
    """

    PATHS = ("/api/v1/sync", "/api/v1/blocks")

    def __init__(self, inner: TimedTransport, recorder: Recorder, seed: int, rates: dict[str, float]) -> None:
        self.inner = inner
        self.recorder = recorder
        self.rng = random.Random(seed)
        self.rates = rates
        self.history: list[tuple[str, str, dict[str, str], bytes | None]] = []

    def _count(self, what: str) -> None:
        with self.recorder.lock:
            self.recorder.injected[what] += 1

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        path = urlsplit(url).path
        if path not in self.PATHS:
            return self.inner.request(method, url, headers, body)
        roll = self.rng.random()
        if roll < self.rates["refuse"]:
            self._count("refused before sending")
            raise NetworkError("simulated: connection refused", sent=False)
        roll -= self.rates["refuse"]
        if roll < self.rates["replay"] and self.history:
            self._count("old request replayed out of order")
            try:
                self.inner.request(*self.rng.choice(self.history))
            except NetworkError:
                pass
        elif roll < self.rates["replay"] + self.rates["duplicate"]:
            self._count("request duplicated")
            try:
                self.inner.request(method, url, headers, body)
            except NetworkError:
                pass
        response = self.inner.request(method, url, headers, body)
        if method == "POST" and path == "/api/v1/sync" and response.status == 200:
            self.history = [*self.history[-19:], (method, url, headers, body)]
        if response.status < 500 and self.rng.random() < self.rates["lose"]:
            self._count(f"answer lost after the server answered ({request_kind(method, path)})")
            raise NetworkError(f"simulated: the answer ({response.status}) was lost", sent=True)
        return response


# ------------------------------------------------------------------------------------------ tablets


def long_answers(rng: random.Random) -> dict[str, Any]:
    chosen: dict[str, Any] = {
        # The bound metadata (agency, date, mode, consent) is left out: it is taken from the
        # participants and the record's own fields, which are its home.
        "interview_language": "en",
        "gov_focal_point_exists": rng.random() < 0.5,
        "le_cooperation_partners": ["ngos", "hotlines"],
    }
    for question in LONG_TEXT_QUESTIONS:
        text = ""
        while len(text) < 300:
            text += rng.choice(PHRASES)
        chosen[question] = text
    return chosen


AGENCIES = (
    ("Ministry of ICT", "Director of Cyber Security"),
    ("Ministry of Justice", None),
    ("National Police, Child Protection Unit", "Inspector"),
)


def participants(count: int) -> list[dict[str, Any]]:
    """A group interview's officials: the first with a position, the others often without."""
    group = []
    for index in range(count):
        agency, position = AGENCIES[index % len(AGENCIES)]
        group.append(
            {
                "agency": agency,
                "position": position,
                "consent_given": True,
                "consent_date": "2026-05-04",
                "consent_recorded_how": "written_form" if index else "verbal_notes",
            }
        )
    return group


class Control:
    """What the tablets should do now: run, or park (finish the current cycle, then wait)."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.stopping = threading.Event()


class Tablet(threading.Thread):
    def __init__(self, plan: TabletPlan, client: Client, recorder: Recorder, control: Control, args: Any):
        super().__init__(name=f"tablet-{plan.index}", daemon=True)
        self.plan = plan
        self.client = client
        self.recorder = recorder
        self.control = control
        self.args = args
        self.rng = random.Random(args.seed * 1000 + plan.index)
        self.owned: list[str] = []
        self.shared: list[str] = []  # the group's shared records (set by the group leader)
        self.group_members: list[Tablet] = []
        self.parked = threading.Event()
        self.cycles = 0
        self.key = LONG_TEXT_QUESTIONS[plan.member % len(LONG_TEXT_QUESTIONS)]

    # ---- the work of one cycle

    def new_interview(self) -> None:
        client = self.client
        if client.numbers_left(STUDY, self.plan.country, ACTIVITY) == 0:
            client.reserve_block(STUDY, self.plan.country, ACTIVITY, size=100)
        interview = client.new_interview(
            study=STUDY,
            country=self.plan.country,
            activity=ACTIVITY,
            instrument=RA1,
            participants=participants(self.rng.choice((1, 1, 2))),
            language="en",
            mode="in_person",
            answers=long_answers(self.rng),
            started_at="2026-05-04T09:30:00+03:00",
            notes=f"tablet {self.plan.index}: created",
        )
        self.owned.append(interview.uuid)

    def has(self, uuid: str) -> bool:
        return self.client.store.one("SELECT 1 FROM interviews WHERE uuid = ?", (uuid,)) is not None

    def edit_shared(self) -> None:
        """Everyone in the group edits the same records at about the same time, each its own answer."""
        self.client.pull(STUDY)
        for uuid in self.shared:
            if self.has(uuid):
                record = self.client.record(uuid)
                value = f"tablet {self.plan.index} cycle {self.cycles}: " + self.rng.choice(PHRASES)
                self.client.edit(uuid, answers={**record["answers"], self.key: value})

    def merge_conflicts(self) -> int:
        merged = 0
        for uuid in self.client.in_conflict():
            state = self.client.state(uuid)
            if state.server_record is None:
                continue
            record = copy.deepcopy(state.server_record)
            record["answers"][self.key] = state.record["answers"].get(self.key)
            self.client.resolve(uuid, record)
            merged += 1
        return merged

    def push(self) -> None:
        start = self.recorder.now()
        outcome, counts = "ok", {}
        try:
            report = self.client.push()
            counts = {
                name: getattr(report, name)
                for name in ("created", "updated", "unchanged", "conflict", "rejected", "unmatched")
            }
        except ServerUnavailable as exc:
            outcome = "push: server unavailable after every retry"
            self.recorder.note_error(outcome, str(exc))
        finally:
            with self.recorder.lock:
                self.recorder.pushes.append((start, self.recorder.now() - start, outcome, counts))

    def cycle(self) -> None:
        self.cycles += 1
        for _ in range(self.rng.choice((0, 1, 1, 2))):
            self.new_interview()
        synced = [uuid for uuid in self.owned[-30:] if uuid not in self.shared]
        if synced and self.rng.random() < self.args.edit_share:
            for uuid in self.rng.sample(synced, min(len(synced), self.rng.choice((1, 2)))):
                self.client.edit(uuid, notes=f"tablet {self.plan.index}: edit in cycle {self.cycles}")
        if self.plan.group is not None and self.shared:
            self.edit_shared()
        self.push()
        if self.plan.group is not None:
            self.merge_conflicts()
            if self.plan.member == 0 and not self.shared and len(self.owned) >= 2:
                acknowledged = [u for u in self.owned[:2] if self.client.receipts(u)]
                if len(acknowledged) == 2:
                    for member in self.group_members:
                        member.shared = list(acknowledged)

    def run(self) -> None:
        while not self.control.stopping.is_set():
            if not self.control.running.is_set():
                self.parked.set()
                self.control.running.wait(0.2)
                continue
            self.parked.clear()
            try:
                self.cycle()
            except (ServerUnavailable, ApiError, NoNumbersLeft, SessionEnded, ClientError) as exc:
                kind = f"{type(exc).__name__}" + (
                    f" {exc.status} {exc.code}" if isinstance(exc, ApiError) else ""
                )
                self.recorder.note_error(f"cycle: {kind}", str(exc))
            except Exception as exc:  # a bug in this script or the client: shown at the end
                self.recorder.note_error(f"cycle: unexpected {type(exc).__name__}", traceback.format_exc())
            # Think time, cut short when the tablets are told to park.
            self.control.stopping.wait(self.rng.uniform(*self.args.think))
        self.parked.set()

    # ---- convergence (the tablets are parked; called from a pool)

    def converge_push(self, deadline: float) -> str | None:
        for _ in range(40):
            try:
                self.client.push()
            except ServerUnavailable:
                if time.monotonic() > deadline:
                    return "server unavailable"
                time.sleep(0.2)
                continue
            merged = self.merge_conflicts()
            pending = [e for e in self.client.outbox() if e.status == "pending"]
            if not merged and not pending:
                return None
            if time.monotonic() > deadline:
                return "deadline"
        return "no convergence after 40 rounds"

    def converge_pull(self) -> None:
        if self.plan.group is not None:
            self.client.pull(STUDY)


# -------------------------------------------------------------------------------------------- audit


@dataclass
class AuditResult:
    label: str
    checks: list[tuple[str, int, int]] = field(default_factory=list)  # what, checked, failed
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def check(self, what: str, checked: int, failures: list[str]) -> None:
        self.checks.append((what, checked, len(failures)))
        self.problems += [f"{what}: {failure}" for failure in failures[:5]]

    @property
    def passed(self) -> bool:
        return all(failed == 0 for _, _, failed in self.checks)


def audit(engine: Any, tablets: list[Tablet], label: str) -> AuditResult:
    """The server's database against every tablet (parked and converged):

    - every receipt a tablet holds names an accepted revision of that record with exactly that
      content; every conflict it was told of is a stored conflict revision with that content;
    - each record exists once: no interview number used twice, no record no tablet made;
    - no change stored twice (same record, base revision and content), revisions 1..n without gaps,
      the current row is the newest accepted revision and its content matches its hash;
    - converged: every tablet's outbox is empty (nothing rejected), and its copy of every record it
      holds is the server's current content (so the last content it sent is either current or was
      superseded by a later accepted edit, and its conflicting edits are kept as conflict revisions).
    """
    from sqlalchemy import func, select

    from surveykit.sync import validation
    from surveykit.sync.models import Interview, InterviewRevision

    result = AuditResult(label)
    with engine.connect() as connection:
        interviews = {
            row.uuid: row
            for row in connection.execute(
                select(Interview.uuid, Interview.revision, Interview.content_hash, Interview.record)
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
            )
        ).all()
        numbers = connection.execute(
            select(Interview.country_code, Interview.interview_number, func.count())
            .group_by(
                Interview.study_id, Interview.activity, Interview.country_code, Interview.interview_number
            )
            .having(func.count() > 1)
        ).all()
    result.check("interview number used by two records", len(interviews), [str(tuple(n)) for n in numbers])

    accepted: dict[tuple[str, int], Any] = {}
    conflicts: dict[int, Any] = {}
    per_record: dict[str, list[int]] = defaultdict(list)
    changes: Counter[tuple[str, int, str]] = Counter()
    bad_hash: list[str] = []
    twice: list[str] = []
    for row in revisions:
        if validation.content_hash(row.record) != row.content_hash:
            bad_hash.append(f"revision row {row.id}")
        changes[(row.interview_uuid, row.base_revision, row.content_hash)] += 1
        if row.kind == "accepted":
            key = (row.interview_uuid, row.revision)
            if key in accepted:
                twice.append(str(key))
            accepted[key] = row
            per_record[row.interview_uuid].append(row.revision)
        else:
            conflicts[row.id] = row
    duplicates = [str(key) for key, count in changes.items() if count > 1]
    result.check("stored content matches its hash", len(revisions), bad_hash)
    result.check("change stored twice (record, base, content)", len(changes), duplicates + twice)
    gaps = []
    for uuid, row in interviews.items():
        if sorted(per_record.get(uuid, [])) != list(range(1, row.revision + 1)):
            gaps.append(f"{uuid}: revisions {sorted(per_record.get(uuid, []))}, current {row.revision}")
        elif accepted[(uuid, row.revision)].content_hash != row.content_hash:
            gaps.append(f"{uuid}: current row differs from revision {row.revision}")
    result.check("revisions 1..n, current = newest", len(interviews), gaps)

    receipts_checked, missing, conflicts_checked, lost_conflicts = 0, [], 0, []
    outbox_left, diverged, known = [], [], set()
    records_held = 0
    for tablet in tablets:
        client = tablet.client
        known.update(client.uuids())
        for uuid, revision, digest in client.receipts():
            receipts_checked += 1
            stored = accepted.get((uuid, revision))
            if uuid not in interviews:
                missing.append(f"tablet {tablet.plan.index}: {uuid} is not on the server")
            elif stored is None or stored.content_hash != digest:
                missing.append(
                    f"tablet {tablet.plan.index}: receipt ({uuid}, {revision}) names other content"
                )
        for conflict in client.conflicts():
            conflicts_checked += 1
            stored = conflicts.get(conflict["id"])
            if stored is None or (stored.interview_uuid, stored.content_hash) != (
                conflict["uuid"],
                conflict["content_hash"],
            ):
                lost_conflicts.append(f"tablet {tablet.plan.index}: conflict {conflict['id']}")
        for entry in client.outbox():
            outbox_left.append(f"tablet {tablet.plan.index}: {entry.uuid} {entry.status} {entry.error}")
        for uuid in client.uuids():
            records_held += 1
            state = client.state(uuid)
            server = interviews.get(uuid)
            if server is None or state.content_hash != server.content_hash or state.record != server.record:
                diverged.append(f"tablet {tablet.plan.index}: {uuid}")
    result.check("receipt names stored content (nothing lost)", receipts_checked, missing)
    result.check("reported conflict kept as a conflict revision", conflicts_checked, lost_conflicts)
    result.check("outbox empty after convergence", len(tablets), outbox_left)
    result.check("tablet copy = server's current record", records_held, diverged)
    phantoms = sorted(set(interviews) - known)
    result.check("server record no tablet made (stored twice?)", len(interviews), phantoms)
    result.counts = {
        "interviews": len(interviews),
        "accepted revisions": len(accepted),
        "conflict revisions": len(conflicts),
        "receipts": receipts_checked,
    }
    return result


# ------------------------------------------------------------------------------------------ figures


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ms(value: float) -> str:
    return "-" if value != value else f"{value * 1000:.0f}"


@dataclass
class Phase:
    name: str
    start: float = 0.0
    end: float = 0.0


def phase_rows(
    recorder: Recorder, phases: list[Phase]
) -> tuple[list[list[str]], dict[str, dict[str, float]]]:
    header = [
        "phase",
        "seconds",
        "changes acked",
        "acked/s",
        "push req",
        "push req/s",
        "push p50 ms",
        "p95 ms",
        "p99 ms",
        "pull p95 ms",
        "push() p95 ms",
        "failed req",
    ]
    rows = [header]
    figures: dict[str, dict[str, float]] = {}
    for phase in [*phases, Phase("whole run", phases[0].start, phases[-1].end)]:
        seconds = max(phase.end - phase.start, 1e-9)
        inside = [s for s in recorder.samples if phase.start <= s.start < phase.end]
        pushes = [s.duration for s in inside if s.kind == "push" and s.outcome == "200"]
        pulls = [s.duration for s in inside if s.kind == "pull" and s.outcome == "200"]
        calls = [p for p in recorder.pushes if phase.start <= p[0] < phase.end]
        acked = sum(
            c.get("created", 0) + c.get("updated", 0) + c.get("unchanged", 0) + c.get("conflict", 0)
            for _, _, _, c in calls
        )
        failed = sum(1 for s in inside if not s.outcome.startswith(("2", "3")))
        call_p95 = percentile([d for _, d, o, _ in calls if o == "ok"], 0.95)
        figures[phase.name] = {
            "p95": percentile(pushes, 0.95),
            "acked_per_s": acked / seconds,
            "requests": len(pushes),
        }
        rows.append(
            [
                phase.name,
                f"{seconds:.0f}",
                str(acked),
                f"{acked / seconds:.1f}",
                str(len(pushes)),
                f"{len(pushes) / seconds:.1f}",
                ms(percentile(pushes, 0.5)),
                ms(percentile(pushes, 0.95)),
                ms(percentile(pushes, 0.99)),
                ms(percentile(pulls, 0.95)),
                ms(call_p95),
                str(failed),
            ]
        )
    return rows, figures


def error_rows(recorder: Recorder) -> list[list[str]]:
    rows = [["source", "kind", "count"]]
    outcomes: Counter[tuple[str, str]] = Counter()
    for sample in recorder.samples:
        if not sample.outcome.startswith(("2", "3")):
            outcomes[(sample.kind, sample.outcome)] += 1
    for (kind, outcome), count in sorted(outcomes.items()):
        rows.append([f"HTTP ({kind})", outcome, str(count)])
    for what, count in sorted(recorder.injected.items()):
        rows.append(["injected (flaky tablets)", what, str(count)])
    for what, count in sorted(recorder.client_errors.items()):
        rows.append(["tablet", what, str(count)])
    totals: Counter[str] = Counter()
    for _, _, _, counts in recorder.pushes:
        totals.update(counts)
    for name in ("rejected", "unmatched"):
        rows.append(["push results", name, str(totals.get(name, 0))])
    return rows


# --------------------------------------------------------------------------------------- the run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tablets", type=int, default=50, help="simulated tablets (50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of load in all phases (60)")
    parser.add_argument(
        "--flaky-share", type=float, default=0.2, help="share of tablets on a flaky link (0.2)"
    )
    parser.add_argument(
        "--shared-share", type=float, default=0.3, help="share of tablets editing shared records (0.3)"
    )
    parser.add_argument(
        "--edit-share", type=float, default=0.5, help="chance a cycle edits own records (0.5)"
    )
    parser.add_argument(
        "--think",
        type=float,
        nargs=2,
        default=(1.0, 3.0),
        metavar=("MIN", "MAX"),
        help="seconds between cycles",
    )
    parser.add_argument("--threads", type=int, default=8, help="waitress threads per app process (8)")
    parser.add_argument("--no-kill", action="store_true", help="do not SIGKILL an app process")
    parser.add_argument("--no-hostile", action="store_true", help="no hostile clients")
    parser.add_argument(
        "--admin-url", default=DEFAULT_ADMIN_URL, help="PostgreSQL URL that may CREATE/DROP DATABASE"
    )
    parser.add_argument("--database-url", help="use this (empty) database instead of a throwaway one")
    parser.add_argument(
        "--max-slowdown",
        type=float,
        default=3.0,
        help="allowed hostile/steady p95 ratio of tablet pushes (3)",
    )
    parser.add_argument("--big-body-mib", type=int, default=100, help="size of the huge body probe (100)")
    parser.add_argument("--nesting", type=int, default=100_000, help="nesting of the deep JSON probe")
    parser.add_argument("--batch-records", type=int, default=10_000, help="records in the huge batch probe")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (server logs, tablet files)"
    )
    args = parser.parse_args(argv)
    # The SIGKILL comes about 3 s into its phase and the restart takes a few more.
    minimum_seconds = 2 if args.no_kill else 10
    if args.tablets < 2 or args.seconds < minimum_seconds:
        parser.error(f"at least 2 tablets and {minimum_seconds} seconds")
    return args


@contextmanager
def database(args: argparse.Namespace) -> Iterator[str]:
    if args.database_url:
        yield args.database_url
        return
    try:
        with ThrowawayDatabase(args.admin_url, "loadfault") as throwaway:
            print(f"database: {throwaway.name} (throwaway, dropped at the end)")
            yield throwaway.url
    except DatabaseUnavailable as exc:  # raised only when the database cannot be created
        raise Fatal(str(exc)) from exc


def workdir_root() -> str | None:
    # The tablets' SQLite files are fsynced on every change (synchronous=FULL): on tmpfs that costs
    # the simulated tablets nothing, so what is measured is the server.
    return "/dev/shm" if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="surveykit-loadfault-", dir=workdir_root()))
    servers: list[AppServer] = []
    try:
        with database(args) as url:
            return run_on(args, url, workdir, servers)
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_on(args: argparse.Namespace, url: str, workdir: Path, servers: list[AppServer]) -> int:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    wall = time.monotonic()
    print(f"set-up: {args.tablets} tablets, {len(COUNTRIES)} countries, CLI commands ...", flush=True)
    plans, probe_code = prepare_database(url, args.tablets, COUNTRIES)
    assign_roles(plans, args.flaky_share, args.shared_share, args.seed)
    for name in ("app-1", "app-2"):
        server = AppServer(name, url, workdir, args.threads)
        server.start()
        servers.append(server)
    print(f"app processes: {servers[0].url} and {servers[1].url} (waitress, {args.threads} threads each)")

    recorder = Recorder()
    control = Control()
    rates = {"lose": 0.3, "duplicate": 0.15, "replay": 0.1, "refuse": 0.05}

    def make_tablet(plan: TabletPlan) -> Tablet:
        timed = TimedTransport(recorder)
        transport = FlakyTransport(timed, recorder, args.seed + plan.index, rates) if plan.flaky else timed
        client = Client(
            workdir / f"tablet-{plan.index:03d}.sqlite3",
            servers[plan.server].url,
            transport=transport,
            retry=TABLET_RETRY,
            batch_size=25,
        )
        client.activate(plan.code)
        client.fetch_instruments()
        client.reserve_block(STUDY, plan.country, ACTIVITY, size=100)
        return Tablet(plan, client, recorder, control, args)

    with ThreadPoolExecutor(8) as pool:
        tablets = list(pool.map(make_tablet, plans))
    groups: dict[int, list[Tablet]] = defaultdict(list)
    for tablet in tablets:
        if tablet.plan.group is not None:
            groups[tablet.plan.group].append(tablet)
    for members in groups.values():
        for tablet in members:
            tablet.group_members = members
    probe_client = Client(workdir / "probe.sqlite3", servers[0].url, retry=TABLET_RETRY)
    probe_client.activate(probe_code)
    flaky_count = sum(1 for p in plans if p.flaky)
    print(
        f"tablets: {len(tablets)} activated ({flaky_count} on flaky links, {len(groups)} sharing groups "
        f"of {sum(len(g) for g in groups.values())} tablets), set-up took {time.monotonic() - wall:.0f} s"
    )
    engine = create_engine(url, poolclass=NullPool)

    steady = Phase("steady")
    kill_phase = Phase("kill + restart" if not args.no_kill else "steady (no kill)")
    hostile = Phase("hostile clients" if not args.no_hostile else "steady (no hostile)")
    audits: list[AuditResult] = []
    probes_done: list[probes.Probe] = []
    kill_info: dict[str, Any] = {}
    rss_during: dict[str, int] = {}

    for tablet in tablets:
        tablet.start()

    bar = tqdm(total=round(args.seconds), unit="s", desc="load", dynamic_ncols=True, leave=True)
    load_clock = [0.0]  # seconds of load so far (phases only, not the pauses between them)

    def run_phase(phase: Phase, seconds: float, during: Any = None) -> None:
        recorder_now = recorder.now()
        phase.start = recorder_now
        control.running.set()
        background = None
        if during is not None:
            background = threading.Thread(target=during, daemon=True)
            background.start()
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(0.5, left))
            done = load_clock[0] + (recorder.now() - phase.start)
            bar.n = min(round(done), bar.total)
            with recorder.lock:
                acked = sum(
                    c.get("created", 0) + c.get("updated", 0) + c.get("unchanged", 0) + c.get("conflict", 0)
                    for _, _, _, c in recorder.pushes
                )
                failed = sum(1 for s in recorder.samples if not s.outcome.startswith(("2", "3")))
            bar.set_postfix_str(f"{phase.name}: {acked} changes acked, {failed} failed requests")
            bar.refresh()
        if background is not None:
            background.join(timeout=180)
            if background.is_alive():
                raise Fatal(f"{phase.name}: the background task did not finish in 180 s")
        phase.end = recorder.now()
        load_clock[0] += phase.end - phase.start

    def park_converge_audit(label: str) -> AuditResult:
        control.running.clear()
        deadline = time.monotonic() + 120
        for tablet in tablets:
            if not tablet.parked.wait(max(0.1, deadline - time.monotonic())):
                raise Fatal(f"tablet {tablet.plan.index} did not park within 120 s")
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            failures = [
                f
                for f in pool.map(lambda t: t.converge_push(time.monotonic() + 90), tablets)
                if f is not None
            ]
            list(pool.map(lambda t: t.converge_pull(), tablets))
        result = audit(engine, tablets, label)
        if failures:
            result.check("tablets converged", len(tablets), failures)
        result.counts["converge+audit s"] = round(time.monotonic() - started)
        return result

    try:
        # --- phase 1: steady load on both processes, then the first audit
        run_phase(steady, args.seconds * 0.35)
        bar.clear()
        audits.append(park_converge_audit(f"1: after {steady.end - steady.start:.0f} s steady load"))
        bar.refresh()

        # --- phase 2: SIGKILL one process while a push is in flight on it, restart it on its port
        victim = servers[1]

        def kill_and_restart() -> None:
            time.sleep(min(3.0, args.seconds * 0.05))
            netloc = urlsplit(victim.url).netloc
            waited = time.monotonic()
            while time.monotonic() - waited < 5:
                with recorder.lock:
                    in_flight = recorder.inflight[(netloc, "push")]
                if in_flight:
                    break
                time.sleep(0.002)
            kill_info["pushes in flight on it"] = in_flight
            kill_info["at (s into the load)"] = round(load_clock[0] + recorder.now() - kill_phase.start, 1)
            victim.kill()
            kill_info["restart took (s)"] = round(victim.restart_on_same_port(), 1)

        run_phase(kill_phase, args.seconds * 0.25, None if args.no_kill else kill_and_restart)

        # --- phase 3: hostile clients against the first process while the tablets keep working
        target = servers[0]

        def hostile_clients() -> None:
            rss_during["before"] = target.rss_kib() or 0
            peak = [0]
            stop_sampling = threading.Event()

            def sample_rss() -> None:
                while not stop_sampling.wait(0.2):
                    peak[0] = max(peak[0], target.rss_kib() or 0)

            sampler = threading.Thread(target=sample_rss, daemon=True)
            sampler.start()

            def token() -> str:
                probe_client.me()  # refreshes the token when it is due
                return probe_client.store.get("access_token") or ""

            slow_seconds = int(max(8, min(20, args.seconds * 0.4 - 6)))
            slow: list[probes.Probe] = []
            slow_thread = threading.Thread(
                target=lambda: slow.append(
                    probes.slow_body(target.port, token(), slow_seconds, READ_SECONDS)
                ),
                daemon=True,
            )
            slow_thread.start()
            port, tok = target.port, token()
            limit = 100
            probes_done.append(probes.huge_body(port, tok, args.big_body_mib * probes.MIB))
            probes_done.append(probes.huge_body(port, tok, args.big_body_mib * probes.MIB, chunked=True))
            probes_done.append(probes.deep_json(port, tok, args.nesting))
            probes_done.append(probes.bad_utf8_body(port, tok))
            probes_done.append(
                probes.bad_utf8_url(port, tok, b"/api/v1/sync/changes?study=%ff%fe", "%ff in query")
            )
            probes_done.append(
                probes.bad_utf8_url(port, tok, b"/api/v1/instruments/%c3%28", "%c3%28 in path")
            )
            probes_done.append(
                probes.bad_utf8_url(port, tok, b"/api/v1/instruments/\xff\xfe", "raw 0xff in path")
            )
            probes_done.append(
                probes.huge_batch(port, tok, STUDY, plans[0].country, args.batch_records, limit)
            )
            probes_done.append(probes.stalled_body(port, tok, 1000, min(READ_SECONDS - 1, slow_seconds)))
            slow_thread.join(timeout=slow_seconds + 60)
            probes_done.extend(slow)
            stop_sampling.set()
            sampler.join()
            rss_during["peak"] = peak[0]
            rss_during["after"] = target.rss_kib() or 0

        run_phase(hostile, args.seconds * 0.4, None if args.no_hostile else hostile_clients)
        bar.n = bar.total
        bar.refresh()
        bar.close()
        control.running.clear()
        audits.append(
            park_converge_audit(
                "2: end of run" + ("" if args.no_kill else ", after SIGKILL + restart") + ", whole run"
            )
        )
    finally:
        control.stopping.set()
        control.running.set()
        for tablet in tablets:
            tablet.join(timeout=30)
        for tablet in tablets:
            tablet.client.close()
        probe_client.close()

    # Records the huge-batch probe would have created must not exist (the batch was refused).
    batch_probe = [p for p in probes_done if "records in one batch" in p.name]
    if batch_probe:
        from sqlalchemy import func, select

        from surveykit.sync.models import Interview

        with engine.connect() as connection:
            stored = connection.scalar(
                select(func.count())
                .select_from(Interview)
                .where(Interview.uuid.in_(batch_probe[0].extra["uuids"]))
            )
        batch_probe[0].note = f"{stored} of its records stored"
        batch_probe[0].passed = batch_probe[0].passed and stored == 0
    engine.dispose()
    for server in servers:
        server._remember_peak()

    return report(
        args,
        recorder,
        [steady, kill_phase, hostile],
        audits,
        probes_done,
        kill_info,
        rss_during,
        servers,
        wall,
    )


def report(
    args: argparse.Namespace,
    recorder: Recorder,
    phases: list[Phase],
    audits: list[AuditResult],
    probes_done: list[probes.Probe],
    kill_info: dict[str, Any],
    rss_during: dict[str, int],
    servers: list[AppServer],
    wall: float,
) -> int:
    print()
    print(f"== Load: {args.tablets} tablets (reference client), 2 app processes, PostgreSQL ==")
    rows, figures = phase_rows(recorder, phases)
    print(format_table(rows))
    print("(changes acked: created + updated + unchanged + conflict results; push req: POST /api/v1/sync")
    print(" answered 200, latency per HTTP exchange; push(): one client push() call with its retries)")

    print("\n== Errors by kind (expected: network errors around the kill, injected faults, 409 races) ==")
    print(format_table(error_rows(recorder)))
    for kind, example in sorted(recorder.examples.items()):
        if "unexpected" in kind:
            print(f"  {kind}: {example}")

    if kill_info:
        print("\n== SIGKILL ==")
        print(format_table([["what", "value"], *[[k, str(v)] for k, v in kill_info.items()]]))

    print("\n== Audits (database against every tablet, after convergence) ==")
    rows = [["audit", "check", "checked", "failed"]]
    for result in audits:
        for what, checked, failed in result.checks:
            rows.append([result.label, what, str(checked), str(failed)])
        rows.append([result.label, ", ".join(f"{k}: {v}" for k, v in result.counts.items()), "", ""])
    print(format_table(rows))
    for result in audits:
        for problem in result.problems[:20]:
            print(f"  PROBLEM ({result.label}): {problem}")

    verdicts: list[tuple[str, bool, str]] = []
    for result in audits:
        verdicts.append((f"audit {result.label}", result.passed, "pass" if result.passed else "FAILED"))

    if probes_done:
        print("\n== Hostile clients (against app-1 while the tablets work) ==")
        rows = [["probe", "expected", "got", "seconds", "note", "ok"]]
        for probe in probes_done:
            rows.append(
                [
                    probe.name,
                    probe.expected,
                    probe.answer.shown(),
                    f"{probe.answer.elapsed:.1f}",
                    probe.note,
                    "yes" if probe.passed else "NO",
                ]
            )
            verdicts.append((f"probe: {probe.name}", probe.passed, probe.answer.shown()))
        print(format_table(rows))
        before, during = figures[phases[0].name], figures[phases[2].name]
        ratio = during["p95"] / before["p95"] if before["p95"] else float("inf")
        throughput = during["acked_per_s"] / before["acked_per_s"] if before["acked_per_s"] else 0.0
        allowed = max(args.max_slowdown * before["p95"], before["p95"] + 0.25)
        print(
            f"\ntablet push p95: {ms(before['p95'])} ms steady, "
            f"{ms(during['p95'])} ms during the hostile clients "
            f"({ratio:.2f}x; allowed {ms(allowed)} ms); changes acked/s: {before['acked_per_s']:.1f} -> "
            f"{during['acked_per_s']:.1f} ({throughput:.2f}x; at least 0.5x)"
        )
        verdicts.append(
            (
                "tablet p95 during hostile clients",
                during["p95"] <= allowed,
                f"{ms(during['p95'])} ms vs {ms(before['p95'])} ms ({ratio:.2f}x)",
            )
        )
        verdicts.append(
            ("tablet throughput during hostile clients", throughput >= 0.5, f"{throughput:.2f}x of steady")
        )
        if rss_during:
            print(
                f"app-1 RSS: {rss_during['before'] / 1024:.0f} MiB before the probes, peak "
                f"{rss_during['peak'] / 1024:.0f} MiB, {rss_during['after'] / 1024:.0f} MiB after"
            )
            grew = rss_during["peak"] - rss_during["before"]
            verdicts.append(
                ("app-1 memory during hostile clients", grew < 200 * 1024, f"+{grew / 1024:.0f} MiB at peak")
            )

    print("\n== App processes ==")
    rows = [["process", "starts", "peak RSS MiB (per process)", "tracebacks in log", "ERROR lines in log"]]
    for server in servers:
        found = server.log_findings()
        rows.append(
            [
                server.name,
                str(server.starts),
                ", ".join(f"{kib / 1024:.0f}" for kib in server.peak_rss_kib) or "-",
                str(found["tracebacks"]),
                str(found["ERROR lines"]),
            ]
        )
        verdicts.append(
            (
                f"{server.name}: no traceback in its log",
                found["tracebacks"] == 0,
                f"{found['tracebacks']} found",
            )
        )
    print(format_table(rows))
    server_errors = sum(1 for s in recorder.samples if s.outcome[:1] == "5")
    verdicts.append(("no 5xx answer to a tablet", server_errors == 0, f"{server_errors} answers"))
    unexpected = sum(
        n for kind, n in recorder.client_errors.items() if "unexpected" in kind or "ApiError" in kind
    )
    verdicts.append(("no unexpected tablet error", unexpected == 0, f"{unexpected}"))
    rejected = sum(c.get("rejected", 0) for _, _, _, c in recorder.pushes)
    verdicts.append(("no change rejected", rejected == 0, f"{rejected}"))

    print("\n== Verdict ==")
    print(
        format_table(
            [["check", "result", "detail"], *[[n, "pass" if ok else "FAIL", d] for n, ok, d in verdicts]]
        )
    )
    passed = all(ok for _, ok, _ in verdicts)
    print(f"\n{'PASS' if passed else 'FAIL'}: wall time {time.monotonic() - wall:.0f} s")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.think = tuple(args.think)
    try:
        return run(args)
    except Fatal as exc:
        print(f"\nthe run could not be carried out: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
