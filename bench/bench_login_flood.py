"""A tablet's one-record push latency on embedded SQLite, quiet and under a flood of wrong logins.

    .venv/bin/python bench/bench_login_flood.py                  # about a minute
    .venv/bin/python bench/bench_login_flood.py --seconds 20 --flooders 8
    .venv/bin/python bench/bench_login_flood.py --source /tmp/old-tree   # also an older source tree

For each server variant the script prepares its own SQLite database with surveykit's CLI (a study,
a country, a fieldworker, an enrolled tablet), starts ``surveykit serve``, activates the tablet,
and then measures, for ``--seconds`` each:

- quiet: the tablet pushes one record (an edit of its one interview) after another, alone;
- flood: the same, while ``--flooders`` clients post wrong logins (a new unknown username each
  time, so no lockout ever short-cuts the password check) as fast as the server answers; timing
  starts once they have made ``--warmup-logins`` attempts, so a throttled server is measured in
  the state a persistent attacker keeps it in.

Variants: ``throttled`` (the default settings: logins limited per client address, and every
flooder shares 127.0.0.1), ``unthrottled`` (the limit lifted, so every login checks a password:
this isolates the effect of checking passwords outside SQLite's write lock), and with ``--source
DIR`` the same unthrottled run against the source tree in DIR (for example an older commit made
with ``git archive``), run with this interpreter.

It prints push p50/p95/max latency, the ratio of each to the quiet baseline of the same variant
(same server, same run), and how the logins were answered. Only ratios within one run mean
anything on a shared machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTRUMENT = PROJECT_ROOT / "instruments" / "ra1-duty-bearers.yaml"
READY_PATTERN = re.compile(r"serving on http://127\.0\.0\.1:(\d+)/")
STUDY, COUNTRY, ACTIVITY = "ocsea", "KE", "RA1"
LIFTED = "1000000000"


# Run as a module of whichever source tree PYTHONPATH puts first (this one by default).
SURVEYKIT = [sys.executable, "-c", "from surveykit.cli import main; main()"]


def child_env(data_dir: Path, source: Path | None, extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SURVEYKIT_")}
    env.update(
        {
            "SURVEYKIT_ENV": "test",
            "SURVEYKIT_DATA_DIR": str(data_dir),
            "SURVEYKIT_ADMIN_PASSWORD": secrets.token_urlsafe(18),
            "SURVEYKIT_ACCESS_TOKEN_SECONDS": "3600",
            **extra,
        }
    )
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_cli(command: list[str], args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        [*command, *args], input=stdin, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"surveykit {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class Http:
    """One keep-alive connection to the server."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        payload = json.dumps(body).encode("utf-8")
        for attempt in range(2):
            try:
                self.connection.request("POST", path, payload, self.headers)
                response = self.connection.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.connection.close()
                return response.status, json.loads(data) if data else None
            except (ConnectionError, http.client.HTTPException):
                self.connection.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


@dataclass
class Variant:
    name: str
    settings: dict[str, str]
    source: Path | None = None


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    logins: Counter[int] = field(default_factory=Counter)

    def stat(self, which: str) -> float:
        values = sorted(self.latencies)
        if which == "p50":
            return statistics.median(values)
        if which == "p95":
            return values[min(len(values) - 1, int(0.95 * len(values)))]
        return values[-1]


class Tablet:
    """The enrolled tablet: one interview, edited and pushed again and again."""

    def __init__(self, port: int, code: str) -> None:
        status, answer = Http(port).post("/api/v1/devices/activate", {"code": code})
        if status != 200:
            raise RuntimeError(f"activation answered {status}: {answer}")
        self.http = Http(port, answer["access_token"])
        status, block = self.http.post(
            "/api/v1/blocks", {"study": STUDY, "country": COUNTRY, "activity": ACTIVITY}
        )
        if status != 201:
            raise RuntimeError(f"block reservation answered {status}: {block}")
        self.uuid = str(uuid.uuid4())
        self.revision = 0
        self.record = {
            "study": STUDY,
            "country": COUNTRY,
            "activity": ACTIVITY,
            "interview_number": block["first_number"],
            "participants": [
                {
                    "letter": "A",
                    "agency": "Ministry of ICT",
                    "position": None,
                    "consent_given": None,
                    "consent_date": None,
                    "consent_recorded_how": None,
                }
            ],
            "instrument": {"slug": "ra1-duty-bearers", "version": 1},
            "language": "en",
            "mode": "in_person",
            "started_at": "2026-05-04T09:30:00+03:00",
            "status": "draft",
            "answers": {"agency": "Ministry of ICT", "mode": "in_person"},
            "notes": "",
        }
        self.pushes = 0

    def push(self) -> float:
        self.pushes += 1
        self.record["notes"] = f"edit {self.pushes}"
        change = {"uuid": self.uuid, "base_revision": self.revision, "record": self.record}
        started = time.perf_counter()
        status, answer = self.http.post("/api/v1/sync", {"changes": [change]})
        elapsed = time.perf_counter() - started
        result = answer["results"][0] if status == 200 else answer
        if status != 200 or result.get("result") not in ("created", "updated"):
            raise RuntimeError(f"push answered {status}: {json.dumps(result)[:400]}")
        self.revision = result["revision"]
        return elapsed


def flood(port: int, stop: threading.Event, answers: Counter[int], lock: threading.Lock) -> None:
    client = Http(port)
    try:
        while not stop.is_set():
            body = {"username": f"nobody-{secrets.token_hex(6)}", "password": "not the password at all"}
            status, _ = client.post("/api/v1/auth/token", body)
            with lock:
                answers[status] += 1
    finally:
        client.close()


def measure(tablet: Tablet, port: int, seconds: float, flooders: int, warmup_logins: int) -> Phase:
    """Push for ``seconds``; with flooders, only once they have made ``warmup_logins`` attempts (or
    90 s have passed), so a throttled server is measured in its steady state, as an attacker who
    keeps going meets it."""
    phase = Phase()
    stop, lock = threading.Event(), threading.Lock()
    threads = [
        threading.Thread(target=flood, args=(port, stop, phase.logins, lock), daemon=True)
        for _ in range(flooders)
    ]
    for thread in threads:
        thread.start()
    warmup_until = time.monotonic() + 90
    while flooders and sum(phase.logins.values()) < warmup_logins and time.monotonic() < warmup_until:
        time.sleep(0.1)
    with lock:
        phase.logins.clear()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            phase.latencies.append(tablet.push())
    finally:
        with lock:
            answered_while_timed = Counter(phase.logins)
        stop.set()
        for thread in threads:
            thread.join(150)
    phase.logins = answered_while_timed
    return phase


def run_variant(variant: Variant, workdir: Path, args: argparse.Namespace) -> tuple[Phase, Phase]:
    data_dir = workdir / variant.name
    env = child_env(data_dir, variant.source, variant.settings)
    command = SURVEYKIT
    run_cli(command, ["db", "upgrade"], env)
    run_cli(command, ["instruments", "publish", str(INSTRUMENT)], env)
    run_cli(command, ["studies", "add", STUDY, "--name", "Login flood benchmark"], env)
    run_cli(command, ["studies", "add-country", STUDY, COUNTRY, "--name", "Kenya", "--language", "en"], env)
    run_cli(command, ["studies", "add-activity", STUDY, ACTIVITY, "--name", "Duty bearers"], env)
    run_cli(command, ["users", "add", "bench-fw", "--password-stdin"], env, secrets.token_urlsafe(18) + "\n")
    run_cli(
        command, ["users", "grant", "bench-fw", "fieldworker", "--study", STUDY, "--country", COUNTRY], env
    )
    enrolled = run_cli(command, ["devices", "enrol", "bench-fw", "--label", "bench tablet"], env)
    code = re.search(r"enrolment code: (\S+)", enrolled)
    if code is None:
        raise RuntimeError(f"no enrolment code in:\n{enrolled}")
    log_path = workdir / f"{variant.name}.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [*command, "serve", "--port", "0", "--threads", str(args.threads)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
    try:
        port = wait_for_port(server, log_path)
        tablet = Tablet(port, code.group(1))
        for _ in range(20):  # warm-up
            tablet.push()
        quiet = measure(tablet, port, args.seconds, 0, 0)
        flooded = measure(tablet, port, args.seconds, args.flooders, args.warmup_logins)
        return quiet, flooded
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def wait_for_port(server: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = READY_PATTERN.search(log_path.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        if server.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    raise RuntimeError("the server did not report its port within 60 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time of each phase (10)")
    parser.add_argument("--flooders", type=int, default=8, help="clients posting wrong logins (8)")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads of the server (8)")
    parser.add_argument(
        "--warmup-logins",
        type=int,
        default=40,
        help="wrong logins made before the flood phase is timed (40: past the default limit of 30)",
    )
    parser.add_argument("--source", type=Path, help="also run the unthrottled variant on this source tree")
    args = parser.parse_args(argv)

    variants = [
        Variant("throttled", {}),
        Variant("unthrottled", {"SURVEYKIT_LOGIN_RATE_LIMIT": LIFTED}),
    ]
    if args.source is not None:
        variants.append(
            Variant("source-unthrottled", {"SURVEYKIT_LOGIN_RATE_LIMIT": LIFTED}, args.source.resolve())
        )
    print(
        f"one-record pushes on SQLite, {args.seconds:g} s per phase, {args.flooders} login flooders, "
        f"{args.threads} server threads"
    )
    header = ["variant", "phase", "pushes", "p50 ms", "p95 ms", "max ms", "p50 ×", "max ×", "logins answered"]
    rows = [header]
    with tempfile.TemporaryDirectory(prefix="surveykit-login-flood-") as tmp:
        for variant in variants:
            quiet, flooded = run_variant(variant, Path(tmp), args)
            for label, phase in (("quiet", quiet), ("flood", flooded)):
                logins = (
                    ", ".join(f"{count}× {status}" for status, count in sorted(phase.logins.items())) or "-"
                )
                rows.append(
                    [
                        variant.name,
                        label,
                        str(len(phase.latencies)),
                        f"{phase.stat('p50') * 1000:.1f}",
                        f"{phase.stat('p95') * 1000:.1f}",
                        f"{phase.stat('max') * 1000:.1f}",
                        f"{phase.stat('p50') / quiet.stat('p50'):.2f}",
                        f"{phase.stat('max') / quiet.stat('max'):.2f}",
                        logins,
                    ]
                )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        print(
            "  ".join(
                cell.rjust(width) if 1 < i < 8 else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print("×: the figure divided by the same variant's quiet one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
