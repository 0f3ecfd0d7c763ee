"""Conflicts: kept as revisions, listed for the coordinators of their country, and resolved by them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import webtest
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_sync_support import SyncWorld, Tablet, change, make_record, new_uuid, post_json

from surveykit.audit.models import AuditEvent
from surveykit.participants.models import Participant
from surveykit.sync import services
from surveykit.sync.models import Interview


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


class Scene:
    """Two KE tablets that edited one record from the same base: revision 2 and an open conflict."""

    def __init__(self, testapp: webtest.TestApp, world: SyncWorld, country: str = "KE") -> None:
        self.testapp = testapp
        self.first: Tablet = world.tablet([country])
        self.second: Tablet = world.tablet([country])
        self.uuid = new_uuid()
        self.original = make_record(self.first.mint(country), country=country)
        self.first.push(testapp, [change(self.uuid, 0, self.original)])
        self.theirs = _with(self.original, notes="kept by the first tablet")
        self.mine = _with(self.original, notes="from the second tablet", mode="virtual")
        self.mine["participants"][0]["agency"] = "Ministry of ICT and Innovation"
        self.first.push(testapp, [change(self.uuid, 1, self.theirs)])
        (self.result,) = self.second.push(testapp, [change(self.uuid, 1, self.mine)]).json["results"]
        assert self.result["result"] == "conflict"
        self.conflict_id = self.result["conflict_id"]

    def retry(self) -> dict[str, Any]:
        return self.second.push(self.testapp, [change(self.uuid, 1, self.mine)]).json["results"][0]


def _with(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    copied = json.loads(json.dumps(record))
    copied.update(fields)
    return copied


def _resolve(
    testapp: webtest.TestApp,
    conflict_id: Any,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int = 200,
) -> webtest.TestResponse:
    return post_json(testapp, f"/api/v1/conflicts/{conflict_id}/resolve", body, headers, status)


def _list(testapp: webtest.TestApp, headers: dict[str, str], query: str = "", status: int = 200) -> Any:
    return testapp.get(f"/api/v1/conflicts?study=ocsea{query}", headers=headers, status=status)


def test_coordinators_list_the_conflicts_of_their_countries(testapp, dbsession, world) -> None:
    kenya = Scene(testapp, world, "KE")
    tanzania = Scene(testapp, world, "TZ")
    ke_coordinator = world.staff("coordinator", ["KE"])
    listed = _list(testapp, ke_coordinator).json
    assert [c["id"] for c in listed["conflicts"]] == [kenya.conflict_id]
    (conflict,) = listed["conflicts"]
    assert conflict["uuid"] == kenya.uuid and conflict["status"] == "open"
    assert conflict["record"] == kenya.mine and conflict["base_revision"] == 1
    assert conflict["current"]["revision"] == 2 and conflict["current"]["record"] == kenya.theirs
    assert conflict["device_id"] == kenya.second.device.id and conflict["user"] == kenya.second.user.username

    admin = world.staff("admin")
    assert [c["id"] for c in _list(testapp, admin).json["conflicts"]] == [
        kenya.conflict_id,
        tanzania.conflict_id,
    ]
    assert [c["id"] for c in _list(testapp, admin, "&country=TZ").json["conflicts"]] == [tanzania.conflict_id]
    page = _list(testapp, admin, "&limit=1").json
    assert page["has_more"] and [c["id"] for c in page["conflicts"]] == [kenya.conflict_id]
    rest = _list(testapp, admin, f"&after={page['next_after']}").json
    assert not rest["has_more"] and [c["id"] for c in rest["conflicts"]] == [tanzania.conflict_id]

    refused = _list(testapp, ke_coordinator, "&country=TZ", status=403)
    assert refused.json["code"] == "forbidden"
    dbsession.expire_all()
    event = dbsession.scalars(select(AuditEvent).where(AuditEvent.action == "sync.conflicts_refused")).one()
    assert event.outcome == "refused" and event.details["country"] == "TZ"
    # Tablets and analysts do not manage conflicts.
    _list(testapp, kenya.first.headers, status=403)
    _list(testapp, world.staff("analyst", ["KE"]), status=403)


def test_keep_current_closes_the_conflict_without_a_new_revision(testapp, dbsession, world) -> None:
    scene = Scene(testapp, world)
    coordinator = world.staff("coordinator", ["KE"])
    cursor = testapp.get("/api/v1/sync/changes?study=ocsea", headers=coordinator).json["next_cursor"]
    body = _resolve(testapp, scene.conflict_id, {"resolution": "keep_current"}, coordinator).json

    assert body["conflict"]["status"] == "resolved" and body["conflict"]["resolution"] == "keep_current"
    assert body["conflict"]["resolution_revision"] == 2 and body["current"]["revision"] == 2
    assert len(services.history(dbsession, scene.uuid)) == 3
    assert _list(testapp, coordinator).json["conflicts"] == []
    assert [c["id"] for c in _list(testapp, coordinator, "&status=resolved").json["conflicts"]] == [
        scene.conflict_id
    ]
    # The resolution reaches the tablets through the feed.
    pulled = testapp.get(
        f"/api/v1/sync/changes?study=ocsea&cursor={cursor}", headers=scene.second.headers
    ).json
    assert [(c["kind"], c["key"]) for c in pulled["changes"]] == [("conflict", str(scene.conflict_id))]
    assert pulled["changes"][0]["object"]["resolution"] == "keep_current"
    # The tablet's retry now learns its change was resolved.
    retry = scene.retry()
    assert (retry["result"], retry["conflict_id"], retry["conflict_status"]) == (
        "conflict",
        scene.conflict_id,
        "resolved",
    )

    again = _resolve(testapp, scene.conflict_id, {"resolution": "take_incoming"}, coordinator, status=409)
    assert again.json["code"] == "conflict_already_resolved"
    dbsession.expire_all()
    (event,) = dbsession.scalars(select(AuditEvent).where(AuditEvent.action == "sync.conflict_resolved"))
    assert event.target == str(scene.conflict_id) and event.details["resolution"] == "keep_current"


def test_take_incoming_stores_the_conflicting_record_as_the_next_revision(testapp, dbsession, world) -> None:
    scene = Scene(testapp, world)
    coordinator = world.staff("coordinator", ["KE"])
    cursor = testapp.get("/api/v1/sync/changes?study=ocsea", headers=coordinator).json["next_cursor"]
    body = _resolve(
        testapp, scene.conflict_id, {"resolution": "take_incoming", "base_revision": 2}, coordinator
    ).json

    assert body["current"]["revision"] == 3 and body["current"]["record"] == scene.mine
    assert body["conflict"]["resolution_revision"] == 3
    dbsession.expire_all()
    revisions = services.history(dbsession, scene.uuid)
    assert [(r.kind, r.revision, r.base_revision) for r in revisions] == [
        ("accepted", 1, 0),
        ("accepted", 2, 1),
        ("accepted", 3, 2),
        ("conflict", None, 1),
    ]
    participant = dbsession.scalar(select(Participant).where(Participant.pid.like("RA1-KE-%-A")))
    assert participant.agency == "Ministry of ICT and Innovation"
    kinds = {
        c["kind"]
        for c in testapp.get(f"/api/v1/sync/changes?study=ocsea&cursor={cursor}", headers=coordinator).json[
            "changes"
        ]
    }
    assert kinds == {"interview", "conflict", "participant"}
    # The tablet's own retry is now simply the current content.
    retry = scene.retry()
    assert (retry["result"], retry["revision"]) == ("unchanged", 3)


def test_merged_records_are_validated_and_stored(testapp, dbsession, world) -> None:
    scene = Scene(testapp, world)
    coordinator = world.staff("coordinator", ["KE"])
    bad = _with(scene.theirs, mode="telepathy")
    bad["answers"]["people"] = 99
    refused = _resolve(
        testapp, scene.conflict_id, {"resolution": "merged", "record": bad}, coordinator, status=422
    )
    assert refused.json["code"] == "record_invalid"
    assert {d["path"] for d in refused.json["details"]} == {"record.mode", "record.answers.people"}
    moved = _with(scene.theirs, interview_number=scene.original["interview_number"] + 1)
    _resolve(testapp, scene.conflict_id, {"resolution": "merged", "record": moved}, coordinator, status=422)
    _resolve(testapp, scene.conflict_id, {"resolution": "merged"}, coordinator, status=422)
    _resolve(
        testapp,
        scene.conflict_id,
        {"resolution": "keep_current", "record": scene.theirs},
        coordinator,
        status=422,
    )

    merged = _with(scene.theirs, notes="merged by the coordinator", mode="virtual")
    stale = _resolve(
        testapp,
        scene.conflict_id,
        {"resolution": "merged", "record": merged, "base_revision": 1},
        coordinator,
        status=409,
    )
    assert stale.json["code"] == "stale_base_revision"
    body = _resolve(testapp, scene.conflict_id, {"resolution": "merged", "record": merged}, coordinator).json
    assert body["current"]["revision"] == 3 and body["current"]["record"] == merged
    dbsession.expire_all()
    assert dbsession.get(Interview, scene.uuid).record == merged
    # The tablets continue from the merge.
    follow_up = _with(merged, notes="after the merge")
    assert (
        scene.first.push(testapp, [change(scene.uuid, 3, follow_up)]).json["results"][0]["result"]
        == "updated"
    )


def test_only_managers_of_the_conflicts_country_resolve_it(testapp, dbsession, world) -> None:
    scene = Scene(testapp, world)
    body = {"resolution": "keep_current"}
    for headers in (world.staff("coordinator", ["TZ"]), world.staff("analyst", ["KE"]), scene.first.headers):
        response = _resolve(testapp, scene.conflict_id, body, headers, status=403)
        assert response.json["code"] == "forbidden"
    dbsession.expire_all()
    refusals = dbsession.scalars(select(AuditEvent).where(AuditEvent.action == "authz.forbidden")).all()
    assert len(refusals) == 3
    coordinator = world.staff("coordinator", ["KE"])
    assert _resolve(testapp, 999999, body, coordinator, status=404).json["code"] == "conflict_not_found"
    assert _resolve(testapp, "abc", body, coordinator, status=404).json["code"] == "conflict_not_found"
    _resolve(testapp, scene.conflict_id, {"resolution": "flip_a_coin"}, coordinator, status=422)
    _resolve(testapp, scene.conflict_id, body, world.staff("admin", None))
