"""End to end: the reference client against real `surveykit serve` processes that are killed with
SIGKILL mid-batch, run two at a time on one database, or reached through a connection that loses,
repeats and reorders requests. After each, the server's database is audited against every client:
nothing a client holds a receipt for is missing or different, nothing is stored twice."""

from __future__ import annotations

import copy
import json
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine, make_url
from test_client_support import (
    STUDY,
    Flaky,
    Hooked,
    RoundRobin,
    ServerProcess,
    Setup,
    audit,
    database_engine,
    new_interview,
    running,
    tablet,
)

from surveykit.client import Client, HttpTransport, ServerUnavailable
from surveykit.sync.models import Interview, InterviewRevision

pytestmark = pytest.mark.e2e

DEADLINE = 120.0
# The answer each device owns in the records everyone edits: merging keeps every device's edit.
HOT_KEYS = ("gov_capacity", "gov_budget", "pol_assessment", "pol_challenges", "le_mechanisms")


def push_until_done(client: Client, deadline: float = DEADLINE) -> None:
    """Push until nothing sendable is left, riding out a server that is down for a while."""
    end = time.monotonic() + deadline
    while True:
        try:
            client.push()
            return
        except ServerUnavailable:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


# --------------------------------------------------------------------------------------- SIGKILL


class WriteProbe:
    """Whether the server holds an open write transaction, and how many interviews are committed."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = make_url(url)
        self.engine = engine

    def writing(self) -> bool:
        if self.url.get_backend_name() == "sqlite":
            connection = sqlite3.connect(self.url.database, timeout=0, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
                return False
            except sqlite3.OperationalError as exc:
                return "locked" in str(exc) or "busy" in str(exc)
            finally:
                connection.close()
        with self.engine.connect() as connection:
            return bool(
                connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
                    )
                )
            )

    def interviews(self) -> int:
        with self.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(Interview))


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.001)
    return False


def test_a_server_killed_with_sigkill_mid_batch_loses_and_duplicates_nothing(
    databases: Any, tmp_path: Path
) -> None:
    url = databases.create()
    setup = Setup(url).prepare()
    server = ServerProcess(url, tmp_path)
    engine = database_engine(url)
    probe = WriteProbe(url, engine)
    rng = random.Random(11)
    # Kill modes, one per round: right as the request leaves; while the batch's transaction is open
    # (the server holds a write transaction); just after it committed (the answer may be lost).
    plan: list[str] = []
    kills: list[dict[str, Any]] = []
    killers: list[threading.Thread] = []

    def kill_and_restart(mode: str, before: int) -> None:
        if mode == "mid-transaction":
            seen = wait_for(probe.writing)
        elif mode == "after-commit":
            seen = wait_for(lambda: probe.interviews() > before)
        else:
            seen = True
        server.kill()
        kills.append({"mode": mode, "seen": seen, "committed": probe.interviews() > before})
        server.restart_on_same_port()

    def before_send(method: str, path: str, body: bytes | None) -> None:
        if method == "POST" and path == "/api/v1/sync" and plan:
            killer = threading.Thread(
                target=kill_and_restart, args=(plan.pop(0), probe.interviews()), daemon=True
            )
            killers.append(killer)
            killer.start()

    try:
        with running(server):
            client = tablet(
                tmp_path / "tablet.sqlite3",
                server.url,
                setup.enrol(setup.fieldworker()),
                transport=Hooked(before_send, read_timeout=60),
                batch_size=100,
            )
            try:
                client.fetch_instruments()
                made: list[str] = []
                modes = ["on-send", "mid-transaction", "after-commit", "mid-transaction"]
                for round_number, mode in enumerate(modes):
                    # A block per round: a tablet holds at most SURVEYKIT_MAX_UNUSED_NUMBERS unused.
                    client.reserve_block(STUDY, "KE", "RA1", size=80)
                    fresh = [new_interview(client, rng) for _ in range(80)]
                    for uuid in made[:20]:
                        client.edit(uuid, notes=f"round {round_number}")
                    made += fresh
                    plan.append(mode)
                    push_until_done(client)
                    killers[-1].join(timeout=90)
                    assert not killers[-1].is_alive()
                    assert client.outbox() == []
                report = audit(engine, [client], exclusive=True)
            finally:
                client.close()
    finally:
        for killer in killers:
            killer.join(timeout=90)
        engine.dispose()

    assert [kill["mode"] for kill in kills] == modes
    # The kills really fell inside a batch's open transaction, and once after a commit.
    assert sum(1 for kill in kills if kill["mode"] == "mid-transaction" and kill["seen"]) >= 2, kills
    assert any(kill["mode"] == "after-commit" and kill["seen"] and kill["committed"] for kill in kills), kills
    assert report["interviews"] == len(made) == 80 * len(modes)
    assert report["conflicts"] == 0  # a retry never turned into a conflict with itself
    # Each edited record: creation plus one revision per round it was edited in.
    assert report["accepted"] == 80 * len(modes) + 20 * (len(modes) - 1)


# ------------------------------------------------------------------------------- the workload


def merge_conflicts(client: Client, key: str) -> int:
    """Resolve every conflict by taking the server's version plus this device's own answer."""
    resolved = 0
    for uuid in client.in_conflict():
        state = client.state(uuid)
        assert state.server_record is not None
        merged = copy.deepcopy(state.server_record)
        merged["answers"][key] = state.record["answers"][key]
        client.resolve(uuid, merged)
        resolved += 1
    return resolved


def sync_resolving(client: Client, key: str, rounds: int = 20) -> None:
    """Push, settling conflicts by merging, until the outbox is empty (bounded)."""
    for _ in range(rounds):
        push_until_done(client)
        if not merge_conflicts(client, key) and not client.outbox():
            return
    raise AssertionError(f"no convergence: {client.outbox()}")


def run_workload(clients: list[Client], seed: int, rounds: int = 4, own: int = 6) -> dict[str, Any]:
    """Each device creates records and edits them; all edit the same hot records at the same time,
    each its own answer, through whatever transport it has; then they converge."""
    rng = random.Random(seed)
    for client in clients:
        client.fetch_instruments()
        client.reserve_block(STUDY, "KE", "RA1", size=own + 2)
    owned = {index: [new_interview(client, rng) for _ in range(own)] for index, client in enumerate(clients)}
    for client in clients:
        push_until_done(client)
    hot = owned[0][:3]
    for client in clients:
        client.pull(STUDY)
    errors: list[BaseException] = []
    last_value: dict[tuple[int, str], str] = {}

    def device(index: int) -> None:
        client, key = clients[index], HOT_KEYS[index]
        local = random.Random(seed * 100 + index)
        try:
            for round_number in range(rounds):
                for uuid in owned[index]:
                    if uuid not in hot and local.random() < 0.5:
                        client.edit(uuid, notes=f"device {index} round {round_number}")
                for uuid in hot:
                    value = f"device {index} round {round_number}"
                    client.edit(uuid, answers={**client.record(uuid)["answers"], key: value})
                    last_value[(index, uuid)] = value
                sync_resolving(client, key)
                client.pull(STUDY)
                time.sleep(local.uniform(0, 0.05))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=device, args=(index,), daemon=True) for index in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a device did not finish in time"
    if errors:
        raise errors[0]
    # Converge: everyone settles what is left, then everyone pulls the final state.
    for _ in range(5):
        for index, client in enumerate(clients):
            sync_resolving(client, HOT_KEYS[index])
        if not any(client.outbox() for client in clients):
            break
    for client in clients:
        client.pull(STUDY)
    return {"hot": hot, "last_value": last_value, "owned": owned}


def check_every_edit_survived(clients: list[Client], outcome: dict[str, Any]) -> None:
    for (index, uuid), value in outcome["last_value"].items():
        for client in clients:
            assert client.record(uuid)["answers"][HOT_KEYS[index]] == value, (index, uuid)


def count_conflicts(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(
            select(func.count()).select_from(InterviewRevision).where(InterviewRevision.kind == "conflict")
        )


# --------------------------------------------------------------------------- two app processes


def test_two_app_processes_on_one_database_with_devices_syncing_through_both(
    databases: Any, backend: str, tmp_path: Path
) -> None:
    # On the PostgreSQL run both processes share a PostgreSQL database; on the SQLite run, one file.
    url = databases.create()
    assert url.startswith("postgresql" if backend == "postgresql" else "sqlite")
    setup = Setup(url).prepare()
    first, second = ServerProcess(url, tmp_path, "first"), ServerProcess(url, tmp_path, "second")
    engine = database_engine(url)
    clients: list[Client] = []
    try:
        with running(first, second):
            urls = [first.url, second.url]
            transports = [RoundRobin(HttpTransport(), urls) for _ in range(4)]
            users = [setup.fieldworker(), setup.fieldworker()]
            for index, transport in enumerate(transports):
                # Two fieldworkers, two tablets each.
                code = setup.enrol(users[index % 2])
                clients.append(
                    tablet(tmp_path / f"tablet-{index}.sqlite3", urls[index % 2], code, transport=transport)
                )
            outcome = run_workload(clients, seed=7)
            answers = fire_one_batch_concurrently(clients[0], urls, copies=8)
            for client in clients:
                client.pull(STUDY)
            report = audit(engine, clients, exclusive=True)
            check_every_edit_survived(clients, outcome)
            conflicts = count_conflicts(engine)
    finally:
        for client in clients:
            client.close()
        engine.dispose()
    assert report["interviews"] == 4 * 6 + 20
    assert conflicts > 0, "the devices' overlapping edits never met"
    # Eight copies of one batch at once, through both processes: one created each record, the
    # others answered with the same receipts; none failed.
    assert [status for status, _ in answers] == [200] * 8, answers
    receipts = {
        tuple(sorted((r["uuid"], r["revision"], r["content_hash"]) for r in body)) for _, body in answers
    }
    assert len(receipts) == 1, differing_results(answers)
    created = Counter(r["uuid"] for _, body in answers for r in body if r["result"] == "created")
    assert sorted(created.values()) == [1] * 20
    for transport in transports:
        assert len(transport.counts) == 2 and min(transport.counts.values()) > 5, transport.counts


def differing_results(answers: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    """The results of the copies that differ from the first copy's, for the failure message."""
    first = {r["uuid"]: r for r in answers[0][1]}
    return [
        {"copy": copy, "first": first.get(r["uuid"]), "this": r}
        for copy, (_, body) in enumerate(answers)
        for r in body
        if (r["revision"], r["content_hash"]) != (first.get(r["uuid"], {}).get("revision"), r["content_hash"])
    ]


def fire_one_batch_concurrently(client: Client, urls: list[str], copies: int) -> list[tuple[int, Any]]:
    """The client's next batch of 20 new records, sent ``copies`` times at once to the servers in
    turn (a request duplicated by a proxy, or a tablet and its retry racing); then the client pushes
    as usual and must get the same receipts."""
    rng = random.Random(99)
    client.reserve_block(STUDY, "KE", "RA1", size=20)
    for _ in range(20):
        new_interview(client, rng)
    client.me()  # a fresh access token
    token = client.store.get("access_token")
    body = json.dumps(
        {
            "changes": [
                {"uuid": e.uuid, "base_revision": e.base_revision, "record": e.record}
                for e in client.outbox()
            ]
        },
        ensure_ascii=False,
    ).encode("utf-8")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(copies)

    def send(url: str) -> None:
        start.wait(timeout=30)
        response = HttpTransport().request("POST", url + "/api/v1/sync", headers, body)
        results = response.json()["results"] if response.status == 200 else response.body[:300]
        with lock:
            answers.append((response.status, results))

    threads = [threading.Thread(target=send, args=(urls[i % len(urls)],), daemon=True) for i in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    report = client.push()
    assert (report.unchanged, report.created, report.unmatched) == (20, 0, 0)
    return answers


# ---------------------------------------------------------------------------- a flaky network


def test_a_flaky_network_that_loses_repeats_and_reorders_requests(databases: Any, tmp_path: Path) -> None:
    url = databases.create()
    setup = Setup(url).prepare()
    server = ServerProcess(url, tmp_path)
    engine = database_engine(url)
    clients: list[Client] = []
    flaky: list[Flaky] = []
    try:
        with running(server):
            for index in range(3):
                transport = Flaky(HttpTransport(), seed=100 + index)
                flaky.append(transport)
                code = setup.enrol(setup.fieldworker())
                clients.append(
                    tablet(tmp_path / f"tablet-{index}.sqlite3", server.url, code, transport=transport)
                )
            outcome = run_workload(clients, seed=5)
            report = audit(engine, clients, exclusive=True)
            check_every_edit_survived(clients, outcome)
            conflicts = count_conflicts(engine)
    finally:
        for client in clients:
            client.close()
        engine.dispose()
    assert report["interviews"] == 3 * 6
    assert conflicts > 0
    # Every kind of fault happened. Counted over the three tablets together: how many requests each
    # one makes depends on how its edits met the others', so one tablet alone may miss a kind.
    faults = sum((transport.counts for transport in flaky), Counter())
    for what in ("refused", "lost", "duplicated", "replayed"):
        assert faults[what] > 0, (what, [transport.counts for transport in flaky])
