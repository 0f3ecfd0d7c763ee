"""Codings, codebook changes and sync pushes at the same time, on a real database (committing, two
sessions): a coding is never left on an older revision's offsets nor on a code just merged, and an
analyst editing the codebook does not hold up the study's pushes.

Each race is forced in one order: the first transaction does its work and stays open, the second
starts in a thread, and the first commits once the second waits for a lock (PostgreSQL: seen in
``pg_stat_activity``; SQLite: the second queues for the write lock) or has finished. The outcome is
then checked: what the second did must be judged against what the first committed.
"""

from __future__ import annotations

import threading
import time
import uuid as uuid_module
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import webtest
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from support_db import Accounts, CommittingApp, settings_for
from test_sync_support import STUDY, SyncWorld, change, make_record, new_uuid

from surveykit.accounts.identity import device_grants
from surveykit.accounts.models import Device, User
from surveykit.analysis import codebook, refi_read, refi_write
from surveykit.analysis import coding as coding_services
from surveykit.analysis import refi_model as refi
from surveykit.analysis.models import Code, Coding
from surveykit.db import begin_write
from surveykit.studies.models import Study
from surveykit.sync.callers import Caller
from surveykit.sync.models import Interview
from surveykit.sync.push import push_batch

KE = f"/api/v1/studies/{STUDY}/countries/KE"
DETAILS = make_record(1)["answers"]["details"]
POLICE = DETAILS.index("police officers")
REVISED = "No training."  # revision 2 of the answer: "police officers" is gone, and the text shorter


class RaceServer(CommittingApp):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        with self.factory() as session:
            accounts = Accounts(session, settings)
            world = SyncWorld(accounts, session)
            tablet = world.tablet(["KE"])
            self.numbers = list(tablet.numbers["KE"])
            self.device_id = tablet.device.id
            analyst = accounts.user("ana", "analyst", STUDY, ["KE"])
            self.analyst_id = analyst.id
            self.analyst = {"Authorization": f"Bearer {accounts.token(analyst)}"}
            self.study_id = world.study.id
            self.codes = {}
            for name in ("Capacity", "Training"):
                code, _ = codebook.create_code(session, world.study, "tests", name=name)
                self.codes[name] = code.id
            session.commit()
        self.client = webtest.TestApp(self.app, extra_environ={"HTTP_HOST": "surveykit.test"})

    def caller(self, session: Session) -> Caller:
        device = session.get(Device, self.device_id)
        owner = session.get(User, device.user_id)
        return Caller(owner.id, owner.username, device.id, device_grants(session, device))

    def study(self, session: Session) -> Study:
        return session.get(Study, self.study_id)

    def push(self, session: Session, uuid: str, base: int, record: dict[str, Any]) -> str:
        if not session.in_transaction():
            begin_write(session)
        outcome = push_batch(session, self.caller(session), [change(uuid, base, record)])
        return outcome.as_json()["results"][0]["result"]

    def interview(self) -> tuple[str, dict[str, Any]]:
        """A stored interview (revision 1) and its record."""
        uuid, record = new_uuid(), make_record(self.numbers.pop(0))
        with self.factory() as session:
            assert self.push(session, uuid, 0, record) == "created"
            session.commit()
        return uuid, record

    def while_open(self, first: Session, second: Callable[[], Any]) -> Any:
        """Run ``second`` in a thread while ``first`` stays open; commit ``first`` once ``second``
        waits for a lock or is done; ``second``'s result."""
        answer: list[Any] = []
        thread = threading.Thread(target=lambda: answer.append(second()))
        thread.start()
        try:
            self._wait_for_lock_or_end(thread)
            first.commit()
        finally:
            first.close()
            thread.join(60)
        assert answer, "the second transaction did not finish"
        return answer[0]

    def _wait_for_lock_or_end(self, thread: threading.Thread) -> None:
        if self.engine.dialect.name != "postgresql":
            thread.join(0.5)  # the request's BEGIN IMMEDIATE waits for the write lock (busy_timeout)
            return
        deadline = time.monotonic() + 30
        while thread.is_alive() and time.monotonic() < deadline:
            with self.engine.connect() as connection:
                waiting = connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    )
                )
            if waiting:
                return
            time.sleep(0.02)

    def codings(self) -> list[Coding]:
        with self.factory() as session:
            return list(session.scalars(select(Coding).order_by(Coding.id)))


@pytest.fixture
def server(fresh_database: Callable[[], str], tmp_path: Path) -> Iterator[RaceServer]:
    server = RaceServer(settings_for(fresh_database(), tmp_path))
    yield server
    server.engine.dispose()


def _police_officers(server: RaceServer, uuid: str) -> dict[str, Any]:
    """A coding of "police officers" in the interview's details answer, with the Capacity code."""
    return {
        "interview_uuid": uuid,
        "question_id": "details",
        "start": POLICE,
        "end": POLICE + len("police officers"),
        "code_id": server.codes["Capacity"],
    }


def _revised(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "answers": {**record["answers"], "details": REVISED}, "quotes": []}


def test_a_coding_made_while_a_new_revision_is_pushed_is_judged_against_the_new_revision(
    server: RaceServer,
) -> None:
    uuid, record = server.interview()
    pushing = server.factory()
    assert server.push(pushing, uuid, 1, _revised(record)) == "updated"  # re-anchored nothing yet
    body = _police_officers(server, uuid)
    answer = server.while_open(
        pushing,
        lambda: server.client.post_json(f"{KE}/codings", body, headers=server.analyst, expect_errors=True),
    )
    # Offsets into revision 1 lie outside revision 2's shorter answer: refused, nothing stored (a
    # coding stored "current" on revision 1 would now point at text it does not hold).
    assert answer.status_int == 422, answer.text
    assert [detail["path"] for detail in answer.json["details"]] == ["end"]
    assert server.codings() == []


def test_a_coding_re_placed_while_a_new_revision_is_pushed_holds_the_new_revisions_text(
    server: RaceServer,
) -> None:
    uuid, record = server.interview()
    body = _police_officers(server, uuid)
    created = server.client.post_json(f"{KE}/codings", body, headers=server.analyst).json
    pushing = server.factory()
    assert server.push(pushing, uuid, 1, _revised(record)) == "updated"  # the coding vanished
    answer = server.while_open(
        pushing,
        lambda: server.client.patch_json(
            f"{KE}/codings/{created['id']}",
            {"start": 0, "end": 8},
            headers=server.analyst,
            expect_errors=True,
        ),
    )
    assert answer.status_int == 200, answer.text
    [coding] = server.codings()
    assert (coding.text, coding.start_offset, coding.end_offset) == (REVISED[0:8], 0, 8)
    assert (coding.anchor, coding.anchored_revision) == ("current", 2)


def test_a_coding_made_while_its_code_is_merged_is_refused(server: RaceServer) -> None:
    uuid, _record = server.interview()
    merging = server.factory()
    study = server.study(merging)
    codebook.lock_codebook(merging, study)
    source = codebook.get_code(merging, study, server.codes["Training"], for_update=True)
    codebook.merge_code(merging, study, source, server.codes["Capacity"], None)
    body = {"interview_uuid": uuid, "question_id": "details", "start": 0, "end": 8}
    answer = server.while_open(
        merging,
        lambda: server.client.post_json(
            f"{KE}/codings",
            {**body, "code_id": server.codes["Training"]},
            headers=server.analyst,
            expect_errors=True,
        ),
    )
    assert answer.status_int == 422, answer.text
    assert [detail["path"] for detail in answer.json["details"]] == ["code_id"]
    assert "merged" in answer.json["message"]
    assert server.codings() == []


def test_a_code_changed_while_the_coding_is_made_keeps_the_coding_with_it(server: RaceServer) -> None:
    """The other order: the coding commits first, the merge then moves it to the target."""
    uuid, _record = server.interview()
    coding_session = server.factory()
    begin_write(coding_session)
    made = coding_services.create_coding(
        coding_session,
        server.study(coding_session),
        "KE",
        coding_services.Coder(server.analyst_id, "ana"),
        coding_services.Passage(uuid, "details", 0, 8),
        server.codes["Training"],
    )

    def merge() -> int:
        with server.factory() as merging:
            begin_write(merging)
            merge_study = server.study(merging)
            codebook.lock_codebook(merging, merge_study)
            source = codebook.get_code(merging, merge_study, server.codes["Training"], for_update=True)
            changes = codebook.merge_code(merging, merge_study, source, server.codes["Capacity"], None)
            merging.commit()
            return changes[0].details["codings_moved"]

    assert server.while_open(coding_session, merge) == 1
    [coding] = server.codings()
    assert (coding.id, coding.code_id, coding.original_code_id) == (
        made.id,
        server.codes["Capacity"],
        server.codes["Training"],
    )


def test_a_push_goes_through_while_the_codebook_is_being_edited(server: RaceServer) -> None:
    """The codebook's lock (on the study's row) leaves the row's key to the push's foreign keys."""
    uuid, record = server.interview()
    editing = server.factory()
    codebook.lock_codebook(editing, server.study(editing))
    try:
        with server.factory() as pushing:
            if server.engine.dialect.name == "postgresql":
                pushing.execute(text("SET LOCAL lock_timeout = '2s'"))
            assert server.push(pushing, new_uuid(), 0, make_record(server.numbers.pop(0))) == "created"
            assert server.push(pushing, uuid, 1, _revised(record)) == "updated"
            pushing.commit()
    finally:
        editing.rollback()
        editing.close()
    with server.factory() as session:
        assert session.get(Interview, uuid).revision == 2


def test_codings_imported_while_a_new_revision_is_pushed_are_judged_against_the_new_revision(
    server: RaceServer,
) -> None:
    uuid, record = server.interview()
    url = f"{KE}/analysis.qdpx"
    project = refi_read.read_qdpx(server.client.get(url, headers=server.analyst).body)
    [details] = [source for source in project.sources if source.name.endswith("details")]
    with server.factory() as session:
        capacity = session.get(Code, server.codes["Capacity"]).guid
    selection = refi.Selection(
        str(uuid_module.uuid4()).upper(),
        POLICE,
        POLICE + len("police officers"),
        codings=[refi.Coding(str(uuid_module.uuid4()), capacity)],
    )
    details.selections.append(selection)
    upload = refi_write.qdpx_bytes(project)
    pushing = server.factory()
    assert server.push(pushing, uuid, 1, _revised(record)) == "updated"
    answer = server.while_open(
        pushing,
        lambda: server.client.post(
            url, upload, headers={**server.analyst, "Content-Type": "application/zip"}, expect_errors=True
        ),
    )
    # The project's text is revision 1's: refused once revision 2 is the current one.
    assert answer.status_int == 422, answer.text
    assert "differs from the current answer (revision 2)" in answer.text
    assert server.codings() == []
