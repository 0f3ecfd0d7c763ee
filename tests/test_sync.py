"""POST /api/v1/sync and GET /api/v1/sync/changes: results, receipts, retries, scope, limits, the feed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import transaction
import webtest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session
from test_sync_support import SyncWorld, Tablet, change, make_record, new_uuid, post_json, quote_id

from surveykit.audit.models import AuditEvent
from surveykit.participants.models import Participant
from surveykit.studies.feed import ChangeLogEntry
from surveykit.sync import services
from surveykit.sync.models import Interview, InterviewRevision, Quote


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


@pytest.fixture
def tablet(world: SyncWorld) -> Tablet:
    return world.tablet(["KE"])


def _results(response: webtest.TestResponse) -> list[dict[str, Any]]:
    return response.json["results"]


def _one(response: webtest.TestResponse) -> dict[str, Any]:
    (result,) = _results(response)
    return result


def _stored(dbsession: Session, uuid: str) -> Interview:
    dbsession.expire_all()
    interview = dbsession.get(Interview, uuid)
    assert interview is not None
    return interview


def _revisions(dbsession: Session, uuid: str) -> list[InterviewRevision]:
    dbsession.expire_all()
    return services.history(dbsession, uuid)


def _events(dbsession: Session, action: str) -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def _edit(record: dict[str, Any], text: str) -> dict[str, Any]:
    edited = json.loads(json.dumps(record))
    edited["notes"] = text
    return edited


# ------------------------------------------------------------------------------------ results


def test_created_receipt_matches_the_stored_revision(testapp, dbsession, tablet) -> None:
    uuid, record = new_uuid(), make_record(tablet.mint())
    result = _one(tablet.push(testapp, [change(uuid, 0, record)]))

    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    assert result == {
        "index": 0,
        "uuid": uuid,
        "result": "created",
        "revision": 1,
        "content_hash": hashlib.sha256(canonical).hexdigest(),
    }
    interview = _stored(dbsession, uuid)
    assert (interview.revision, interview.content_hash, interview.record) == (
        1,
        result["content_hash"],
        record,
    )
    assert interview.device_id == tablet.device.id and interview.interviewer_id == tablet.user.id
    (revision,) = _revisions(dbsession, uuid)
    assert (revision.kind, revision.revision, revision.base_revision) == ("accepted", 1, 0)
    assert revision.content_hash == result["content_hash"] and revision.device_id == tablet.device.id


def test_identical_retry_is_unchanged_and_stores_nothing(testapp, dbsession, tablet) -> None:
    uuid, record = new_uuid(), make_record(tablet.mint())
    first = _one(tablet.push(testapp, [change(uuid, 0, record)]))
    # The same change again, and twice inside one batch.
    again = _one(tablet.push(testapp, [change(uuid, 0, record)]))
    twice = _results(tablet.push(testapp, [change(uuid, 0, record), change(uuid, 0, record)]))

    assert first["result"] == "created"
    for result in [again, *twice]:
        assert result["result"] == "unchanged"
        assert (result["revision"], result["content_hash"]) == (1, first["content_hash"])
    assert len(_revisions(dbsession, uuid)) == 1
    assert dbsession.scalar(select(func.count()).select_from(Interview).where(Interview.uuid == uuid)) == 1


def test_update_adds_a_revision_and_keeps_every_one(testapp, dbsession, tablet) -> None:
    uuid, record = new_uuid(), make_record(tablet.mint())
    tablet.push(testapp, [change(uuid, 0, record)])
    second = _edit(record, "second")
    third = _edit(record, "third")
    results = _results(tablet.push(testapp, [change(uuid, 1, second), change(uuid, 2, third)]))

    assert [(r["result"], r["revision"]) for r in results] == [("updated", 2), ("updated", 3)]
    interview = _stored(dbsession, uuid)
    assert (interview.revision, interview.record["notes"]) == (3, "third")
    revisions = _revisions(dbsession, uuid)
    assert [(r.revision, r.base_revision, r.record["notes"]) for r in revisions] == [
        (1, 0, "Quiet office."),
        (2, 1, "second"),
        (3, 2, "third"),
    ]


def test_a_change_equal_to_the_current_content_is_unchanged(testapp, dbsession, world, tablet) -> None:
    other = world.tablet(["KE"])
    uuid, record = new_uuid(), make_record(tablet.mint())
    tablet.push(testapp, [change(uuid, 0, record)])
    edited = _edit(record, "both made this edit")
    assert _one(other.push(testapp, [change(uuid, 1, edited)]))["result"] == "updated"
    # The same edit from a stale base: nothing to store, the content already is the current one.
    result = _one(tablet.push(testapp, [change(uuid, 1, edited)]))
    assert (result["result"], result["revision"]) == ("unchanged", 2)
    assert len(_revisions(dbsession, uuid)) == 2


def test_a_stale_change_is_kept_as_a_conflict_with_the_current_record(
    testapp, dbsession, world, tablet
) -> None:
    other = world.tablet(["KE"])
    uuid, record = new_uuid(), make_record(tablet.mint())
    tablet.push(testapp, [change(uuid, 0, record)])
    theirs = _edit(record, "edited on the other tablet")
    mine = _edit(record, "edited on this tablet")
    other.push(testapp, [change(uuid, 1, theirs)])

    result = _one(tablet.push(testapp, [change(uuid, 1, mine)]))
    assert result["result"] == "conflict"
    assert result["revision"] is None and result["conflict_status"] == "open"
    assert (
        result["content_hash"]
        == hashlib.sha256(
            json.dumps(mine, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
        ).hexdigest()
    )
    assert result["current"]["revision"] == 2 and result["current"]["record"] == theirs
    conflict = dbsession.get(InterviewRevision, result["conflict_id"])
    assert (conflict.kind, conflict.base_revision, conflict.record) == ("conflict", 1, mine)
    assert conflict.device_id == tablet.device.id

    # A retry of the conflicting change answers the same conflict and stores nothing new.
    retry = _one(tablet.push(testapp, [change(uuid, 1, mine)]))
    assert (retry["result"], retry["conflict_id"]) == ("conflict", result["conflict_id"])
    assert len(_revisions(dbsession, uuid)) == 3
    # The tablet resolves by sending its merge based on the current revision.
    merged = _edit(theirs, "merged on this tablet")
    assert _one(tablet.push(testapp, [change(uuid, 2, merged)]))["result"] == "updated"


def test_replayed_and_reordered_batches_create_no_duplicate_and_lose_no_edit(
    testapp, dbsession, tablet
) -> None:
    uuid, record = new_uuid(), make_record(tablet.mint())
    edits = [record, _edit(record, "one"), _edit(record, "two"), _edit(record, "three")]
    batches = [[change(uuid, base, content)] for base, content in enumerate(edits)]
    receipts = [_one(tablet.push(testapp, batch)) for batch in batches]
    assert [r["result"] for r in receipts] == ["created", "updated", "updated", "updated"]

    # Every batch again, in reverse order, then all in one batch backwards, then shuffled twice.
    replays = [_one(tablet.push(testapp, batch)) for batch in reversed(batches)]
    combined = _results(tablet.push(testapp, [c for batch in reversed(batches) for c in batch]))
    shuffled = _results(tablet.push(testapp, [batches[2][0], batches[0][0], batches[3][0], batches[2][0]]))

    by_hash = {r["content_hash"]: r["revision"] for r in receipts}
    for result in [*replays, *combined, *shuffled]:
        assert result["result"] == "unchanged"
        assert by_hash[result["content_hash"]] == result["revision"]
    interview = _stored(dbsession, uuid)
    assert (interview.revision, interview.record["notes"]) == (4, "three")
    assert [r.revision for r in _revisions(dbsession, uuid)] == [1, 2, 3, 4]


def test_one_bad_record_never_blocks_the_others(testapp, dbsession, tablet) -> None:
    good = [(new_uuid(), make_record(tablet.mint())) for _ in range(2)]
    bad = make_record(tablet.mint(), mode="carrier pigeon")
    outside = make_record(tablet.mint(), country="TZ")
    response = tablet.push(
        testapp,
        [
            change(good[0][0], 0, good[0][1]),
            change(new_uuid(), 0, bad),
            "not a change",
            change(new_uuid(), 0, outside),
            change(good[1][0], 0, good[1][1]),
        ],
    )
    results = _results(response)
    assert [r["result"] for r in results] == ["created", "rejected", "rejected", "rejected", "created"]
    assert results[1]["code"] == "record_invalid"
    assert results[1]["errors"] == [
        {
            "location": "body",
            "path": "changes[1].record.mode",
            "message": "must be one of in_person, virtual, phone",
        }
    ]
    assert results[2]["errors"][0]["path"] == "changes[2]"
    assert results[3]["code"] == "out_of_scope"
    assert response.json["counts"] == {
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "conflict": 0,
        "rejected": 3,
    }
    for uuid, _ in good:
        assert _stored(dbsession, uuid).revision == 1


def test_a_change_based_on_a_revision_the_server_lacks_is_rejected(testapp, dbsession, tablet) -> None:
    uuid, record = new_uuid(), make_record(tablet.mint())
    unknown = _one(tablet.push(testapp, [change(uuid, 3, record)]))
    assert (unknown["result"], unknown["code"]) == ("rejected", "stale_base_revision")
    assert unknown["errors"][0]["path"] == "changes[0].base_revision"
    tablet.push(testapp, [change(uuid, 0, record)])
    ahead = _one(tablet.push(testapp, [change(uuid, 5, _edit(record, "from the future"))]))
    assert (ahead["result"], ahead["code"]) == ("rejected", "stale_base_revision")
    assert _stored(dbsession, uuid).revision == 1


def test_uuids_are_case_insensitive(testapp, dbsession, tablet) -> None:
    uuid, record = new_uuid(), make_record(tablet.mint())
    first = _one(tablet.push(testapp, [change(uuid.upper(), 0, record)]))
    assert (first["uuid"], first["result"]) == (uuid, "created")
    assert _one(tablet.push(testapp, [change(uuid, 0, record)]))["result"] == "unchanged"


def test_a_uuid_with_a_trailing_newline_is_refused_like_any_other_bad_uuid(
    testapp, dbsession, tablet
) -> None:
    """A regular expression's ``$`` also matches before a final newline; the push must not."""
    uuid, record = new_uuid(), make_record(tablet.mint())
    refused = _results(tablet.push(testapp, [change(uuid + "\n", 0, record)]))
    assert [(r["result"], r["errors"][0]["path"]) for r in refused] == [("rejected", "changes[0].uuid")]
    assert dbsession.get(Interview, uuid) is None


def test_a_record_keeps_its_interview_for_good(testapp, dbsession, tablet) -> None:
    uuid, record = new_uuid(), make_record(tablet.mint())
    tablet.push(testapp, [change(uuid, 0, record)])
    moved = make_record(tablet.mint())
    result = _one(tablet.push(testapp, [change(uuid, 1, moved)]))
    assert result["result"] == "rejected"
    assert [e["path"] for e in result["errors"]] == ["changes[0].record.interview_number"]


# ------------------------------------------------------------------------- interview numbers


def test_a_tablet_creates_records_only_for_its_own_numbers_or_registered_interviews(
    testapp, dbsession, world, tablet
) -> None:
    other = world.tablet(["KE"])
    foreign = other.mint()
    refused = _one(tablet.push(testapp, [change(new_uuid(), 0, make_record(foreign))]))
    assert (refused["result"], refused["code"]) == ("rejected", "interview_number_refused")
    assert refused["errors"][0]["path"] == "changes[0].record.interview_number"
    (event,) = _events(dbsession, "sync.number_refused")
    assert (event.outcome, event.device_id, event.target) == (
        "refused",
        tablet.device.id,
        f"RA1-KE-{foreign:02d}",
    )

    never_allocated = _one(tablet.push(testapp, [change(new_uuid(), 0, make_record(900))]))
    assert never_allocated["code"] == "interview_number_refused"

    planned = world.register("KE", "AB")
    record = make_record(planned)
    record["participants"].append(
        {"letter": "B", "agency": "Police", "position": None, "consent_given": True}
    )
    assert _one(tablet.push(testapp, [change(new_uuid(), 0, record)]))["result"] == "created"
    # A second record of the same interview is refused: one interview, one record.
    duplicate = _one(other.push(testapp, [change(new_uuid(), 0, record)]))
    assert duplicate["result"] == "rejected"
    assert "already recorded" in duplicate["errors"][0]["message"]


def test_staff_push_registered_interviews_with_manager_grants(testapp, dbsession, world) -> None:
    coordinator = world.staff("coordinator", ["KE"])
    planned = world.register("KE")
    created = _one(
        post_json(
            testapp, "/api/v1/sync", {"changes": [change(new_uuid(), 0, make_record(planned))]}, coordinator
        )
    )
    assert created["result"] == "created"
    unregistered = _one(
        post_json(testapp, "/api/v1/sync", {"changes": [change(new_uuid(), 0, make_record(77))]}, coordinator)
    )
    assert unregistered["code"] == "interview_number_refused"
    tz_coordinator = world.staff("coordinator", ["TZ"])
    outside = _one(
        post_json(
            testapp,
            "/api/v1/sync",
            {"changes": [change(new_uuid(), 0, make_record(world.register("KE")))]},
            tz_coordinator,
        )
    )
    assert outside["code"] == "out_of_scope"
    # A fieldworker without a tablet does not push at all.
    fieldworker = world.staff("fieldworker", ["KE"])
    post_json(testapp, "/api/v1/sync", {"changes": []}, fieldworker, status=403)


# --------------------------------------------------------------------- registry and quotes


def test_the_registry_follows_the_records(testapp, dbsession, world, tablet) -> None:
    number = world.register("KE", "AB")
    uuid = new_uuid()
    record = make_record(number)
    record["participants"] = [
        {"letter": "A", "agency": "  Ministry of ICT ", "position": "", "consent_given": True},
        {
            "letter": "B",
            "agency": "National Police",
            "position": "Head of Cybercrime Unit",
            "consent_given": True,
            "consent_date": "2026-05-03",
            "consent_recorded_how": "written_form",
        },
    ]
    tablet.push(testapp, [change(uuid, 0, record)])

    def registry() -> dict[str, tuple[Any, ...]]:
        dbsession.expire_all()
        rows = dbsession.scalars(select(Participant).where(Participant.interview_number == number))
        return {
            p.pid: (
                p.agency,
                p.position,
                p.consent_given,
                str(p.consent_date),
                p.consent_recorded_how,
                p.status,
            )
            for p in rows
        }

    a, b = f"RA1-KE-{number:02d}-A", f"RA1-KE-{number:02d}-B"
    assert registry() == {
        a: ("Ministry of ICT", None, True, "None", None, "interviewed"),
        b: ("National Police", "Head of Cybercrime Unit", True, "2026-05-03", "written_form", "interviewed"),
    }
    feed_keys = [
        e["key"]
        for e in testapp.get("/api/v1/sync/changes?study=ocsea", headers=tablet.headers).json["changes"]
    ]
    assert {uuid, a, b} <= set(feed_keys)

    # B left before the interview after all: dropped from the record, back to planned.
    solo = json.loads(json.dumps(record))
    solo["participants"] = solo["participants"][:1]
    tablet.push(testapp, [change(uuid, 1, solo)])
    assert registry()[b][-1] == "planned" and registry()[a][-1] == "interviewed"

    unplanned = tablet.mint()
    tablet.push(testapp, [change(new_uuid(), 0, make_record(unplanned))])
    dbsession.expire_all()
    created = dbsession.scalar(select(Participant).where(Participant.pid == f"RA1-KE-{unplanned:02d}-A"))
    assert (created.agency, created.status, created.created_by) == (
        "Ministry of ICT",
        "interviewed",
        tablet.user.username,
    )
    assert created.change_seq > 0


def test_the_registry_keeps_withdrawals_and_hears_only_of_real_changes(
    testapp, dbsession, world, tablet
) -> None:
    """A withdrawal stands whatever a record says, a letter the registry lacks is created, and a
    record that changes nothing in the registry puts no participant in the feed."""
    from surveykit.participants import services as participants

    number = world.register("KE", "AB")
    a, b, c = (f"RA1-KE-{number:02d}-{letter}" for letter in "ABC")
    withdrawn = dbsession.scalar(select(Participant).where(Participant.pid == b))
    participants.update_participant(dbsession, withdrawn, {"status": "withdrawn"})
    dbsession.flush()
    record = make_record(number)
    record["participants"] = [
        {"letter": letter, "agency": "Ministry of ICT", "consent_given": True} for letter in "ABC"
    ]
    uuid = new_uuid()
    tablet.push(testapp, [change(uuid, 0, record)])
    dbsession.expire_all()
    rows = dbsession.scalars(select(Participant).where(Participant.interview_number == number))
    statuses = {p.pid: (p.status, p.agency) for p in rows}
    assert statuses == {
        a: ("interviewed", "Ministry of ICT"),
        b: ("withdrawn", "Ministry of ICT"),
        c: ("interviewed", "Ministry of ICT"),
    }
    top = testapp.get("/api/v1/sync/changes?study=ocsea", headers=tablet.headers).json["next_cursor"]
    same_people = dict(record, notes="Only the notes changed.")
    tablet.push(testapp, [change(uuid, 1, same_people)])
    after = testapp.get(f"/api/v1/sync/changes?study=ocsea&cursor={top}", headers=tablet.headers).json
    assert [(entry["kind"], entry["key"]) for entry in after["changes"]] == [("interview", uuid)]


def test_quotes_are_records_of_their_own(testapp, dbsession, tablet) -> None:
    number = tablet.mint()
    uuid, record = new_uuid(), make_record(number)
    tablet.push(testapp, [change(uuid, 0, record)])
    dbsession.expire_all()
    (quote,) = dbsession.scalars(select(Quote).where(Quote.interview_uuid == uuid))
    assert (quote.id, quote.question_id, quote.text, quote.start_offset, quote.end_offset, quote.tags) == (
        quote_id("KE", number),
        "details",
        "We train police officers every year",
        0,
        35,
        ["capacity"],
    )
    edited = json.loads(json.dumps(record))
    edited["quotes"].append(
        {"id": quote_id("KE", number, 1), "question_id": "agency", "text": "ICT", "tags": []}
    )
    tablet.push(testapp, [change(uuid, 1, edited)])
    dbsession.expire_all()
    assert {
        (q.id, q.revision) for q in dbsession.scalars(select(Quote).where(Quote.interview_uuid == uuid))
    } == {
        (quote_id("KE", number), 2),
        (quote_id("KE", number, 1), 2),
    }
    # Another interview may not reuse a quote's id.
    thief = make_record(tablet.mint())
    thief["quotes"][0]["id"] = quote_id("KE", number)
    result = _one(tablet.push(testapp, [change(new_uuid(), 0, thief)]))
    assert result["result"] == "rejected"
    assert result["errors"][0]["path"] == "changes[0].record.quotes[0].id"


# -------------------------------------------------------------------------- scope and audit


def test_pushing_outside_the_granted_countries_is_refused_and_audited(
    testapp, dbsession, world, tablet
) -> None:
    uuid = new_uuid()
    result = _one(tablet.push(testapp, [change(uuid, 0, make_record(1, country="TZ"))]))
    assert (result["result"], result["code"]) == ("rejected", "out_of_scope")
    assert result["errors"][0]["path"] == "changes[0].record.country"
    (event,) = _events(dbsession, "sync.scope_refused")
    assert (event.outcome, event.device_id, event.target) == ("refused", tablet.device.id, uuid)
    assert event.details["country"] == "TZ"
    assert dbsession.get(Interview, uuid) is None

    # Another study altogether says nothing about whether it exists.
    elsewhere = _one(tablet.push(testapp, [change(new_uuid(), 0, make_record(1, study="secret-study"))]))
    assert elsewhere["code"] == "out_of_scope"


def test_a_record_stored_in_another_country_is_out_of_scope(testapp, dbsession, world) -> None:
    kenya = world.tablet(["KE"])
    both = world.tablet(["KE", "TZ"])
    uuid = new_uuid()
    kenya_record = make_record(kenya.mint())
    kenya.push(testapp, [change(uuid, 0, kenya_record)])
    # A TZ record pushed under the UUID of a KE record: the stored record's country decides.
    tz_only = world.tablet(["TZ"])
    hijack = _one(tz_only.push(testapp, [change(uuid, 1, make_record(tz_only.mint("TZ"), country="TZ"))]))
    assert hijack["code"] == "out_of_scope"
    moved = _one(both.push(testapp, [change(uuid, 1, make_record(both.mint("TZ"), country="TZ"))]))
    assert moved["code"] == "record_invalid"
    assert _stored(dbsession, uuid).country_code == "KE"


def test_every_batch_is_audited_with_counts_and_device(testapp, dbsession, tablet) -> None:
    uuid, record = new_uuid(), make_record(tablet.mint())
    tablet.push(testapp, [change(uuid, 0, record), change(uuid, 0, record), change(new_uuid(), 0, {})])
    (event,) = _events(dbsession, "sync.batch")
    assert (event.outcome, event.device_id, event.actor) == (
        "success",
        tablet.device.id,
        tablet.user.username,
    )
    assert event.details["counts"] == {
        "created": 1,
        "updated": 0,
        "unchanged": 1,
        "conflict": 0,
        "rejected": 1,
    }
    assert event.details["changes"] == 3 and event.details["device"] == tablet.device.id


# ----------------------------------------------------------------------------------- limits


def test_a_batch_over_the_limit_is_refused_with_413(testapp, dbsession, tablet, app, monkeypatch) -> None:
    record = make_record(tablet.mint())
    too_many = [change(new_uuid(), 0, record) for _ in range(101)]
    response = tablet.push(testapp, too_many, status=413)
    assert response.json["code"] == "batch_too_large"
    assert "at most 100 changes" in response.json["message"]
    monkeypatch.setitem(app.registry.settings, "surveykit.sync_max_batch", 2)
    tablet.push(testapp, [change(new_uuid(), 0, record)] * 3, status=413)
    assert _results(tablet.push(testapp, [change(new_uuid(), 0, record)] * 2))[0]["result"] == "created"


def test_a_body_over_the_size_limit_is_refused_with_413(testapp, tablet, app, monkeypatch) -> None:
    monkeypatch.setitem(app.registry.settings, "surveykit.max_body_bytes", 2000)
    record = make_record(tablet.mint(), notes="x" * 3000)
    response = tablet.push(testapp, [change(new_uuid(), 0, record)], status=413)
    assert response.json["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "changes"),
        ({"changes": {}}, "changes"),
        ({"changes": [], "device": "x"}, ""),
    ],
)
def test_a_malformed_batch_is_422(testapp, tablet, body, path) -> None:
    response = post_json(testapp, "/api/v1/sync", body, tablet.headers, status=422)
    assert response.json["code"] == "invalid_input"
    assert path in {d["path"] for d in response.json["details"]}


# ----------------------------------------------------------------------- after the commit


def test_when_the_commit_fails_the_client_gets_an_error_not_a_receipt(
    testapp, dbsession, tablet, monkeypatch
) -> None:
    uuid, record = new_uuid(), make_record(tablet.mint())
    real_commit = transaction.TransactionManager.commit

    def failing_commit(self: Any) -> None:
        self.abort()
        raise RuntimeError("disk full")

    monkeypatch.setattr(transaction.TransactionManager, "commit", failing_commit)
    response = tablet.push(testapp, [change(uuid, 0, record)], status=500)
    assert response.json["code"] == "internal_error"
    assert "results" not in response.json
    dbsession.expire_all()
    assert dbsession.get(Interview, uuid) is None

    monkeypatch.setattr(transaction.TransactionManager, "commit", real_commit)
    assert _one(tablet.push(testapp, [change(uuid, 0, record)]))["result"] == "created"


# -------------------------------------------------------------------------------------- pull


def _pull_all(
    testapp: webtest.TestApp, headers: dict[str, str], query: str = "", limit: int = 2
) -> tuple[list, int]:
    cursor, seen = 0, []
    while True:
        page = testapp.get(
            f"/api/v1/sync/changes?study=ocsea&cursor={cursor}&limit={limit}{query}", headers=headers
        ).json
        assert page["cursor"] == cursor and page["next_cursor"] >= cursor
        assert len(page["changes"]) <= limit
        seen += page["changes"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return seen, cursor


def test_pull_pages_through_the_feed_in_the_callers_countries(testapp, dbsession, world) -> None:
    kenya, tanzania = world.tablet(["KE"]), world.tablet(["TZ"])
    ke_records = {new_uuid(): make_record(kenya.mint()) for _ in range(3)}
    ke_uuids = list(ke_records)
    tz_uuid = new_uuid()
    kenya.push(testapp, [change(uuid, 0, record) for uuid, record in ke_records.items()])
    tanzania.push(testapp, [change(tz_uuid, 0, make_record(tanzania.mint("TZ"), country="TZ"))])

    seen, cursor = _pull_all(testapp, kenya.headers)
    interviews = [c for c in seen if c["kind"] == "interview"]
    assert {c["key"] for c in interviews} == set(ke_uuids)
    # Instrument entries are study-wide (no country); everything else is in the caller's countries.
    assert {c["country"] for c in seen if c["kind"] != "instrument"} == {"KE"}
    assert [c["seq"] for c in seen] == sorted(c["seq"] for c in seen)
    first = next(c for c in interviews if c["key"] == ke_uuids[0])
    stored = _stored(dbsession, ke_uuids[0])
    assert (
        first["object"]["revision"] == stored.revision
        and first["object"]["content_hash"] == stored.content_hash
    )
    participants = [c for c in seen if c["kind"] == "participant"]
    assert len(participants) == 3 and all(c["object"]["status"] == "interviewed" for c in participants)
    # The cursor passed the TZ entries the KE tablet cannot see: nothing new, same cursor.
    top = testapp.get(f"/api/v1/sync/changes?study=ocsea&cursor={cursor}", headers=kenya.headers).json
    assert (top["changes"], top["next_cursor"], top["has_more"]) == ([], cursor, False)
    assert cursor == max(c["seq"] for c in _pull_all(testapp, world.staff("admin"))[0])

    # An edit shows up after the cursor, with the object as it is now.
    kenya.push(testapp, [change(ke_uuids[1], 1, _edit(ke_records[ke_uuids[1]], "edited"))])
    later = testapp.get(f"/api/v1/sync/changes?study=ocsea&cursor={cursor}", headers=kenya.headers).json[
        "changes"
    ]
    assert [(c["kind"], c["key"], c["object"]["revision"]) for c in later] == [("interview", ke_uuids[1], 2)]

    tz_seen, _ = _pull_all(testapp, tanzania.headers, limit=1)
    assert {c["key"] for c in tz_seen if c["kind"] == "interview"} == {tz_uuid}
    analyst = world.staff("analyst", ["KE"])
    assert {c["country"] for c in _pull_all(testapp, analyst)[0]} - {None} == {"KE"}
    coordinator = world.staff("coordinator", None)
    assert {c["country"] for c in _pull_all(testapp, coordinator, "&country=TZ")[0]} - {None} == {"TZ"}


def test_pulled_objects_write_dates_and_times_as_the_rest_of_the_api(testapp, dbsession, world) -> None:
    """The pull page leaves its times to orjson; each must read as the registry and the feed hold it."""
    kenya = world.tablet(["KE"])
    uuid = new_uuid()
    record = make_record(kenya.mint())
    kenya.push(testapp, [change(uuid, 0, record)])
    seen, _ = _pull_all(testapp, kenya.headers, limit=50)
    dbsession.expire_all()
    entries = {(entry.kind, entry.key): entry for entry in dbsession.scalars(select(ChangeLogEntry))}
    for change_seen in seen:
        assert change_seen["at"] == entries[(change_seen["kind"], change_seen["key"])].at.isoformat()
    interview = next(c["object"] for c in seen if c["kind"] == "interview")
    assert interview["updated_at"] == _stored(dbsession, uuid).updated_at.isoformat()
    person = next(c["object"] for c in seen if c["kind"] == "participant")
    registry = testapp.get(f"/api/v1/studies/ocsea/participants/{person['pid']}", headers=kenya.headers).json
    assert person == registry
    assert person["created_at"] == registry["created_at"] and "T" in person["created_at"]


def test_pull_outside_the_callers_grants_is_403_and_audited(testapp, dbsession, world, tablet) -> None:
    response = testapp.get("/api/v1/sync/changes?study=ocsea&country=TZ", headers=tablet.headers, status=403)
    assert response.json["code"] == "forbidden"
    world.accounts.study("other", ("KE",))
    testapp.get("/api/v1/sync/changes?study=other", headers=tablet.headers, status=403)
    events = _events(dbsession, "sync.scope_refused")
    assert [(e.outcome, e.device_id, e.details["study"]) for e in events] == [
        ("refused", tablet.device.id, "ocsea"),
        ("refused", tablet.device.id, "other"),
    ]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "study=ocsea&limit=0",
        "study=ocsea&limit=1001",
        "study=ocsea&cursor=-1",
        "study=ocsea&cursor=x",
        "study=ocsea&x=1",
    ],
)
def test_pull_query_is_validated(testapp, tablet, query) -> None:
    response = testapp.get(f"/api/v1/sync/changes?{query}", headers=tablet.headers, status=422)
    assert response.json["details"][0]["location"] == "querystring"


def test_a_cursor_ahead_of_the_feed_is_refused(testapp, tablet) -> None:
    response = testapp.get("/api/v1/sync/changes?study=ocsea&cursor=5000", headers=tablet.headers, status=409)
    assert response.json["code"] == "cursor_ahead"


def test_the_feed_numbers_follow_the_commits(testapp, dbsession, tablet) -> None:
    """Sequence numbers come from the server's counter, one per changed object, without gaps."""
    record = make_record(tablet.mint())
    # A client's clock says nothing about order (the earliest time sync accepts, ahead of the other).
    record["started_at"] = "2000-01-01T00:00:00+00:00"
    tablet.push(testapp, [change(new_uuid(), 0, record), change(new_uuid(), 0, make_record(tablet.mint()))])
    dbsession.expire_all()
    numbers = list(dbsession.scalars(select(ChangeLogEntry.seq).order_by(ChangeLogEntry.seq)))
    pushed = dbsession.scalars(select(ChangeLogEntry.seq).where(ChangeLogEntry.kind != "instrument")).all()
    assert numbers == list(range(1, len(numbers) + 1)) and len(pushed) == 4
    interviews = dbsession.scalars(select(Interview.uuid)).all()
    entries = dbsession.execute(select(ChangeLogEntry.key, ChangeLogEntry.seq)).all()
    assert sorted(key for key, _ in entries if key in set(interviews)) == sorted(interviews)
    # A participant is written with the number of its own feed entry.
    people = dbsession.execute(select(Participant.pid, Participant.change_seq)).all()
    assert len(people) == 2 and set(people) <= set(entries)


def test_a_push_takes_the_feed_counter_after_writing_its_records_and_audit_events(
    testapp, connection, tablet
) -> None:
    """The counter stays locked until commit, so every other write of the batch comes before it:
    concurrent pushes to a study then wait on each other only for the feed entries and participants."""
    statements: list[str] = []

    def seen(_conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        statements.append(" ".join(statement.split()[:3]).lower())

    event.listen(connection, "before_cursor_execute", seen)
    try:
        tablet.push(testapp, [change(new_uuid(), 0, make_record(tablet.mint())) for _ in range(2)])
    finally:
        event.remove(connection, "before_cursor_execute", seen)

    def first(prefix: str) -> int:
        return next(i for i, text in enumerate(statements) if text.startswith(prefix))

    def first_write(table: str) -> int:
        # New rows go in with one COPY per table on PostgreSQL, an INSERT elsewhere.
        copied = connection.dialect.name == "postgresql"
        return first(f"copy {table} " if copied else f"insert into {table}")

    counter = first("update study_change_counters")
    for written_before in ("interviews", "interview_revisions", "quotes"):
        assert first_write(written_before) < counter, written_before
    assert first("insert into audit_events") < counter
    for written_after in ("change_log", "participants"):
        assert first_write(written_after) > counter, written_after


def test_a_retry_is_answered_even_after_the_study_setup_changed(testapp, dbsession, world, tablet) -> None:
    from surveykit.studies.models import ResearchActivity

    uuid, record = new_uuid(), make_record(tablet.mint())
    first = _one(tablet.push(testapp, [change(uuid, 0, record)]))
    dbsession.execute(ResearchActivity.__table__.delete().where(ResearchActivity.study_id == world.study.id))
    dbsession.flush()
    retry = _one(tablet.push(testapp, [change(uuid, 0, record)]))
    assert (retry["result"], retry["revision"], retry["content_hash"]) == (
        "unchanged",
        1,
        first["content_hash"],
    )
    edit = _one(tablet.push(testapp, [change(uuid, 1, _edit(record, "new"))]))
    assert edit["result"] == "rejected" and edit["errors"][0]["path"] == "changes[0].record.activity"
