"""Conflict review: two versions compared field by field, merged by choice, resolved through the
resolution service, and the revision history that results."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.orm import Session
from test_sync_support import SyncWorld, change, make_record, new_uuid

from surveykit.accounts.identity import GrantScope
from surveykit.console.conflicts import problem_fields
from surveykit.sync import review, services
from surveykit.sync.models import Interview


def _copy(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    copied = json.loads(json.dumps(record))
    copied.update(fields)
    return copied


def test_compare_lists_every_field_and_marks_the_differences() -> None:
    current = make_record(4)
    incoming = _copy(current, notes="other notes", mode="phone")
    incoming["answers"]["people"] = 5
    del incoming["answers"]["visit_date"]
    incoming["participants"][0]["position"] = None
    rows = {row.path: row for row in review.compare_records(current, incoming)}
    assert {path for path, row in rows.items() if row.differs} == {
        "notes",
        "mode",
        "answers.people",
        "answers.visit_date",
        "participants.A.position",
    }
    assert rows["answers.visit_date"].incoming is review.MISSING
    assert rows["answers.people"].current == 3 and rows["answers.people"].incoming == 5
    # The interview's identity is never offered for merging.
    assert not {"study", "country", "activity", "interview_number"} & set(rows)
    # The record format's order: top-level fields, then participants, answers, quotes.
    paths = list(rows)
    assert paths.index("mode") < paths.index("participants.A.agency") < paths.index("answers.agency")
    assert paths[-1] == "quotes"


def test_a_missing_field_and_a_null_one_do_not_differ() -> None:
    current = make_record(4, notes=None)
    incoming = _copy(current)
    del incoming["notes"]
    (row,) = [row for row in review.compare_records(current, incoming) if row.path == "notes"]
    assert row.current is None and row.incoming is review.MISSING and not row.differs


def test_merge_takes_only_the_chosen_fields() -> None:
    current = make_record(4)
    incoming = _copy(current, notes="theirs", mode="phone")
    incoming["answers"]["people"] = 7
    incoming["participants"][0]["agency"] = "Ministry of Justice"
    merged = review.merge_records(current, incoming, ["notes", "answers.people"])
    assert merged["notes"] == "theirs" and merged["answers"]["people"] == 7
    assert merged["mode"] == current["mode"]
    assert merged["participants"][0]["agency"] == current["participants"][0]["agency"]
    # The inputs are left alone.
    assert current["notes"] == "Quiet office." and incoming["mode"] == "phone"
    merged = review.merge_records(current, incoming, ["participants.A.agency"])
    assert merged["participants"][0]["agency"] == "Ministry of Justice"


def test_merge_removes_a_field_the_incoming_version_lacks_and_adds_a_participant() -> None:
    current = make_record(4)
    incoming = _copy(current)
    del incoming["answers"]["visit_date"]
    incoming["participants"].append(dict(incoming["participants"][0], letter="B", position=None))
    rows = {row.path: row for row in review.compare_records(current, incoming)}
    assert rows["participants.B"].current is review.MISSING and rows["participants.B"].differs
    merged = review.merge_records(current, incoming, ["answers.visit_date", "participants.B"])
    assert "visit_date" not in merged["answers"]
    assert [person["letter"] for person in merged["participants"]] == ["A", "B"]


def test_merge_refuses_a_path_that_names_no_field() -> None:
    current = make_record(4)
    with pytest.raises(review.UnknownField) as raised:
        review.merge_records(current, _copy(current), ["answers.no_such_question"])
    assert raised.value.path == "answers.no_such_question"
    with pytest.raises(review.UnknownField):
        review.merge_records(current, _copy(current), ["interview_number"])


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


def _conflicting(world: SyncWorld, dbsession: Session) -> tuple[str, int, dict[str, Any], dict[str, Any]]:
    """A record at revision 2 and an open conflict based on revision 1."""
    user = world.accounts.user("review-admin", "admin", None)
    caller = services.Caller(user.id, user.username, None, (GrantScope("admin", "*", None),))
    number = world.register("KE")
    uuid = new_uuid()
    original = make_record(number)
    services.push_batch(dbsession, caller, [change(uuid, 0, original)])
    theirs = _copy(original, notes="kept by the first tablet")
    services.push_batch(dbsession, caller, [change(uuid, 1, theirs)])
    mine = _copy(original, notes="from the second tablet", mode="virtual")
    mine["answers"]["people"] = 6
    outcome = services.push_batch(dbsession, caller, [change(uuid, 1, mine)])
    (result,) = outcome.results
    assert result.result == "conflict"
    return uuid, result.conflict_id, theirs, mine


def test_a_merge_of_two_fields_is_stored_as_the_next_revision(world: SyncWorld, dbsession: Session) -> None:
    uuid, conflict_id, theirs, mine = _conflicting(world, dbsession)
    conflict = review.get_conflict(dbsession, conflict_id)
    assert conflict is not None and conflict["status"] == "open" and conflict["country"] == "KE"
    assert conflict["current"]["revision"] == 2 and conflict["record"] == mine
    differing = {
        row.path
        for row in review.compare_records(conflict["current"]["record"], conflict["record"])
        if row.differs
    }
    assert differing == {"notes", "mode", "answers.people"}
    merged = review.merge_records(
        conflict["current"]["record"], conflict["record"], ["notes", "answers.people"]
    )
    staff = services.Caller(
        world.accounts.user("merger", "coordinator", "ocsea", ["KE"]).id, "merger", None, ()
    )
    resolution = services.resolve_conflict(dbsession, staff, conflict_id, "merged", merged, base_revision=2)
    assert resolution.new_revision and resolution.current["revision"] == 3
    stored = dbsession.get(Interview, uuid)
    dbsession.refresh(stored)
    assert stored.record["notes"] == "from the second tablet"
    assert stored.record["answers"]["people"] == 6
    assert stored.record["mode"] == theirs["mode"] == "in_person"
    history = review.revision_history(dbsession, uuid)
    assert [(entry.kind, entry.revision) for entry in history] == [
        ("accepted", 1),
        ("accepted", 2),
        ("conflict", None),
        ("accepted", 3),
    ]
    assert history[1].changed == ("notes",)
    assert set(history[2].changed) == {"notes", "mode", "answers.people"}
    assert history[2].resolution == "merged" and history[2].resolution_revision == 3
    assert set(history[3].changed) == {"notes", "answers.people"}
    assert review.get_conflict(dbsession, conflict_id)["status"] == "resolved"
    assert review.get_conflict(dbsession, conflict_id + 1000) is None


def test_a_merge_the_validation_refuses_stores_nothing(world: SyncWorld, dbsession: Session) -> None:
    uuid, conflict_id, _, _ = _conflicting(world, dbsession)
    conflict = review.get_conflict(dbsession, conflict_id)
    incoming = _copy(conflict["record"])
    incoming["answers"]["people"] = 99  # outside the question's 0-10
    merged = review.merge_records(conflict["current"]["record"], incoming, ["answers.people"])
    staff = services.Caller(
        world.accounts.user("merger2", "coordinator", "ocsea", ["KE"]).id, "merger2", None, ()
    )
    with pytest.raises(services.ResolutionInvalid) as raised:
        services.resolve_conflict(dbsession, staff, conflict_id, "merged", merged, base_revision=2)
    assert any("people" in path for path, _ in raised.value.problems)
    assert review.get_conflict(dbsession, conflict_id)["status"] == "open"
    assert dbsession.get(Interview, uuid).revision == 2


def test_a_field_conflict_is_loaded_with_the_registry_value_now(
    world: SyncWorld, dbsession: Session, accounts: Any
) -> None:
    from test_sync_support import make_field_conflict

    user = accounts.user("fc-admin", "admin", None)
    conflict_id = make_field_conflict(dbsession, user.id)
    conflict = review.get_field_conflict(dbsession, conflict_id)
    assert conflict["field"] == "agency" and conflict["status"] == "open"
    assert conflict["registry"] == "Ministry of ICT and Innovation"
    assert conflict["incoming"] == "Ministry of ICT"
    assert review.get_field_conflict(dbsession, conflict_id + 1000) is None


def test_probes_used_is_one_field_compared_and_taken_as_a_whole() -> None:
    current = make_record(4, probes_used={"details": [2, 0]})
    incoming = _copy(current, probes_used={"details": [1]})
    rows = {row.path: row for row in review.compare_records(current, incoming)}
    assert {path for path, row in rows.items() if row.differs} == {"probes_used"}
    assert rows["probes_used"].group == "record"
    # With the interview's own fields, after the notes and before the participants.
    paths = list(rows)
    assert paths.index("notes") + 1 == paths.index("probes_used") < paths.index("participants.A.agency")
    assert review.merge_records(current, incoming, ["probes_used"])["probes_used"] == {"details": [1]}
    assert review.merge_records(current, incoming, [])["probes_used"] == {"details": [2, 0]}
    # A tablet of an older release sends no probes_used: taking its version drops the ticks.
    older = _copy(current)
    del older["probes_used"]
    assert "probes_used" not in review.merge_records(current, older, ["probes_used"])
    # Nothing ticked reads the same however it is written, and so do the same ticks in another order.
    for same_as_none in ({}, None, {"details": []}):
        compared = review.compare_records(older, _copy(older, probes_used=same_as_none))
        assert "probes_used" in {row.path for row in compared}
        assert not any(row.differs for row in compared)
    reordered = _copy(current, probes_used={"details": [0, 2]})
    assert not any(row.differs for row in review.compare_records(current, reordered))


def test_a_merge_taking_probes_used_is_stored_and_checked(world: SyncWorld, dbsession: Session) -> None:
    uuid, conflict_id, _, _ = _conflicting(world, dbsession)
    conflict = review.get_conflict(dbsession, conflict_id)
    staff = services.Caller(
        world.accounts.user("merger3", "coordinator", "ocsea", ["KE"]).id, "merger3", None, ()
    )
    bad = _copy(conflict["record"], probes_used={"details": [5]})
    merged = review.merge_records(conflict["current"]["record"], bad, ["probes_used"])
    with pytest.raises(services.ResolutionInvalid) as raised:
        services.resolve_conflict(dbsession, staff, conflict_id, "merged", merged, base_revision=2)
    assert [path for path, _ in raised.value.problems] == ["record.probes_used.details[0]"]
    good = _copy(conflict["record"], probes_used={"details": [1, 2]})
    merged = review.merge_records(conflict["current"]["record"], good, ["probes_used"])
    services.resolve_conflict(dbsession, staff, conflict_id, "merged", merged, base_revision=2)
    stored = dbsession.get(Interview, uuid)
    dbsession.refresh(stored)
    assert stored.record["probes_used"] == {"details": [1, 2]} and stored.revision == 3
    assert review.revision_history(dbsession, uuid)[-1].changed == ("probes_used",)


def test_the_console_shows_a_problem_of_probes_used_on_its_row() -> None:
    problems = [("record.probes_used.details[0]", "no probe 5"), ("record.probes_used.q3", "not a question")]
    assert problem_fields(problems, make_record(4)) == {"probes_used": ["no probe 5", "not a question"]}
