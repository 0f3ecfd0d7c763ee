"""The reference client against a real `surveykit serve` process: activation, tokens, instruments,
number blocks, interviews, push with receipts, pull, and conflicts between two tablets."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from test_client_support import (
    RA1,
    STUDY,
    Flaky,
    Hooked,
    ServerProcess,
    Setup,
    answers,
    audit,
    database_engine,
    new_interview,
    participants,
    running,
    tablet,
)

from surveykit.accounts.models import AuthSession
from surveykit.audit.models import AuditEvent
from surveykit.client import (
    ApiError,
    Client,
    HttpTransport,
    NetworkError,
    NoNumbersLeft,
    RefreshInDoubt,
    RetryPolicy,
    ServerUnavailable,
    SessionEnded,
    format_pid,
)
from surveykit.client import Interview as ClientInterview
from surveykit.participants.models import NumberBlock
from surveykit.sync.models import Interview, InterviewRevision

pytestmark = pytest.mark.e2e


class World:
    def __init__(self, setup: Setup, server: ServerProcess, database_url: str, root: Path) -> None:
        self.setup = setup
        self.server = server
        self.database_url = database_url
        self.root = root
        self.engine = database_engine(database_url)
        self._count = 0

    @property
    def url(self) -> str:
        assert self.server.url is not None
        return self.server.url

    def path(self) -> Path:
        self._count += 1
        return self.root / f"tablet-{self._count}.sqlite3"

    def tablet(self, countries: tuple[str, ...] = ("KE",), *, user: str | None = None, **kw: Any) -> Client:
        username = user or self.setup.fieldworker(countries)
        return tablet(self.path(), self.url, self.setup.enrol(username), **kw)

    def events(self, action: str) -> list[AuditEvent]:
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
                )
            )


@pytest.fixture(scope="module")
def world(databases: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("client")
    url = databases.create()
    setup = Setup(url).prepare()
    server = ServerProcess(url, root)
    with running(server):
        world = World(setup, server, url, root)
        try:
            yield world
        finally:
            world.engine.dispose()


@pytest.fixture
def rng() -> random.Random:
    return random.Random(4)


# --------------------------------------------------------------------------------- activation


def test_activation_stores_the_device_and_its_tokens(world: World) -> None:
    client = world.tablet()
    try:
        assert client.device_id and client.server_url == world.url
        me = client.me()
        assert me["device_id"] == client.device_id
        assert [grant["role"] for grant in me["grants"]] == ["fieldworker"]
        assert client.studies() == [STUDY]
    finally:
        client.close()


def test_a_spent_enrolment_code_is_refused_without_harm(world: World) -> None:
    username = world.setup.fieldworker()
    code = world.setup.enrol(username)
    first = tablet(world.path(), world.url, code)
    second = Client(world.path(), world.url, retry=RetryPolicy(attempts=2, base=0.01))
    try:
        with pytest.raises(ApiError) as refused:
            second.activate(code)
        assert refused.value.code == "enrolment_refused"
        assert first.me()["device_id"] == first.device_id  # the first tablet is untouched
    finally:
        first.close()
        second.close()


def test_an_expired_access_token_is_refreshed_and_the_new_pair_saved(world: World) -> None:
    client = world.tablet()
    try:
        old_refresh = client.store.get("refresh_token")
        # The server refuses the token (as it refuses an expired one): the client refreshes once
        # and repeats the request.
        client.store.set(access_token="not-a-token", access_expires_at="9999999999")
        assert client.me()["device_id"] == client.device_id
        assert client.store.get("refresh_token") != old_refresh
        assert client.store.get("refresh_state") == "ok"
        # Near its end the token is renewed before use, without a 401 first.
        before = client.store.get("access_token")
        client.store.set(access_expires_at="0")
        client.me()
        assert client.store.get("access_token") != before
        assert not world.events("auth.refresh_reuse_detected")
    finally:
        client.close()


def test_a_lost_refresh_answer_is_never_followed_by_the_old_token(world: World) -> None:
    inner = HttpTransport()

    class LoseRefresh:
        lost = 0

        def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Any:
            response = inner.request(method, url, headers, body)
            if url.endswith("/api/v1/auth/refresh"):
                LoseRefresh.lost += 1
                raise NetworkError("simulated: the refresh answer was lost", sent=True)
            return response

    client = world.tablet(transport=LoseRefresh())
    try:
        client.fetch_instruments()
        client.reserve_block(STUDY, "KE", "RA1")
        uuid = new_interview(client, random.Random(1))
        client.store.set(access_expires_at="0")
        with pytest.raises(RefreshInDoubt):
            client.push()
        with pytest.raises(RefreshInDoubt):
            client.push()
        assert LoseRefresh.lost == 1  # presented once, never again
        # The server did rotate it, and saw no reuse: the session was not ended by the client.
        assert len(world.events("auth.refresh")) >= 1
        assert not world.events("auth.refresh_reuse_detected")
        # Nothing local is lost; after a new activation the change goes through.
        assert [entry.uuid for entry in client.outbox()] == [uuid]
        reopened_path = client.store.path
        client.close()
        again = Client(reopened_path)
        try:
            with pytest.raises(RefreshInDoubt):
                again.push()
        finally:
            again.close()
    finally:
        client.close()


def test_a_refresh_interrupted_by_a_crash_is_in_doubt_on_the_next_start(world: World) -> None:
    client = world.tablet()
    path = client.store.path
    client.store.set(refresh_state="in_flight")  # the app died between sending and saving
    client.close()
    reopened = Client(path)
    try:
        assert reopened.store.get("refresh_state") == "in_doubt"
        with pytest.raises(RefreshInDoubt):
            reopened.me()
    finally:
        reopened.close()


def test_a_revoked_device_ends_its_session_and_keeps_its_data(world: World, rng: random.Random) -> None:
    client = world.tablet()
    try:
        client.fetch_instruments()
        client.reserve_block(STUDY, "KE", "RA1")
        uuid = new_interview(client, rng)
        world.setup.cli("devices", "revoke", client.device_id)
        with pytest.raises(SessionEnded):
            client.push()
        assert client.store.get("refresh_state") == "ended"
        assert [entry.uuid for entry in client.outbox()] == [uuid]
    finally:
        client.close()


# -------------------------------------------------------------------------------- instruments


def test_instruments_are_cached_and_revalidated_with_their_etag(world: World) -> None:
    client = world.tablet(transport=Hooked())
    try:
        assert client.fetch_instruments() == {RA1: "new"}
        definition = client.instrument(RA1)
        assert definition["slug"] == RA1 and client.instrument_version(RA1) == 1
        assert client.fetch_instruments() == {RA1: "not_modified"}  # a 304
        assert client.instrument(RA1, 1) == definition
        sent = client.transport.sent  # type: ignore[attr-defined]
        assert sent[f"GET /api/v1/instruments/{RA1}"] == 2
    finally:
        client.close()


# ------------------------------------------------------------------------------------- blocks


def test_ids_are_minted_offline_from_blocks_and_never_twice(world: World, rng: random.Random) -> None:
    client = world.tablet()
    try:
        client.fetch_instruments()
        block = client.reserve_block(STUDY, "KE", "RA1", size=3)
        assert block.remaining == 3
        numbers = [client.mint_number(STUDY, "KE", "RA1") for _ in range(2)]
        assert numbers == [block.first_number, block.first_number + 1]
        interview = client.new_interview(
            study=STUDY,
            country="KE",
            activity="RA1",
            instrument=RA1,
            participants=participants(2),
            language="en",
            mode="virtual",
            answers=answers(rng, size=2),
            probes_used={"gov_capacity": [3, 1]},
        )
        assert interview.record["probes_used"] == {"gov_capacity": [3, 1]}
        number = block.first_number + 2
        assert interview.pids == [format_pid("RA1", "KE", number, "A"), format_pid("RA1", "KE", number, "B")]
        with pytest.raises(NoNumbersLeft):
            client.mint_number(STUDY, "KE", "RA1")
        report = client.push()
        assert (report.created, report.rejected) == (1, 0)
        with world.engine.connect() as connection:
            stored = connection.execute(
                select(Interview.record).where(Interview.uuid == interview.uuid)
            ).one()
        record = stored.record if isinstance(stored.record, dict) else json.loads(stored.record)
        assert record["probes_used"] == {"gov_capacity": [3, 1]}
    finally:
        client.close()


def test_a_lost_block_answer_adopts_the_block_instead_of_reserving_another(world: World) -> None:
    inner = HttpTransport()

    class LoseBlockAnswers:
        def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Any:
            response = inner.request(method, url, headers, body)
            if method == "POST" and url.endswith("/api/v1/blocks"):
                raise NetworkError("simulated: lost", sent=True)
            return response

    client = world.tablet(transport=LoseBlockAnswers(), retry=RetryPolicy(attempts=2, base=0.01, cap=0.02))
    try:
        block = client.reserve_block(STUDY, "KE", "RA1", size=4)
        with world.engine.connect() as connection:
            stored = connection.execute(
                select(NumberBlock.id, NumberBlock.first_number).where(
                    NumberBlock.device_id == client.device_id
                )
            ).all()
        # The lost reservation was found and adopted rather than repeated.
        assert [row.id for row in stored] == [block.id] and client.blocks() == [block]
        assert block.remaining == 4
    finally:
        client.close()


# ---------------------------------------------------------------------------- push and pull


def test_push_deletes_only_on_matching_receipts_and_pull_brings_other_records(
    world: World, rng: random.Random
) -> None:
    first, second = world.tablet(), world.tablet()
    try:
        for client in (first, second):
            client.fetch_instruments()
            client.reserve_block(STUDY, "KE", "RA1")
        uuids = [new_interview(first, rng) for _ in range(5)]
        first.edit(uuids[0], notes="edited before the first push")  # collapses into the unsent change
        report = first.push(batch_size=2)
        assert (report.batches, report.created, report.unmatched) == (3, 5, 0)
        assert first.outbox() == []
        assert {uuid for uuid, _, _ in first.receipts()} == set(uuids)
        assert first.state(uuids[0]).state == "synced" and first.state(uuids[0]).server_revision == 1

        first.edit(uuids[1], notes="second version")
        assert first.push().updated == 1
        assert first.receipts(uuids[1])[-1][1] == 2

        pulled = second.pull(STUDY)
        assert pulled.changes >= 5
        assert second.record(uuids[1]) == first.record(uuids[1])
        assert second.state(uuids[1]).server_revision == 2
        assert second.cursor(STUDY) > 0
        # The registry came too: the participants of each interview.
        registry = second.registry(STUDY, "KE")
        assert all(entry["status"] == "interviewed" for entry in registry)
        pids = {entry["pid"] for entry in registry}
        assert {pid for uuid in uuids for pid in ClientInterview(uuid, first.record(uuid)).pids} <= pids
        # Nothing new: an empty page, the cursor stays.
        cursor = second.cursor(STUDY)
        assert second.pull(STUDY).changes == 0 and second.cursor(STUDY) == cursor
        audit(world.engine, [first], converged=True)
    finally:
        first.close()
        second.close()


def test_an_edit_made_while_a_change_is_in_flight_waits_for_its_receipt(
    world: World, rng: random.Random
) -> None:
    edits: list[str] = []

    def edit_during_send(method: str, path: str, body: bytes | None) -> None:
        if path == "/api/v1/sync" and not edits:
            edits.append("done")
            client.edit(uuid, notes="edited while the first version was on its way")

    client = world.tablet(transport=Hooked(edit_during_send))
    try:
        client.fetch_instruments()
        client.reserve_block(STUDY, "KE", "RA1")
        uuid = new_interview(client, rng)
        report = client.push()
        # The edit was queued behind the in-flight creation, then sent on its receipt's revision.
        assert (report.created, report.updated, report.conflict) == (1, 1, 0)
        assert [revision for _, revision, _ in client.receipts(uuid)] == [1, 2]
        assert client.state(uuid).state == "synced"
        audit(world.engine, [client])
    finally:
        client.close()


def test_a_lost_answer_is_retried_into_the_same_receipt(world: World, rng: random.Random) -> None:
    flaky = Flaky(HttpTransport(), seed=3, refuse=0, lose=1.0, duplicate=0, replay=0)
    client = world.tablet(transport=flaky, retry=RetryPolicy(attempts=3, base=0.01, cap=0.02))
    try:
        flaky.enabled = False
        client.fetch_instruments()
        client.reserve_block(STUDY, "KE", "RA1")
        flaky.enabled = True
        uuid = new_interview(client, rng)
        with pytest.raises(ServerUnavailable):
            client.push()
        assert len(client.outbox()) == 1  # committed on the server, but no receipt: kept
        flaky.enabled = False
        report = client.push()
        assert (report.created, report.unchanged) == (0, 1)
        assert client.receipts(uuid) == [(uuid, 1, client.state(uuid).content_hash)]
        audit(world.engine, [client])
    finally:
        client.close()


def test_a_rejected_change_is_kept_and_can_be_fixed(world: World, rng: random.Random) -> None:
    client = world.tablet()
    try:
        client.fetch_instruments()
        client.reserve_block(STUDY, "KE", "RA1")
        good = new_interview(client, rng)
        bad = new_interview(client, rng)
        client.edit(bad, answers={**client.record(bad)["answers"], "mode": "by pigeon"})
        report = client.push()
        assert (report.created, report.rejected) == (1, 1)
        state = client.state(bad)
        assert state.state == "rejected" and state.errors[0]["code"] == "record_invalid"
        assert any("answers.mode" in error["path"] for error in state.errors[0]["errors"])
        client.edit(bad, answers={**client.record(bad)["answers"], "mode": "in_person"})
        assert client.push().created == 1
        assert client.state(good).state == client.state(bad).state == "synced"
    finally:
        client.close()


def test_a_batch_over_the_server_limit_is_split(world: World, rng: random.Random) -> None:
    client = world.tablet(batch_size=500)
    try:
        client.fetch_instruments()
        client.reserve_block(STUDY, "KE", "RA1", size=100)
        client.reserve_block(STUDY, "KE", "RA1", size=20)
        for _ in range(110):
            new_interview(client, rng)
        report = client.push()
        assert report.created == 110 and client.outbox() == []
    finally:
        client.close()


# ----------------------------------------------------------------------------------- conflicts


def test_two_tablets_editing_one_record_conflict_and_resolve_by_merging(
    world: World, rng: random.Random
) -> None:
    owner, other = world.tablet(), world.tablet()
    try:
        owner.fetch_instruments()
        owner.reserve_block(STUDY, "KE", "RA1")
        uuid = new_interview(owner, rng)
        owner.push()
        other.pull(STUDY)
        assert other.state(uuid).server_revision == 1

        owner.edit(uuid, notes="owner's notes")
        other.edit(uuid, answers={**other.record(uuid)["answers"], "pol_future": "A new law is drafted."})
        assert owner.push().updated == 1
        report = other.push()
        assert report.conflict == 1
        state = other.state(uuid)
        assert state.state == "conflict" and state.server_revision == 2
        assert state.server_record["notes"] == "owner's notes"
        assert state.record["answers"]["pol_future"] == "A new law is drafted."  # kept, flagged
        [conflict] = other.conflicts()
        assert conflict["status"] == "open" and conflict["current"]["revision"] == 2

        # An edit made during the conflict waits; the resolution replaces the queue.
        other.edit(uuid, notes="while in conflict")
        assert other.push().sent == 0
        merged = {**state.server_record, "answers": state.record["answers"]}
        other.resolve(uuid, merged)
        assert other.push().updated == 1
        owner.pull(STUDY)
        assert owner.record(uuid) == merged
        assert other.record(uuid) == merged

        with world.engine.connect() as connection:
            kinds = connection.execute(
                select(InterviewRevision.kind, InterviewRevision.revision).where(
                    InterviewRevision.interview_uuid == uuid
                )
            ).all()
        assert sorted(kinds, key=str) == sorted(
            [("accepted", 1), ("accepted", 2), ("accepted", 3), ("conflict", None)], key=str
        )
        audit(world.engine, [owner, other])
    finally:
        owner.close()
        other.close()


def test_taking_the_servers_version_drops_the_local_change(world: World, rng: random.Random) -> None:
    owner, other = world.tablet(), world.tablet()
    try:
        owner.fetch_instruments()
        owner.reserve_block(STUDY, "KE", "RA1")
        uuid = new_interview(owner, rng)
        owner.push()
        other.pull(STUDY)
        owner.edit(uuid, notes="first")
        other.edit(uuid, notes="second")
        owner.push()
        assert other.push().conflict == 1
        other.resolve(uuid, take_server=True)
        assert other.record(uuid)["notes"] == "first" and other.outbox() == []
        with world.engine.connect() as connection:
            stored = connection.scalar(select(Interview.record).where(Interview.uuid == uuid))
        assert stored["notes"] == "first"
        audit(world.engine, [owner, other])
    finally:
        owner.close()
        other.close()


def staff_token(world: World, username: str) -> str:
    from test_client_support import PASSWORD

    response = HttpTransport().request(
        "POST",
        world.url + "/api/v1/auth/token",
        {"Content-Type": "application/json"},
        json.dumps({"username": username, "password": PASSWORD}).encode(),
    )
    assert response.status == 200, response.body
    return response.json()["access_token"]


def test_a_conflict_a_coordinator_resolves_reaches_the_tablet_by_pull(
    world: World, rng: random.Random
) -> None:
    owner, other = world.tablet(), world.tablet()
    coordinator = world.setup.coordinator(("KE",))
    try:
        owner.fetch_instruments()
        owner.reserve_block(STUDY, "KE", "RA1")
        uuid = new_interview(owner, rng)
        owner.push()
        other.pull(STUDY)
        owner.edit(uuid, notes="owner")
        other.edit(uuid, notes="other")
        owner.push()
        other.push()
        [conflict] = other.conflicts()
        token = staff_token(world, coordinator)
        resolved = HttpTransport().request(
            "POST",
            f"{world.url}/api/v1/conflicts/{conflict['id']}/resolve",
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            json.dumps({"resolution": "take_incoming"}).encode(),
        )
        assert resolved.status == 200, resolved.body
        other.pull(STUDY)
        owner.pull(STUDY)
        # The coordinator took the tablet's version: it is now the current one everywhere.
        assert other.conflicts()[0]["status"] == "resolved"
        assert other.outbox() == [] and other.state(uuid).state == "synced"
        assert other.record(uuid)["notes"] == owner.record(uuid)["notes"] == "other"
        assert other.state(uuid).server_revision == 3
        audit(world.engine, [owner, other])
    finally:
        owner.close()
        other.close()


def test_a_planned_interview_is_recorded_under_its_registered_number(
    world: World, rng: random.Random
) -> None:
    coordinator = world.setup.coordinator(("KE",))
    token = staff_token(world, coordinator)
    planned = HttpTransport().request(
        "POST",
        f"{world.url}/api/v1/studies/{STUDY}/countries/KE/participants",
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        json.dumps(
            {"activity": "RA1", "participants": [{"agency": "Ministry of Justice"}, {"agency": "Police"}]}
        ).encode(),
    )
    assert planned.status == 201, planned.body
    number = planned.json()["interview_number"]
    client = world.tablet()
    try:
        client.fetch_instruments()
        client.pull(STUDY)
        mine = [entry for entry in client.registry(STUDY, "KE") if entry["interview_number"] == number]
        assert [(entry["letter"], entry["status"]) for entry in mine] == [("A", "planned"), ("B", "planned")]
        # No block needed: the registered number is used, and the participants become interviewed.
        uuid = new_interview(client, rng, interview_number=number)
        assert client.push().created == 1
        client.pull(STUDY)
        after = [entry for entry in client.registry(STUDY, "KE") if entry["interview_number"] == number]
        assert {entry["status"] for entry in after} >= {"interviewed"}
        assert client.state(uuid).state == "synced"
    finally:
        client.close()


def test_after_a_brand_new_enrolment_the_old_devices_numbers_are_refused_and_kept(
    world: World, rng: random.Random
) -> None:
    """Why a tablet whose session ended is re-enrolled (below) rather than enrolled anew."""
    username = world.setup.fieldworker()
    client = world.tablet(user=username)
    try:
        client.fetch_instruments()
        client.reserve_block(STUDY, "KE", "RA1")
        uuid = new_interview(client, rng)  # minted offline from the first device's block
        client.store.set(refresh_state="in_doubt")  # as after a lost refresh answer
        with pytest.raises(RefreshInDoubt):
            client.push()
        client.activate(world.setup.enrol(username))  # a new enrolment: a new device id
        assert client.blocks() == []  # the old device's blocks are not usable any more
        report = client.push()
        # The server accepts new numbers only from the pushing device's own blocks, so the
        # interview minted before is refused; the client keeps it for a coordinator to settle.
        assert report.rejected == 1
        [entry] = client.outbox()
        assert entry.uuid == uuid and entry.error["code"] == "interview_number_refused"
    finally:
        client.close()


def device_sessions(world: World, device_id: str) -> list[Any]:
    with world.engine.connect() as connection:
        return connection.execute(
            select(AuthSession.id, AuthSession.revoked_at, AuthSession.revoked_reason).where(
                AuthSession.device_id == device_id
            )
        ).all()


def test_after_a_lost_refresh_the_same_device_is_reenrolled_and_every_interview_accepted(
    world: World, rng: random.Random
) -> None:
    inner = HttpTransport()

    class LoseRefresh:
        enabled = False

        def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Any:
            response = inner.request(method, url, headers, body)
            if self.enabled and url.endswith("/api/v1/auth/refresh"):
                raise NetworkError("simulated: the refresh answer was lost", sent=True)
            return response

    lose = LoseRefresh()
    username = world.setup.fieldworker()
    coordinator = world.setup.coordinator(("KE",))
    client = world.tablet(user=username, transport=lose)
    try:
        device_id = client.device_id
        client.fetch_instruments()
        block = client.reserve_block(STUDY, "KE", "RA1", size=10)
        synced = new_interview(client, rng)
        assert client.push().created == 1
        # Offline: new interviews minted from the device's block, and an edit of a synced one.
        pending = [new_interview(client, rng) for _ in range(4)]
        client.edit(synced, notes="edited offline")
        # The refresh reaches the server, which rotates the token; the answer is lost.
        lose.enabled = True
        client.store.set(access_expires_at="0")
        with pytest.raises(RefreshInDoubt):
            client.push()
        assert client.store.get("refresh_state") == "in_doubt"
        assert len(client.outbox()) == 5
        before = device_sessions(world, device_id)
        assert [row.revoked_at for row in before] == [None]  # the server's copy of it is live

        # A coordinator re-enrols the same device; the tablet activates the code.
        token = staff_token(world, coordinator)
        answer = HttpTransport().request(
            "POST",
            f"{world.url}/api/v1/devices/{device_id}/enrolment",
            {"Authorization": f"Bearer {token}"},
            None,
        )
        assert answer.status == 200, answer.body
        assert answer.header("cache-control") == "no-store"
        lose.enabled = False
        assert client.activate(answer.json()["enrolment_code"]) == device_id
        assert client.device_id == device_id and client.store.get("refresh_state") == "ok"
        assert client.store.get("previous_device_id") is None
        assert [b.id for b in client.blocks()] == [block.id] and len(client.outbox()) == 5

        # The old session (and the refresh token only the server saw) is ended; one session is live.
        sessions = device_sessions(world, device_id)
        assert {row.revoked_reason for row in sessions if row.revoked_at is not None} == {
            "device re-enrolled"
        }
        assert len([row for row in sessions if row.revoked_at is None]) == 1 and len(sessions) == 2

        report = client.push()
        assert (report.created, report.updated, report.rejected, report.conflict) == (4, 1, 0, 0)
        assert client.outbox() == []
        assert all(client.state(uuid).state == "synced" for uuid in [synced, *pending])
        # The block is still the device's own: the rest of its numbers are minted and accepted.
        later = new_interview(client, rng)
        assert client.push().created == 1
        numbers = {client.record(uuid)["interview_number"] for uuid in [synced, *pending, later]}
        assert numbers == set(range(block.first_number, block.first_number + 6))

        # Every record is on the server, once, as the tablet holds it.
        counts = audit(world.engine, [client], converged=True)
        with world.engine.connect() as connection:
            stored = connection.execute(
                select(Interview.uuid).where(Interview.uuid.in_([synced, *pending, later]))
            ).all()
        assert sorted(row.uuid for row in stored) == sorted([synced, *pending, later])
        assert counts["receipts"] >= 7
        batches = [e.details for e in world.events("sync.batch") if e.details.get("device") == device_id]
        assert len(batches) >= 3
        assert sum(details["counts"].get("rejected", 0) for details in batches) == 0
        reenrolments = [e for e in world.events("device.reenrol") if e.target == device_id]
        assert [(e.actor, e.outcome) for e in reenrolments] == [(coordinator, "success")]
    finally:
        client.close()


def test_a_tablet_whose_session_ended_is_reenrolled_from_the_command_line(
    world: World, rng: random.Random
) -> None:
    username = world.setup.fieldworker()
    client = world.tablet(user=username)
    path = client.store.path
    try:
        device_id = client.device_id
        client.fetch_instruments()
        client.reserve_block(STUDY, "KE", "RA1", size=3)
        uuids = [new_interview(client, rng) for _ in range(3)]
        # The app died while a refresh was on its way: on the next start it is in doubt.
        client.store.set(refresh_state="in_flight")
    finally:
        client.close()
    client = Client(path, retry=RetryPolicy(attempts=3, base=0.01, cap=0.02))
    try:
        with pytest.raises(RefreshInDoubt):
            client.push()
        assert client.activate(world.setup.reenrol(device_id)) == device_id
        report = client.push()
        assert (report.created, report.rejected) == (3, 0)
        audit(world.engine, [client], converged=True)
        assert {uuid for uuid, _, _ in client.receipts()} == set(uuids)
    finally:
        client.close()
