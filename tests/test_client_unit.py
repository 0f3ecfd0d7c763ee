"""The reference client without a server: a scripted transport answers, so each rule can be checked
against exactly the answer that tests it (wrong receipts, lost refresh answers, endless 503s...)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveykit.client import (
    ApiError,
    Client,
    NetworkError,
    RefreshInDoubt,
    Response,
    RetryPolicy,
    ServerUnavailable,
    SessionEnded,
    StoreInUse,
    canonical_json,
    content_hash,
    format_pid,
    normalise,
)
from surveykit.participants import ids
from surveykit.sync import validation

URL = "http://tablet.test"
RECORD = {
    "study": "ocsea",
    "country": "KE",
    "activity": "RA1",
    "interview_number": 4,
    "participants": [{"letter": "A", "agency": "Ministry of ICT", "consent_given": True}],
    "instrument": {"slug": "ra1-duty-bearers", "version": 1},
    "language": "en",
    "mode": "in_person",
    "started_at": "2026-05-04T09:30:00+03:00",
    "status": "draft",
    "answers": {"agency": "Ministry of ICT"},
}


def answer(status: int, body: Any = None, **headers: str) -> Response:
    data = b"" if body is None else json.dumps(body).encode()
    names = {
        "content-type": "application/json",
        **{k.replace("_", "-").lower(): v for k, v in headers.items()},
    }
    return Response(status, names, data)


def error(status: int, code: str, message: str = "refused") -> Response:
    return answer(status, {"status": status, "code": code, "message": message, "details": []})


def tokens(n: int) -> dict[str, Any]:
    return {"access_token": f"access-{n}", "refresh_token": f"refresh-{n}", "expires_in": 300}


class Script:
    """A transport answering from handlers by path; every request is kept."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[dict[str, Any] | None, dict[str, str]], Response]] = {}
        self.requests: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]] = []
        self.query: dict[str, str] = {}

    def on(self, path: str, handler: Callable[[dict[str, Any] | None, dict[str, str]], Response]) -> None:
        self.handlers[path] = handler

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        path, _, query = url[len(URL) :].partition("?")
        self.query = dict(parse_qsl(query))
        parsed = json.loads(body) if body else None
        self.requests.append((method, path, parsed, headers))
        return self.handlers[path](parsed, headers)

    def paths(self) -> list[str]:
        return [path for _, path, _, _ in self.requests]


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def script() -> Script:
    script = Script()
    script.on(
        "/api/v1/devices/activate", lambda body, headers: answer(200, {"device_id": "dev-1", **tokens(1)})
    )
    return script


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(tmp_path: Path, script: Script, sleeps: Sleeps) -> Client:
    client = Client(
        tmp_path / "tablet.sqlite3",
        URL,
        transport=script,
        retry=RetryPolicy(attempts=4, base=0.5, cap=2.0),
        sleep=sleeps,
        rng=random.Random(1),
    )
    client.activate("ABCDE-FGHIJ")
    yield client
    client.close()


def sync_answer(result: Callable[[int, dict[str, Any]], dict[str, Any]]) -> Callable[..., Response]:
    def handler(body: dict[str, Any] | None, headers: dict[str, str]) -> Response:
        assert body is not None
        return answer(200, {"results": [result(i, change) for i, change in enumerate(body["changes"])]})

    return handler


def receipt(index: int, change: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "index": index,
        "uuid": change["uuid"],
        "result": "created" if change["base_revision"] == 0 else "updated",
        "revision": change["base_revision"] + 1,
        "content_hash": validation.content_hash(change["record"]),
        **overrides,
    }


# ---------------------------------------------------------------------------- pure helpers


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=8), children, max_size=4
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_client_hashes_exactly_what_the_server_will_hash(value: Any) -> None:
    record = normalise({"answers": value})
    # What the client sends, as the server parses it from the request body.
    wire = json.dumps({"record": record}, ensure_ascii=False, allow_nan=False).encode("utf-8")
    received = json.loads(wire.decode("utf-8"))["record"]
    assert content_hash(record) == validation.content_hash(received)
    assert canonical_json(record) == validation.canonical_json(received)


def test_records_json_cannot_carry_are_refused_before_they_are_stored() -> None:
    with pytest.raises(ValueError):
        normalise({"answers": {"people": float("nan")}})
    with pytest.raises(UnicodeEncodeError):
        normalise({"notes": "lone surrogate \ud800"})
    assert normalise({"answers": {1: (1, 2)}}) == {"answers": {"1": [1, 2]}}


def test_ids_are_formatted_as_the_server_formats_them() -> None:
    for number in (1, 4, 10, 99, 100, 101, 999, 1000):
        for letter in "AZ":
            assert format_pid("RA1", "KE", number, letter) == ids.format_pid("RA1", "KE", number, letter)
            assert ids.parse_pid(format_pid("RA3", "CA", number, letter)).interview_number == number


def test_one_process_owns_a_store(tmp_path: Path) -> None:
    first = Client(tmp_path / "t.sqlite3", URL)
    try:
        with pytest.raises(StoreInUse):
            Client(tmp_path / "t.sqlite3", URL)
    finally:
        first.close()
    Client(tmp_path / "t.sqlite3", URL).close()


def test_backoff_is_exponential_jittered_and_bounded() -> None:
    policy = RetryPolicy(attempts=10, base=0.5, cap=4.0)
    rng = random.Random(3)
    for attempt in range(10):
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        ceiling = min(4.0, 0.5 * 2**attempt)
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range
    assert policy.delay(0, rng, retry_after=3.0) == 3.0
    assert policy.delay(0, rng, retry_after=60.0) == 4.0


# ------------------------------------------------------------------------------ push, receipts


def test_entries_go_only_on_a_receipt_matching_what_was_sent(client: Client, script: Script) -> None:
    uuids = [client.create({**RECORD, "interview_number": n}) for n in range(1, 7)]
    wrong = {
        uuids[0]: {"content_hash": "0" * 64},  # another content
        uuids[1]: {"uuid": uuids[2]},  # another record
        uuids[2]: {"revision": None},  # no revision
        uuids[3]: {"result": "accepted"},  # not a result the protocol knows
    }
    skipped = uuids[4]  # no result at all

    def results(body: dict[str, Any] | None, headers: dict[str, str]) -> Response:
        assert body is not None
        out = []
        for index, change in enumerate(body["changes"]):
            if change["uuid"] == skipped:
                continue
            out.append(receipt(index, change, **wrong.get(change["uuid"], {})))
        return answer(200, {"results": out})

    script.on("/api/v1/sync", results)
    report = client.push()
    assert (report.created, report.unmatched) == (1, 5)
    assert {entry.uuid for entry in client.outbox()} == set(uuids[:5])
    assert client.receipts() == [(uuids[5], 1, client.state(uuids[5]).content_hash)]


def test_network_errors_and_5xx_are_retried_with_backoff_then_given_up(
    client: Client, script: Script, sleeps: Sleeps
) -> None:
    client.create(RECORD)
    calls = []

    def unavailable(body: Any, headers: dict[str, str]) -> Response:
        calls.append(1)
        if len(calls) % 2:
            raise NetworkError("reset", sent=True)
        return answer(503, None, Retry_After="1")

    script.on("/api/v1/sync", unavailable)
    with pytest.raises(ServerUnavailable):
        client.push()
    assert len(calls) == 4  # the policy's attempts, no more
    assert len(sleeps) == 3 and all(0 <= s <= 2.0 for s in sleeps)
    assert sleeps[1] >= 1.0  # Retry-After honoured
    assert len(client.outbox()) == 1


def test_a_batch_the_server_cannot_parse_is_split_until_the_bad_change_is_alone(
    client: Client, script: Script
) -> None:
    uuids = [client.create({**RECORD, "interview_number": n}) for n in range(1, 6)]
    bad = uuids[2]

    def handler(body: dict[str, Any] | None, headers: dict[str, str]) -> Response:
        assert body is not None
        if any(change["uuid"] == bad for change in body["changes"]):
            return error(400, "malformed_json", "JSON nested deeper than 64 levels")
        return sync_answer(receipt)(body, headers)

    script.on("/api/v1/sync", handler)
    report = client.push()
    assert (report.created, report.rejected) == (4, 1)
    [entry] = client.outbox()
    assert entry.uuid == bad and entry.status == "rejected" and entry.error["code"] == "malformed_json"


def test_edits_queue_behind_a_change_that_may_be_on_the_server(client: Client, script: Script) -> None:
    uuid = client.create(RECORD)
    client.edit(uuid, notes="before any push")  # not sent yet: replaces the queued change
    assert [(e.base_revision, e.record.get("notes")) for e in client.outbox()] == [(0, "before any push")]

    script.on("/api/v1/sync", lambda body, headers: (_ for _ in ()).throw(NetworkError("lost", sent=True)))
    with pytest.raises(ServerUnavailable):
        client.push()
    client.edit(uuid, notes="after a lost answer")
    client.edit(uuid, notes="and again")
    queued = client.outbox()
    assert [(e.base_revision, e.record.get("notes")) for e in queued] == [
        (0, "before any push"),
        (None, "and again"),
    ]

    script.on("/api/v1/sync", sync_answer(lambda i, change: receipt(i, change, result="unchanged")))
    report = client.push()
    # The retry got its receipt; the edit was then sent on revision 1.
    assert [r[:2] for r in report.receipts] == [(uuid, 1), (uuid, 2)]
    sent = [
        body["changes"][0]["base_revision"] for _, path, body, _ in script.requests if path == "/api/v1/sync"
    ]
    assert sent[-2:] == [0, 1]
    assert client.state(uuid).state == "synced" and client.record(uuid)["notes"] == "and again"


def test_a_conflict_keeps_the_change_and_the_servers_version(client: Client, script: Script) -> None:
    uuid = client.create(RECORD)
    script.on("/api/v1/sync", sync_answer(receipt))
    client.push()
    client.edit(uuid, notes="mine")
    theirs = {**RECORD, "notes": "theirs"}
    current = {"uuid": uuid, "revision": 2, "content_hash": validation.content_hash(theirs), "record": theirs}
    script.on(
        "/api/v1/sync",
        sync_answer(
            lambda i, change: {
                "index": i,
                "uuid": change["uuid"],
                "result": "conflict",
                "revision": None,
                "content_hash": validation.content_hash(change["record"]),
                "conflict_id": 9,
                "conflict_status": "open",
                "current": current,
            }
        ),
    )
    assert client.push().conflict == 1
    state = client.state(uuid)
    assert (state.state, state.record["notes"], state.server_record["notes"]) == (
        "conflict",
        "mine",
        "theirs",
    )
    assert client.in_conflict() == [uuid]
    with pytest.raises(ValueError):
        client.resolve(uuid)
    script.on("/api/v1/sync", sync_answer(receipt))
    client.resolve(uuid, {**theirs, "notes": "theirs and mine"})
    [entry] = client.outbox()
    assert entry.base_revision == 2
    client.push()
    assert client.state(uuid).state == "synced" and client.record(uuid)["notes"] == "theirs and mine"


def test_identity_fields_cannot_change(client: Client) -> None:
    uuid = client.create(RECORD)
    with pytest.raises(ValueError):
        client.edit(uuid, interview_number=5)


# ------------------------------------------------------------------------------------- tokens


def test_a_refresh_that_never_left_is_retried_with_the_same_token(client: Client, script: Script) -> None:
    attempts = []

    def refresh(body: dict[str, Any] | None, headers: dict[str, str]) -> Response:
        attempts.append(body["refresh_token"])
        if len(attempts) == 1:
            raise NetworkError("no route to host", sent=False)
        return answer(200, tokens(2))

    script.on("/api/v1/auth/refresh", refresh)
    script.on(
        "/api/v1/me",
        lambda body, headers: (
            answer(200, {"grants": []})
            if headers["Authorization"] == "Bearer access-2"
            else error(401, "unauthenticated", "authentication failed: the access token has expired")
        ),
    )
    assert client.me() == {"grants": []}
    assert attempts == ["refresh-1", "refresh-1"]
    assert client.store.get("refresh_token") == "refresh-2" and client.store.get("refresh_state") == "ok"


@pytest.mark.parametrize(
    "failure",
    [
        lambda: (_ for _ in ()).throw(NetworkError("reset by peer", sent=True)),
        lambda: answer(502, None),  # a proxy's answer: the server may have rotated the token
        lambda: Response(200, {"content-type": "application/json"}, b'{"access_token": "acc'),
    ],
    ids=["lost", "proxy-502", "truncated"],
)
def test_a_refresh_in_doubt_is_never_repeated(client: Client, script: Script, failure: Any) -> None:
    script.on("/api/v1/auth/refresh", lambda body, headers: failure())
    script.on("/api/v1/me", lambda body, headers: error(401, "unauthenticated"))
    for _ in range(3):
        with pytest.raises(RefreshInDoubt):
            client.me()
    assert script.paths().count("/api/v1/auth/refresh") == 1
    assert client.store.get("refresh_token") == "refresh-1"  # kept, never presented again


def test_surveykits_own_server_error_on_refresh_leaves_the_token_unspent(
    client: Client, script: Script
) -> None:
    answers = iter([error(500, "internal_error"), answer(200, tokens(2))])
    script.on("/api/v1/auth/refresh", lambda body, headers: next(answers))
    script.on(
        "/api/v1/me",
        lambda body, headers: (
            answer(200, {})
            if headers["Authorization"] == "Bearer access-2"
            else error(401, "unauthenticated")
        ),
    )
    assert client.me() == {}
    assert script.paths().count("/api/v1/auth/refresh") == 2


def test_a_refused_refresh_ends_the_session(client: Client, script: Script) -> None:
    script.on("/api/v1/auth/refresh", lambda body, headers: error(401, "refresh_refused", "log in again"))
    script.on("/api/v1/me", lambda body, headers: error(401, "unauthenticated"))
    with pytest.raises(SessionEnded):
        client.me()
    with pytest.raises(SessionEnded):
        client.me()
    assert script.paths().count("/api/v1/auth/refresh") == 1
    # A new activation starts a new session and keeps the local data.
    uuid = client.create(RECORD)
    script.on(
        "/api/v1/devices/activate", lambda body, headers: answer(200, {"device_id": "dev-2", **tokens(5)})
    )
    script.on("/api/v1/me", lambda body, headers: answer(200, {"ok": True}))
    client.activate("KLMNO-PQRST")
    assert client.me() == {"ok": True} and client.device_id == "dev-2"
    assert [entry.uuid for entry in client.outbox()] == [uuid]


def test_forbidden_is_not_retried(client: Client, script: Script) -> None:
    script.on("/api/v1/me", lambda body, headers: error(403, "forbidden"))
    with pytest.raises(ApiError) as refused:
        client.me()
    assert refused.value.status == 403 and script.paths().count("/api/v1/me") == 1


# --------------------------------------------------------------------------------------- pull


def test_a_cursor_ahead_of_a_restored_server_restarts_from_zero(client: Client, script: Script) -> None:
    seen = []

    def changes(body: Any, headers: dict[str, str]) -> Response:
        cursor = int(script.query["cursor"])
        seen.append(cursor)
        if cursor > 3:
            return error(409, "cursor_ahead")
        return answer(200, {"changes": [], "next_cursor": 3, "has_more": False})

    script.on("/api/v1/sync/changes", changes)
    with client.store.transaction() as db:
        db.execute("INSERT INTO cursors (study, cursor) VALUES ('ocsea', 40)")
    client.pull("ocsea")
    assert seen == [40, 0] and client.cursor("ocsea") == 3


def test_a_retried_change_whose_conflict_was_resolved_meanwhile_is_settled(
    client: Client, script: Script
) -> None:
    uuid = client.create(RECORD)
    script.on("/api/v1/sync", sync_answer(receipt))
    client.push()
    client.edit(uuid, notes="mine")
    current = {**RECORD, "notes": "as the coordinator decided"}
    script.on(
        "/api/v1/sync",
        sync_answer(
            lambda i, change: {
                "index": i,
                "uuid": change["uuid"],
                "result": "conflict",
                "revision": None,
                "content_hash": validation.content_hash(change["record"]),
                "conflict_id": 4,
                "conflict_status": "resolved",
                "current": {
                    "uuid": uuid,
                    "revision": 3,
                    "content_hash": validation.content_hash(current),
                    "record": current,
                },
            }
        ),
    )
    assert client.push().conflict == 1
    # Nothing left to decide on the tablet: its change is on the server, the copy follows the server.
    assert client.outbox() == [] and client.record(uuid) == current
    assert client.state(uuid).server_revision == 3


def test_pulled_records_follow_the_server_unless_local_changes_wait(client: Client, script: Script) -> None:
    mine = client.create(RECORD)
    theirs = {**RECORD, "interview_number": 8, "notes": "another tablet's"}
    other_uuid = "7d8f5a51-8a2b-4b1e-9a55-0f1f7f7f7f7f"

    def page(body: Any, headers: dict[str, str]) -> Response:
        changes = [
            {
                "seq": 5,
                "kind": "interview",
                "key": other_uuid,
                "country": "KE",
                "object": {
                    "uuid": other_uuid,
                    "revision": 2,
                    "content_hash": validation.content_hash(theirs),
                    "record": theirs,
                },
            },
            {
                "seq": 6,
                "kind": "interview",
                "key": mine,
                "country": "KE",
                "object": {
                    "uuid": mine,
                    "revision": 1,
                    "content_hash": "f" * 64,
                    "record": {**RECORD, "notes": "server"},
                },
            },
        ]
        return answer(200, {"changes": changes, "next_cursor": 6, "has_more": False})

    script.on("/api/v1/sync/changes", page)
    assert client.pull("ocsea").changes == 2
    assert client.record(other_uuid) == theirs and client.state(other_uuid).server_revision == 2
    # The local record has a change waiting: the pull records the server's version beside it.
    assert client.record(mine) == RECORD and client.state(mine).server_record["notes"] == "server"
    assert client.cursor("ocsea") == 6
