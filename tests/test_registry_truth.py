"""One registry, one truth: a coordinator's correction is never undone by a tablet that has not seen
it (a field conflict instead), and a fact bound to a home is never stored with two values."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import webtest
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_sync_support import STUDY, SyncWorld, Tablet, change, make_record, new_uuid, post_json

from surveykit.audit.models import AuditEvent
from surveykit.instruments import services as instruments
from surveykit.participants.models import Participant
from surveykit.sync.models import FieldConflict

BOUND_SLUG = "bound-debrief"


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


def _participant(dbsession: Session, pid: str) -> Participant:
    dbsession.expire_all()
    participant = dbsession.scalar(select(Participant).where(Participant.pid == pid))
    assert participant is not None
    return participant


def _events(dbsession: Session, action: str) -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def _patch(testapp: webtest.TestApp, pid: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    return testapp.patch_json(
        f"/api/v1/studies/{STUDY}/participants/{pid}", body, headers=headers, status="*"
    )


class Repro:
    """Issue 12's reproduction: a registered interview (Ministry of Justice, no position), recorded by
    a tablet as revision 1, then corrected by the coordinator (a position)."""

    def __init__(self, testapp: webtest.TestApp, world: SyncWorld) -> None:
        self.testapp = testapp
        self.world = world
        self.tablet: Tablet = world.tablet(["KE"])
        self.coordinator = world.staff("coordinator", ["KE"])
        self.number = world.register("KE")
        self.pid = f"RA1-KE-{self.number:02d}-A"
        registered = _participant(world.session, self.pid)
        registered.agency = "Ministry of Justice"
        world.session.flush()
        self.uuid = new_uuid()
        self.record = make_record(self.number)
        self.record["participants"][0]["agency"] = "Ministry of Justice"
        self.record["participants"][0]["position"] = None
        self.record["answers"]["agency"] = "Ministry of Justice"
        (created,) = self.push(0, self.record)
        assert (created["result"], created["revision"]) == ("created", 1)
        corrected = _patch(testapp, self.pid, {"position": "Director of Legal Affairs"}, self.coordinator)
        assert corrected.status_int == 200, corrected.text

    def push(self, base: int, record: dict[str, Any]) -> list[dict[str, Any]]:
        return self.tablet.push(self.testapp, [change(self.uuid, base, record)]).json["results"]

    def edited(self, **fields: Any) -> dict[str, Any]:
        record = copy.deepcopy(self.record)
        record.update(fields)
        return record


def test_a_tablet_edit_does_not_undo_a_coordinators_correction(testapp, dbsession, world) -> None:
    repro = Repro(testapp, world)
    (updated,) = repro.push(1, repro.edited(notes="Only the notes changed."))
    # The rest of the change is stored as before...
    assert (updated["result"], updated["revision"]) == ("updated", 2)
    # ...but the stale position is not applied over the correction: it is kept as a field conflict.
    assert _participant(dbsession, repro.pid).position == "Director of Legal Affairs"
    [kept] = updated["field_conflicts"]
    assert kept["pid"] == repro.pid and kept["field"] == "position"
    assert (kept["incoming"], kept["registry"]) == (None, "Director of Legal Affairs")
    stored = dbsession.get(FieldConflict, kept["id"])
    assert (stored.incoming_value, stored.base_value, stored.revision) == (None, None, 2)
    [event] = _events(dbsession, "sync.field_conflict")
    assert event.target == str(kept["id"]) and event.details["field"] == "position"

    # A replay changes nothing and makes no second conflict; nor does a later push of the same value.
    (replayed,) = repro.push(1, repro.edited(notes="Only the notes changed."))
    assert (replayed["result"], replayed["revision"]) == ("unchanged", 2)
    (later,) = repro.push(2, repro.edited(notes="Another note."))
    assert later["result"] == "updated" and [c["id"] for c in later["field_conflicts"]] == [kept["id"]]
    assert dbsession.scalars(select(FieldConflict)).all() == [stored]

    # Visible to the coordinators of the country, like record conflicts.
    listed = testapp.get(f"/api/v1/field-conflicts?study={STUDY}&country=KE", headers=repro.coordinator).json[
        "field_conflicts"
    ]
    assert [(c["id"], c["pid"], c["field"], c["status"]) for c in listed] == [
        (kept["id"], repro.pid, "position", "open")
    ]
    assert listed[0]["registry"] == "Director of Legal Affairs" and listed[0]["uuid"] == repro.uuid
    fieldworker = world.staff("fieldworker", ["KE"])
    testapp.get(f"/api/v1/field-conflicts?study={STUDY}", headers=fieldworker, status=403)

    # Resolved (the correction stays), audited, and closed for good.
    url = f"/api/v1/field-conflicts/{kept['id']}/resolve"
    stale = post_json(testapp, url, {"resolution": "keep_current", "registry": None}, repro.coordinator, 409)
    assert stale.json["details"][0]["path"] == "registry"
    body = {"resolution": "keep_current", "registry": "Director of Legal Affairs"}
    resolved = post_json(testapp, url, body, repro.coordinator, 200).json
    assert resolved["field_conflict"]["status"] == "resolved"
    assert resolved["participant"]["position"] == "Director of Legal Affairs"
    [event] = _events(dbsession, "sync.field_conflict_resolved")
    assert (event.target, event.details["resolution"]) == (str(kept["id"]), "keep_current")
    post_json(testapp, url, {"resolution": "keep_current"}, repro.coordinator, 409)

    # The tablet takes the correction into its copy: the field follows the record again.
    caught_up = repro.edited(notes="Another note.")
    caught_up["participants"][0]["position"] = "Director of Legal Affairs"
    (synced,) = repro.push(3, caught_up)
    assert synced["result"] == "updated" and "field_conflicts" not in synced
    assert _participant(dbsession, repro.pid).coordinator_fields == ""
    repro.record = caught_up
    (edited,) = repro.push(
        4,
        repro.edited(
            notes="Later.", participants=[dict(caught_up["participants"][0], position="Deputy Director")]
        ),
    )
    assert edited["result"] == "updated" and "field_conflicts" not in edited
    assert _participant(dbsession, repro.pid).position == "Deputy Director"


def test_fields_nobody_else_touched_still_follow_the_record(testapp, dbsession, world) -> None:
    repro = Repro(testapp, world)
    record = repro.edited()
    record["participants"][0].update(agency="Ministry of Justice and Constitutional Affairs")
    record["answers"]["agency"] = "Ministry of Justice and Constitutional Affairs"
    (updated,) = repro.push(1, record)
    assert updated["result"] == "updated"
    participant = _participant(dbsession, repro.pid)
    assert participant.agency == "Ministry of Justice and Constitutional Affairs"
    assert participant.position == "Director of Legal Affairs"
    assert [c["field"] for c in updated["field_conflicts"]] == ["position"]


def test_taking_the_incoming_value_applies_it_and_the_next_push_hands_the_field_back(
    testapp, dbsession, world
) -> None:
    repro = Repro(testapp, world)
    record = repro.edited()
    record["participants"][0]["position"] = "Legal Adviser"
    (updated,) = repro.push(1, record)
    [kept] = updated["field_conflicts"]
    assert kept["incoming"] == "Legal Adviser"
    url = f"/api/v1/field-conflicts/{kept['id']}/resolve"
    resolved = post_json(testapp, url, {"resolution": "take_incoming"}, repro.coordinator, 200).json
    assert resolved["participant"]["position"] == "Legal Adviser"
    assert _participant(dbsession, repro.pid).position == "Legal Adviser"
    [event] = _events(dbsession, "sync.field_conflict_resolved")
    assert event.details["changed"] == {"position": ["Director of Legal Affairs", "Legal Adviser"]}
    (again,) = repro.push(2, dict(record, notes="again"))
    assert "field_conflicts" not in again
    assert _participant(dbsession, repro.pid).coordinator_fields == ""


def test_a_new_record_for_a_corrected_planned_interview_leaves_a_field_conflict(
    testapp, dbsession, world
) -> None:
    tablet = world.tablet(["KE"])
    coordinator = world.staff("coordinator", ["KE"])
    number = world.register("KE")
    pid = f"RA1-KE-{number:02d}-A"
    assert _patch(testapp, pid, {"agency": "Ministry of ICT and Innovation"}, coordinator).status_int == 200
    record = make_record(number)  # still says "Ministry of ICT", as first registered
    (created,) = tablet.push(testapp, [change(new_uuid(), 0, record)]).json["results"]
    assert created["result"] == "created"
    assert [(c["field"], c["incoming"]) for c in created["field_conflicts"]] == [
        ("agency", "Ministry of ICT")
    ]
    participant = _participant(dbsession, pid)
    assert (participant.agency, participant.status) == ("Ministry of ICT and Innovation", "interviewed")
    # The other fields, which the coordinator never touched, follow the record.
    assert participant.position == "Director of Cyber Security"


def test_a_field_conflict_is_resolved_only_by_managers_of_its_country(testapp, dbsession, world) -> None:
    repro = Repro(testapp, world)
    (updated,) = repro.push(1, repro.edited(notes="x"))
    url = f"/api/v1/field-conflicts/{updated['field_conflicts'][0]['id']}/resolve"
    post_json(testapp, url, {"resolution": "keep_current"}, world.staff("coordinator", ["TZ"]), 403)
    post_json(testapp, url, {"resolution": "merged"}, repro.coordinator, 422)
    post_json(
        testapp,
        "/api/v1/field-conflicts/99999/resolve",
        {"resolution": "keep_current"},
        repro.coordinator,
        404,
    )


# ---------------------------------------------------------------------------------- bound facts


def bound_definition() -> dict[str, Any]:
    """Every bindable fact as a metadata question, plus one ordinary required question."""
    return {
        "slug": BOUND_SLUG,
        "study": STUDY,
        "title": "Bound debrief",
        "activity": "RA1",
        "default_language": "en",
        "languages": ["en"],
        "metadata": [
            {
                "id": "agency",
                "type": "short_text",
                "required": True,
                "binds": "participant.agency",
                "prompt": "Agency",
            },
            {"id": "position", "type": "short_text", "binds": "participant.position", "prompt": "Position"},
            {
                "id": "interview_date",
                "type": "date",
                "required": True,
                "binds": "record.started_at",
                "prompt": "Date",
            },
            {
                "id": "mode",
                "type": "single_choice",
                "required": True,
                "binds": "record.mode",
                "prompt": "Mode",
                "choices": [
                    {"value": "in_person", "label": "In person"},
                    {"value": "virtual", "label": "Virtual"},
                    {"value": "phone", "label": "Phone"},
                ],
            },
            {
                "id": "consent_given",
                "type": "yes_no",
                "required": True,
                "binds": "participant.consent_given",
                "prompt": "Consent?",
            },
            {
                "id": "consent_date",
                "type": "date",
                "relevance": "$consent_given == true",
                "binds": "participant.consent_date",
                "prompt": "Consent date",
            },
            {
                "id": "consent_recorded_how",
                "type": "single_choice",
                "relevance": "$consent_given == true",
                "binds": "participant.consent_recorded_how",
                "prompt": "Recorded how?",
                "choices": [
                    {"value": "written_form", "label": "Written form"},
                    {"value": "verbal_audio", "label": "Verbal, audio"},
                    {"value": "verbal_notes", "label": "Verbal, notes"},
                ],
            },
        ],
        "sections": [
            {
                "id": "main",
                "title": "Main",
                "questions": [{"id": "summary", "type": "long_text", "required": True, "prompt": "Summary"}],
            }
        ],
    }


def bound_record(number: int) -> dict[str, Any]:
    record = make_record(number, instrument={"slug": BOUND_SLUG, "version": 1}, quotes=[])
    record["answers"] = {
        "agency": "Ministry of ICT",
        "position": "Director of Cyber Security",
        "interview_date": "2026-05-04",
        "mode": "in_person",
        "consent_given": True,
        "consent_date": "2026-05-04",
        "consent_recorded_how": "verbal_notes",
        "summary": "A short talk.",
    }
    return record


@pytest.fixture
def bound(world: SyncWorld, dbsession: Session) -> SyncWorld:
    if instruments.instrument_study(dbsession, BOUND_SLUG) == (False, None):
        instruments.publish(dbsession, instruments.validate_definition(bound_definition()))
        dbsession.flush()
    return world


# (answer id, contradicting answer, home path in the record)
CONTRADICTIONS = [
    ("agency", "Ministry of Interior", "participants[0].agency"),
    ("position", "Deputy Director", "participants[0].position"),
    ("interview_date", "2026-05-05", "started_at"),
    ("mode", "virtual", "mode"),
    ("consent_given", False, "participants[0].consent_given"),
    ("consent_date", "2026-05-01", "participants[0].consent_date"),
    ("consent_recorded_how", "written_form", "participants[0].consent_recorded_how"),
]


@pytest.mark.parametrize(("answer", "value", "home"), CONTRADICTIONS, ids=[c[0] for c in CONTRADICTIONS])
def test_a_bound_answer_that_contradicts_its_home_is_rejected_with_both_paths(
    testapp, dbsession, bound, answer, value, home
) -> None:
    tablet = bound.tablet(["KE"])
    record = bound_record(tablet.mint("KE"))
    record["answers"][answer] = value
    if answer == "consent_given":  # its dependants are not asked any more
        for dependant in ("consent_date", "consent_recorded_how"):
            record["answers"].pop(dependant)
    uuid = new_uuid()
    (result,) = tablet.push(testapp, [change(uuid, 0, record)]).json["results"]
    assert (result["result"], result["code"]) == ("rejected", "record_invalid")
    paths = {error["path"] for error in result["errors"]}
    assert {f"changes[0].record.answers.{answer}", f"changes[0].record.{home}"} <= paths, result["errors"]
    assert dbsession.get(FieldConflict, 1) is None
    from surveykit.sync.models import Interview

    assert dbsession.get(Interview, uuid) is None


def test_bound_answers_agreeing_with_their_homes_or_left_out_are_accepted(testapp, dbsession, bound) -> None:
    tablet = bound.tablet(["KE"])
    agreeing = bound_record(tablet.mint("KE"))
    agreeing["answers"]["agency"] = "  Ministry of ICT "  # the same fact, however it is spaced
    derived = bound_record(tablet.mint("KE"))
    derived["answers"] = {"summary": "Everything else comes from the record's own fields."}
    results = tablet.push(testapp, [change(new_uuid(), 0, agreeing), change(new_uuid(), 0, derived)]).json
    assert [r["result"] for r in results["results"]] == ["created", "created"], results


def test_a_consent_recorded_how_outside_the_codes_is_refused_everywhere(testapp, dbsession, world) -> None:
    tablet = world.tablet(["KE"])
    record = make_record(tablet.mint("KE"))
    record["participants"][0]["consent_recorded_how"] = "oral, recorded"
    (result,) = tablet.push(testapp, [change(new_uuid(), 0, record)]).json["results"]
    assert result["result"] == "rejected"
    assert result["errors"][0]["path"] == "changes[0].record.participants[0].consent_recorded_how"
    number = world.register("KE")
    refused = _patch(
        testapp,
        f"RA1-KE-{number:02d}-A",
        {"consent_recorded_how": "oral"},
        world.staff("coordinator", ["KE"]),
    )
    assert refused.status_int == 422 and refused.json["details"][0]["path"] == "consent_recorded_how"


@pytest.mark.parametrize(
    ("question", "problem"),
    [
        ({"id": "agency", "type": "yes_no", "binds": "participant.agency"}, "binds a question of type"),
        ({"id": "agency", "type": "short_text", "binds": "participant.name"}, "must be one of"),
        (
            {
                "id": "how",
                "type": "single_choice",
                "binds": "participant.consent_recorded_how",
                "choices": [{"value": "oral", "label": "Oral"}],
            },
            "has the codes",
        ),
    ],
)
def test_an_instrument_binding_is_checked_when_published(question, problem) -> None:
    definition = bound_definition()
    definition["metadata"] = [{**question, "prompt": "Q"}]
    with pytest.raises(instruments.DefinitionError) as raised:
        instruments.validate_definition(definition)
    assert any(problem in message for _, message in raised.value.errors), raised.value.errors


def test_an_instrument_binds_a_fact_once() -> None:
    definition = bound_definition()
    definition["metadata"].append(
        {"id": "agency_again", "type": "short_text", "binds": "participant.agency", "prompt": "Q"}
    )
    with pytest.raises(instruments.DefinitionError) as raised:
        instruments.validate_definition(definition)
    assert any("already bound" in message for _, message in raised.value.errors)


# ---------------------------------------------------------------------------------- the export


def test_the_export_shows_one_value_per_fact_from_its_home(dbsession, accounts) -> None:
    import io

    from test_export_support import ExportWorld, definition, load, rows

    from surveykit.exports import services as exports
    from surveykit.participants import services as registry

    world = ExportWorld(dbsession, accounts)
    bound = definition(2)
    bound["metadata"] = [
        {"id": "agency", "type": "short_text", "binds": "participant.agency", "prompt": "Agency"},
        {"id": "visit_day", "type": "date", "binds": "record.started_at", "prompt": "Date"},
    ]
    version = instruments.publish(dbsession, instruments.validate_definition(bound)).version
    recorded = world.interview(
        "KE",
        [("Ministry of ICT", "Director"), ("National Police", None)],
        version=version,
        started="2020-05-04T22:30:00-05:00",  # the 5th in UTC: the local date is the home's
        answers={"agency": "Ministry of ICT", "awareness_main": "Low."},
    )
    first = _participant(dbsession, recorded.pids[0])
    registry.update_participant(dbsession, first, {"agency": "Ministry of ICT and Innovation"})
    dbsession.flush()

    scope = exports.resolve_scope(dbsession, "exp", "KE")
    out = io.BytesIO()
    exports.write_workbook(dbsession, scope, out, "analyst")
    book = load(out.getvalue())
    people = {row[0]: row[1] for row in rows(book, "Participants")}
    assert people == {recorded.pids[0]: "Ministry of ICT and Innovation", recorded.pids[1]: "National Police"}
    header = rows(book, "Responses", header_rows=0)[1]
    responses = {row[0]: row for row in rows(book, "Responses", header_rows=3)}
    agency, day = header.index("agency"), header.index("visit_day")
    # Each participant's row shows its own registry agency, never the answer's stale copy.
    assert responses[recorded.pids[0]][agency] == "Ministry of ICT and Innovation"
    assert responses[recorded.pids[1]][agency] == "National Police"
    assert {str(responses[pid][day])[:10] for pid in recorded.pids} == {"2020-05-04"}
    answers = [(row[0], row[2], row[4]) for row in rows(book, "Answers") if row[2] == "agency"]
    assert answers == [
        (recorded.pids[0], "agency", "Ministry of ICT and Innovation"),
        (recorded.pids[1], "agency", "National Police"),
    ]
