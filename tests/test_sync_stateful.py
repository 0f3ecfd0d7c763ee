"""A stateful property test of the sync protocol over a flaky network.

Three tablets create and edit interview records (some of them the same records, learnt by pulling),
while the network duplicates requests, delivers them in any order, and loses responses after the
server committed (so the tablet sends the same changes again). The tablets follow docs/sync.md: a
change is resent unchanged until a result arrives; the next edit of that record is sent only after
the receipt, based on the receipt's revision; a conflict answer brings the current record.

Invariants, after every step and at the end once the network has drained:
- every change the server acknowledged is stored, with the receipt's revision and content hash, as
  an accepted revision (current or in history), or as the conflict revision the answer named;
- every change a tablet ever sent and got an answer for is stored; at the end, every edit is;
- no UUID or interview exists twice; each record's accepted revisions are 1..n without gaps, and
  the record holds revision n.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import webtest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_sync_support import SyncWorld, Tablet, make_record, new_uuid

from surveykit.studies import feed
from surveykit.sync.models import Interview, InterviewRevision
from surveykit.sync.validation import content_hash

TABLETS = 3
# Few records, so that the tablets keep editing the same ones.
MAX_RECORDS = 3


@dataclass
class Change:
    uuid: str
    base: int
    record: dict[str, Any]

    @property
    def hash(self) -> str:
        return content_hash(self.record)

    def body(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "base_revision": self.base, "record": self.record}


@dataclass
class Local:
    """A tablet's copy of one record: the last content it knows, its base, and what awaits sending."""

    content: dict[str, Any]
    base: int
    in_flight: Change | None = None
    dirty: bool = False  # edited while a change was in flight: send once the receipt arrives


@dataclass
class Device:
    tablet: Tablet
    cursor: int
    records: dict[str, Local] = field(default_factory=dict)
    edits: int = 0


class SyncProtocol(RuleBasedStateMachine):
    def __init__(
        self, testapp: webtest.TestApp, dbsession: Session, world: SyncWorld, tablets: list[Tablet]
    ) -> None:
        super().__init__()
        self.testapp = testapp
        self.session = dbsession
        self.world = world
        for tablet in tablets:
            tablet.renew()
        top = feed.current_sequence(dbsession, world.study.id)
        self.devices = [Device(tablet, top) for tablet in tablets]
        self.network: list[tuple[int, list[Change]]] = []
        self.uuids: set[str] = set()
        # What the server answered, per change: (uuid, hash) -> ("accepted", revision) or ("conflict", id)
        self.acknowledged: dict[tuple[str, str], tuple[str, int]] = {}
        self.sent: set[tuple[str, str]] = set()
        self.every_edit: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------------------- tablets

    def _queue(self, device: Device, uuid: str) -> None:
        local = device.records[uuid]
        local.in_flight = Change(uuid, local.base, local.content)
        local.dirty = False
        self.every_edit.add((uuid, local.in_flight.hash))

    @initialize()
    def a_record_every_tablet_knows(self) -> None:
        self.create(0)
        self.send(0)
        self._deliver(*self.network.pop(), lose_answer=False)
        for who in range(TABLETS):
            self.pull(who)

    @precondition(lambda self: len(self.uuids) < MAX_RECORDS)
    @rule(who=st.integers(0, TABLETS - 1))
    def create(self, who: int) -> None:
        device = self.devices[who]
        uuid = new_uuid()
        record = make_record(device.tablet.mint(), notes=f"created by tablet {who}")
        device.records[uuid] = Local(record, 0)
        self.uuids.add(uuid)
        self._queue(device, uuid)

    @precondition(lambda self: any(device.records for device in self.devices))
    @rule(who=st.integers(0, TABLETS - 1), pick=st.integers(0, 10**6))
    def edit(self, who: int, pick: int) -> None:
        device = self.devices[who]
        if not device.records:
            return
        uuid = sorted(device.records)[pick % len(device.records)]
        local = device.records[uuid]
        device.edits += 1
        local.content = json.loads(json.dumps(local.content))
        local.content["notes"] = f"edit {device.edits} by tablet {who}"
        local.content["answers"]["people"] = device.edits % 11
        if local.in_flight is None:
            self._queue(device, uuid)
        else:
            local.dirty = True

    @rule(who=st.integers(0, TABLETS - 1))
    def send(self, who: int) -> None:
        """The tablet sends every change that has no answer yet (again, if it was sent before)."""
        device = self.devices[who]
        changes = [local.in_flight for local in device.records.values() if local.in_flight is not None]
        if changes:
            self.network.append((who, changes))

    @precondition(lambda self: bool(self.network))
    @rule(pick=st.integers(0, 10**6))
    def duplicate(self, pick: int) -> None:
        self.network.append(self.network[pick % len(self.network)])

    @precondition(lambda self: bool(self.network))
    @rule(pick=st.integers(0, 10**6), lose_answer=st.booleans())
    def deliver(self, pick: int, lose_answer: bool) -> None:
        """Any waiting request reaches the server; its answer may be lost after the commit."""
        who, changes = self.network.pop(pick % len(self.network))
        self._deliver(who, changes, lose_answer)

    def _deliver(self, who: int, changes: list[Change], lose_answer: bool) -> None:
        device = self.devices[who]
        response = device.tablet.push(self.testapp, [change.body() for change in changes])
        for change, result in zip(changes, response.json["results"], strict=True):
            assert result["result"] != "rejected", result
            assert (result["uuid"], result["content_hash"]) == (change.uuid, change.hash)
            self.sent.add((change.uuid, change.hash))
            if result["result"] == "conflict":
                answer = ("conflict", result["conflict_id"])
            else:
                answer = ("accepted", result["revision"])
            known = self.acknowledged.setdefault((change.uuid, change.hash), answer)
            assert known == answer, (known, answer)  # the same change always gets the same answer
            if not lose_answer:
                self._receive(device, change, result)

    def _receive(self, device: Device, change: Change, result: dict[str, Any]) -> None:
        local = device.records[change.uuid]
        if local.in_flight is None or local.in_flight.hash != change.hash:
            return  # an answer to a duplicate already dealt with
        local.in_flight = None
        if result["result"] == "conflict":
            # The server kept this tablet's version as a conflict; continue from the current one,
            # carrying any edit made meanwhile over onto it.
            current = result["current"]
            local.base = current["revision"]
            if not local.dirty:
                local.content = current["record"]
        else:
            local.base = max(local.base, result["revision"])
        if local.dirty:
            self._queue(device, change.uuid)

    @rule(who=st.integers(0, TABLETS - 1))
    def pull(self, who: int) -> None:
        """The tablet learns the current records (also other tablets' ones) from the feed."""
        device = self.devices[who]
        while True:
            page = self.testapp.get(
                f"/api/v1/sync/changes?study=ocsea&cursor={device.cursor}&limit=50",
                headers=device.tablet.headers,
            ).json
            for entry in page["changes"]:
                if entry["kind"] != "interview" or entry["key"] not in self.uuids:
                    continue
                current = entry["object"]
                local = device.records.get(entry["key"])
                if local is None:
                    device.records[entry["key"]] = Local(current["record"], current["revision"])
                elif local.in_flight is None and not local.dirty and current["revision"] >= local.base:
                    local.content, local.base = current["record"], current["revision"]
            device.cursor = page["next_cursor"]
            if not page["has_more"]:
                return

    # ---------------------------------------------------------------------------- invariants

    def _stored(self) -> tuple[dict[str, Interview], list[InterviewRevision]]:
        self.session.expire_all()
        uuids = sorted(self.uuids)
        interviews = {
            i.uuid: i for i in self.session.scalars(select(Interview).where(Interview.uuid.in_(uuids)))
        }
        revisions = list(
            self.session.scalars(select(InterviewRevision).where(InterviewRevision.interview_uuid.in_(uuids)))
        )
        return interviews, revisions

    @invariant()
    def nothing_acknowledged_is_lost_and_history_has_no_gaps(self) -> None:
        if not self.uuids:
            return
        interviews, revisions = self._stored()
        accepted: dict[str, dict[int, InterviewRevision]] = {}
        conflicts: dict[int, InterviewRevision] = {}
        for revision in revisions:
            if revision.kind == "accepted":
                assert revision.revision not in accepted.setdefault(revision.interview_uuid, {})
                accepted[revision.interview_uuid][revision.revision] = revision
            else:
                conflicts[revision.id] = revision
        for (uuid, digest), (kind, number) in self.acknowledged.items():
            if kind == "accepted":
                stored = accepted[uuid][number]
                assert stored.content_hash == digest
            else:
                assert (conflicts[number].interview_uuid, conflicts[number].content_hash) == (uuid, digest)
        for uuid, interview in interviews.items():
            numbers = sorted(accepted[uuid])
            assert numbers == list(range(1, len(numbers) + 1))
            assert interview.revision == numbers[-1]
            assert interview.content_hash == accepted[uuid][numbers[-1]].content_hash
        stored_changes = {(r.interview_uuid, r.content_hash) for r in revisions}
        assert self.sent <= stored_changes
        # One record per UUID and per interview number.
        numbers = self.session.execute(
            select(Interview.interview_number, func.count())
            .where(Interview.uuid.in_(sorted(self.uuids)))
            .group_by(Interview.interview_number)
        ).all()
        assert all(count == 1 for _, count in numbers)

    def teardown(self) -> None:
        """Drain the network, then let every tablet resend until every change has its answer."""
        for _round in range(20):
            while self.network:
                who, changes = self.network.pop(0)
                self._deliver(who, changes, lose_answer=False)
            waiting = False
            for who, device in enumerate(self.devices):
                changes = [
                    local.in_flight for local in device.records.values() if local.in_flight is not None
                ]
                if changes:
                    waiting = True
                    self._deliver(who, changes, lose_answer=False)
            if not waiting:
                break
        assert all(local.in_flight is None for device in self.devices for local in device.records.values())
        self.nothing_acknowledged_is_lost_and_history_has_no_gaps()
        _, revisions = self._stored()
        assert self.every_edit <= {(r.interview_uuid, r.content_hash) for r in revisions}


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


def test_sync_over_a_flaky_network_loses_nothing_and_duplicates_nothing(
    testapp: webtest.TestApp, dbsession: Session, world: SyncWorld
) -> None:
    tablets = [world.tablet(["KE"]) for _ in range(TABLETS)]
    run_state_machine_as_test(
        lambda: SyncProtocol(testapp, dbsession, world, tablets),
        settings=settings(
            max_examples=8,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
        ),
    )
