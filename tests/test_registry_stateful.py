"""A stateful property test of registry field ownership, with the reference client as the tablet.

A coordinator corrects a participant's agency and position through the API, resolves field
conflicts either way; the tablet (``surveykit.client``, talking to the app in-process) edits the
same fields in its copy of the record, pushes, pulls (which brings registry changes back into its
copy), and old requests are replayed. Every change of the registry's value is checked against the
choices made so far: the registry never ends in a value that nobody chose last with knowledge of
the value it replaced. And no pushed value is dropped: each value an accepted revision carried was
the registry's at some point, or is kept as a field conflict.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_registry_truth import BOUND_SLUG, bound_definition, bound_record
from test_sync_support import STUDY, SyncWorld, post_json

from surveykit.accounts import services as account_services
from surveykit.client import Client, RetryPolicy
from surveykit.client.http import Response
from surveykit.instruments import services as instruments
from surveykit.participants.models import Participant
from surveykit.sync.models import FieldConflict, InterviewRevision

URL = "http://tablet.test"
FIELDS = ("agency", "position")
VALUES = {
    "agency": ("Ministry of ICT", "Ministry of ICT and Innovation", "Communications Authority"),
    "position": (None, "Director of Cyber Security", "Legal Adviser"),
}


class InProcess:
    """The client's transport, answered by the app in this test's transaction; keeps what was sent."""

    def __init__(self, testapp: webtest.TestApp) -> None:
        self.testapp = testapp
        self.pushes: list[tuple[dict[str, str], bytes]] = []

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        answer = self.testapp.request(
            path, method=method, headers=headers, body=body or b"", expect_errors=True
        )
        if method == "POST" and parts.path == "/api/v1/sync" and body:
            self.pushes.append((dict(headers), body))
        return Response(answer.status_int, {k.lower(): v for k, v in answer.headers.items()}, answer.body)


@dataclass
class Choice:
    field: str
    value: Any
    # The registry values the chooser knew it replaced.
    knew: frozenset[Any]
    who: str


class RegistryOwnership(RuleBasedStateMachine):
    def __init__(self, testapp: webtest.TestApp, dbsession: Session, world: SyncWorld, root: Path) -> None:
        super().__init__()
        self.testapp = testapp
        self.session = dbsession
        self.world = world
        self.root = root
        self.coordinator = world.staff("coordinator", ["KE"])
        self.choices: list[Choice] = []
        self.transport = InProcess(testapp)

    @initialize()
    def a_planned_interview_the_tablet_records(self) -> None:
        self.number = self.world.register("KE")
        self.pid = f"RA1-KE-{self.number:02d}-A"
        participant = self._participant()
        participant.agency = "Ministry of ICT"
        self.session.flush()
        owner = self.world.accounts.user(None, "fieldworker", STUDY, ["KE"])
        _, code = account_services.enrol_device(
            self.session, owner, "tablet", "tests", self.world.accounts.policy
        )
        self.session.flush()
        self.client = Client(
            Path(tempfile.mkdtemp(dir=self.root)) / "tablet.sqlite3",
            URL,
            transport=self.transport,
            retry=RetryPolicy(attempts=1, base=0.0, cap=0.0),
            sleep=lambda seconds: None,
        )
        self.client.activate(code)
        self.client.fetch_instruments()
        self.client.pull(STUDY)
        record = bound_record(self.number)
        record["participants"][0]["agency"] = "Ministry of ICT"
        record["answers"]["agency"] = "Ministry of ICT"
        self.uuid = self.client.create(record)
        assert self.client.push().created == 1
        self.seen = {name: [getattr(self._participant(), name)] for name in FIELDS}
        self.values_held = {name: set(values) for name, values in self.seen.items()}

    def teardown(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()

    def _participant(self) -> Participant:
        self.session.expire_all()
        participant = self.session.scalar(
            select(Participant).where(
                Participant.study_id == self.world.study.id, Participant.pid == self.pid
            )
        )
        assert participant is not None
        return participant

    # ------------------------------------------------------------------------------- the coordinator

    @rule(name=st.sampled_from(FIELDS), pick=st.integers(0, 2))
    def coordinator_corrects(self, name: str, pick: int) -> None:
        value = VALUES[name][pick]
        if name == "agency" and value is None:
            return
        before = getattr(self._participant(), name)
        answer = self.testapp.patch_json(
            f"/api/v1/studies/{STUDY}/participants/{self.pid}", {name: value}, headers=self.coordinator
        )
        assert answer.status_int == 200
        self.choices.append(Choice(name, value, frozenset({before}), "coordinator"))

    @rule(take=st.booleans())
    def coordinator_resolves_a_field_conflict(self, take: bool) -> None:
        listed = self.testapp.get(
            f"/api/v1/field-conflicts?study={STUDY}&country=KE", headers=self.coordinator
        ).json["field_conflicts"]
        mine = [c for c in listed if c["pid"] == self.pid]
        if not mine:
            return
        conflict = mine[0]
        resolution = "take_incoming" if take else "keep_current"
        post_json(
            self.testapp,
            f"/api/v1/field-conflicts/{conflict['id']}/resolve",
            {"resolution": resolution},
            self.coordinator,
            200,
        )
        if take:
            self.choices.append(
                Choice(
                    conflict["field"], conflict["incoming"], frozenset({conflict["registry"]}), "coordinator"
                )
            )

    # ------------------------------------------------------------------------------------ the tablet

    @rule(name=st.sampled_from(FIELDS), pick=st.integers(0, 2))
    def tablet_edits(self, name: str, pick: int) -> None:
        value = VALUES[name][pick]
        if name == "agency" and value is None:
            return
        record = copy.deepcopy(self.client.record(self.uuid))
        if record["participants"][0].get(name) == value:
            return
        # What the tablet knows the registry holds: the entry it pulled, and its copy of the record
        # as the server last acknowledged it.
        knew = {record["participants"][0].get(name)}
        for entry in self.client.registry(STUDY, "KE"):
            if entry["pid"] == self.pid:
                knew.add(entry[name])
        server = self.client.state(self.uuid).server_record
        if server is not None:
            knew.add(server["participants"][0].get(name))
        record["participants"][0][name] = value
        record["answers"][name] = value
        self.client.edit(self.uuid, record)
        self.choices.append(Choice(name, value, frozenset(knew), "tablet"))

    @rule(n=st.integers(0, 3))
    def tablet_writes_notes(self, n: int) -> None:
        """An edit of something else, as in issue 12's reproduction: the fields go along unchanged."""
        self.client.edit(self.uuid, notes=f"note {n}")

    @rule()
    def tablet_pushes(self) -> None:
        self.client.push()

    @rule()
    def tablet_pulls(self) -> None:
        self.client.pull(STUDY)

    @precondition(lambda self: bool(getattr(self, "transport", None) and self.transport.pushes))
    @rule(pick=st.integers(0, 10**6))
    def an_old_push_is_replayed(self, pick: int) -> None:
        headers, body = self.transport.pushes[pick % len(self.transport.pushes)]
        answer = self.testapp.post("/api/v1/sync", body, headers=headers, expect_errors=True)
        assert answer.status_int == 200

    # ----------------------------------------------------------------------------------- invariants

    @invariant()
    def every_registry_change_was_chosen_knowing_the_value_it_replaced(self) -> None:
        if not hasattr(self, "seen"):
            return
        participant = self._participant()
        for name in FIELDS:
            now, before = getattr(participant, name), self.seen[name][-1]
            if now == before:
                continue
            justified = [c for c in self.choices if c.field == name and c.value == now and before in c.knew]
            assert justified, f"{name} went from {before!r} to {now!r}, which nobody chose knowing {before!r}"
            self.choices.remove(justified[-1])
            self.seen[name].append(now)
            self.values_held[name].add(now)

    @invariant()
    def no_pushed_value_is_dropped(self) -> None:
        if not hasattr(self, "seen"):
            return
        self.session.expire_all()
        revisions = self.session.scalars(
            select(InterviewRevision).where(
                InterviewRevision.interview_uuid == self.uuid, InterviewRevision.kind == "accepted"
            )
        ).all()
        kept = self.session.execute(
            select(FieldConflict.field, FieldConflict.incoming_value)
            .join(Participant, Participant.id == FieldConflict.participant_id)
            .where(Participant.pid == self.pid, Participant.study_id == self.world.study.id)
        ).all()
        for revision in revisions:
            sent = revision.record["participants"][0]
            for name in FIELDS:
                assert sent.get(name) in self.values_held[name] or (name, sent.get(name)) in kept, (
                    f"revision {revision.revision}'s {name} {sent.get(name)!r} was neither applied nor kept"
                )


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    world = SyncWorld(accounts, dbsession)
    if instruments.instrument_study(dbsession, BOUND_SLUG) == (False, None):
        instruments.publish(dbsession, instruments.validate_definition(bound_definition()))
        dbsession.flush()
    return world


def test_the_registry_never_ends_in_a_value_nobody_chose_knowing_the_previous_one(
    testapp: webtest.TestApp, dbsession: Session, world: SyncWorld, tmp_path: Path
) -> None:
    run_state_machine_as_test(
        lambda: RegistryOwnership(testapp, dbsession, world, tmp_path),
        settings=settings(
            max_examples=20,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
        ),
    )
