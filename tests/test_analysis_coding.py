"""Coding passages of answers (docs/coding.md): the API round trip, every refused input, the
own-codings rule, re-anchoring when a new revision is pushed, codings of quotes, and agreement."""

from __future__ import annotations

import json
import uuid as uuid_module
from typing import Any

import pytest
import webtest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_sync_support import STUDY, SyncWorld, Tablet, change, make_record, new_uuid, quote_id

from surveykit.analysis import agreement, anchoring
from surveykit.analysis.models import Code, Coding
from surveykit.audit.models import AuditEvent
from surveykit.sync.models import Interview, InterviewRevision, Quote

DETAILS = "We train police officers every year on online exploitation."
KE = f"/api/v1/studies/{STUDY}/countries/KE"


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


@pytest.fixture
def tablet(world: SyncWorld) -> Tablet:
    return world.tablet(["KE", "TZ"])


def code(session: Session, study_id: int, name: str, status: str = "active") -> int:
    row = Code(
        guid=str(uuid_module.uuid4()),
        study_id=study_id,
        name=name,
        status=status,
        created_by="tests",
    )
    session.add(row)
    session.flush()
    return row.id


def coder(world: SyncWorld, username: str, role: str = "analyst") -> dict[str, str]:
    user = world.accounts.user(username, role, STUDY, ["KE"] if role != "admin" else None)
    return {"Authorization": f"Bearer {world.accounts.token(user)}"}


def push_new(testapp: webtest.TestApp, tablet: Tablet, country: str = "KE", **overrides: Any) -> str:
    uuid = new_uuid()
    result = tablet.push(testapp, [change(uuid, 0, make_record(tablet.mint(country), country, **overrides))])
    assert result.json["results"][0]["result"] == "created", result.text
    return uuid


def send(
    testapp: webtest.TestApp,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = None,
    status: int = 200,
) -> webtest.TestResponse:
    return testapp.request(
        url,
        method=method,
        body=None if body is None else json.dumps(body).encode("utf-8"),
        content_type="application/json" if body is not None else None,
        headers=headers,
        status=status,
    )


def coded(testapp, headers, uuid, start, end, code_id, question="details", status=201, **extra):
    body = {"interview_uuid": uuid, "question_id": question, "start": start, "end": end, "code_id": code_id}
    return send(testapp, "POST", f"{KE}/codings", headers, {**body, **extra}, status)


def snapshot(session: Session, uuid: str) -> tuple[Any, ...]:
    session.expire_all()
    interview = session.get(Interview, uuid)
    revisions = session.execute(
        select(InterviewRevision.revision, InterviewRevision.content_hash)
        .where(InterviewRevision.interview_uuid == uuid)
        .order_by(InterviewRevision.id)
    ).all()
    quotes = session.execute(select(Quote.id, Quote.text).where(Quote.interview_uuid == uuid)).all()
    return (interview.revision, interview.content_hash, json.dumps(interview.record), revisions, quotes)


def audit_actions(session: Session, action: str) -> list[AuditEvent]:
    return list(
        session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


# ----------------------------------------------------------------------------------- round trip


def test_a_coding_round_trip_leaves_the_record_and_its_revisions_alone(testapp, dbsession, world, tablet):
    uuid = push_new(testapp, tablet)
    capacity = code(dbsession, world.study.id, "Capacity")
    training = code(dbsession, world.study.id, "Training")
    ana = coder(world, "ana")
    before = snapshot(dbsession, uuid)

    start = DETAILS.index("police officers")
    created = coded(testapp, ana, uuid, start, start + 15, capacity, memo="who is trained").json
    assert created["text"] == "police officers"
    assert (created["start"], created["end"], created["anchor"], created["anchored_revision"]) == (
        start,
        start + 15,
        "current",
        1,
    )
    assert (created["coder"], created["memo"], created["code_id"]) == ("ana", "who is trained", capacity)
    assert created["created_at"] and created["updated_at"]

    url = f"{KE}/codings/{created['id']}"
    assert send(testapp, "GET", url, ana).json == created
    listed = send(testapp, "GET", f"{KE}/codings?coder=ana&interview_uuid={uuid}", ana).json["codings"]
    assert listed == [created]
    assert send(testapp, "GET", f"{KE}/codings?coder=someone-else", ana).json["codings"] == []

    changed = send(testapp, "PATCH", url, ana, {"memo": "trainers", "code_id": training}).json
    assert (changed["memo"], changed["code_id"], changed["text"]) == ("trainers", training, "police officers")
    assert send(testapp, "GET", f"{KE}/codings?code_id={training}", ana).json["codings"] == [changed]

    deleted = send(testapp, "DELETE", url, ana).json["deleted"]
    assert deleted["id"] == created["id"]
    assert send(testapp, "GET", url, ana, status=404).json["code"] == "coding_not_found"
    assert [e.target for e in audit_actions(dbsession, "coding.created")] == [
        f"{STUDY}/KE/codings/{created['id']}"
    ]
    assert audit_actions(dbsession, "coding.updated")[0].details["changed"] == ["code_id", "memo"]
    assert audit_actions(dbsession, "coding.deleted")[0].details["coder"] == "ana"
    assert snapshot(dbsession, uuid) == before


def test_codings_are_listed_by_page_and_filters(testapp, dbsession, world, tablet):
    uuid = push_new(testapp, tablet)
    capacity = code(dbsession, world.study.id, "Capacity")
    ana = coder(world, "ana")
    ids = [coded(testapp, ana, uuid, n, n + 2, capacity).json["id"] for n in range(5)]
    first = send(testapp, "GET", f"{KE}/codings?limit=2", ana).json
    assert [c["id"] for c in first["codings"]] == ids[:2]
    assert first["next_after"] == ids[1]
    rest = send(testapp, "GET", f"{KE}/codings?limit=3&after={ids[1]}", ana).json
    assert [c["id"] for c in rest["codings"]] == ids[2:]
    assert "next" not in rest
    assert send(testapp, "GET", f"{KE}/codings?anchor=moved", ana).json["codings"] == []
    bad = send(testapp, "GET", f"{KE}/codings?anchor=lost", ana, status=422).json
    assert bad["details"][0]["path"] == "anchor"


def test_a_quote_is_coded_with_its_offsets(testapp, dbsession, world, tablet):
    number = tablet.mint("KE")
    uuid = new_uuid()
    tablet.push(testapp, [change(uuid, 0, make_record(number))])
    capacity = code(dbsession, world.study.id, "Capacity")
    ana = coder(world, "ana")
    body = {"interview_uuid": uuid, "quote_id": quote_id("KE", number), "code_id": capacity}
    created = send(testapp, "POST", f"{KE}/codings", ana, body, 201).json
    assert (created["question_id"], created["start"], created["end"]) == ("details", 0, 35)
    assert created["text"] == "We train police officers every year"
    assert created["quote_id"] == quote_id("KE", number)


# --------------------------------------------------------------------------------- bad inputs


def _bad_cases(world: SyncWorld, session: Session, uuid: str, tz_uuid: str, number: int):
    capacity = code(session, world.study.id, "Capacity")
    retired = code(session, world.study.id, "Old", status="retired")
    other_study = world.accounts.study("elsewhere", ("KE",))
    foreign = code(session, other_study.id, "Foreign")
    ok = {"interview_uuid": uuid, "question_id": "details", "start": 0, "end": 8, "code_id": capacity}
    length = len(DETAILS)
    return [
        ({**ok, "interview_uuid": new_uuid()}, 404, "interview_not_found", "interview_uuid"),
        ({**ok, "interview_uuid": tz_uuid}, 404, "interview_not_found", "interview_uuid"),
        ({**ok, "interview_uuid": "not-a-uuid"}, 422, "invalid_input", "interview_uuid"),
        ({**ok, "start": length}, 422, "invalid_input", "start"),
        ({**ok, "end": length + 1}, 422, "invalid_input", "end"),
        ({**ok, "start": 5, "end": 5}, 422, "invalid_input", "end"),
        ({**ok, "start": -1}, 422, "invalid_input", "start"),
        ({**ok, "start": "0"}, 422, "invalid_input", "start"),
        ({**ok, "question_id": "people"}, 422, "invalid_input", "question_id"),
        ({**ok, "question_id": "partners"}, 422, "invalid_input", "question_id"),
        ({**ok, "question_id": "consent"}, 422, "invalid_input", "question_id"),
        ({**ok, "question_id": "budget_line_details"}, 422, "invalid_input", "question_id"),
        ({**ok, "code_id": retired}, 422, "invalid_input", "code_id"),
        ({**ok, "code_id": foreign}, 422, "invalid_input", "code_id"),
        ({**ok, "code_id": foreign + 1000}, 422, "invalid_input", "code_id"),
        # Larger than PostgreSQL's integer column holds: no code, not a database error.
        ({**ok, "code_id": 2**31}, 422, "invalid_input", "code_id"),
        ({**ok, "code_id": 10**30}, 422, "invalid_input", "code_id"),
        ({**ok, "coder": "someone"}, 422, "invalid_input", "coder"),
        ({k: v for k, v in ok.items() if k != "start"}, 422, "invalid_input", "start"),
        ({**ok, "quote_id": quote_id("KE", number)}, 422, "invalid_input", "question_id"),
        (
            {"interview_uuid": uuid, "quote_id": quote_id("TZ", 1), "code_id": capacity},
            422,
            "invalid_input",
            "quote_id",
        ),
    ]


def test_every_bad_input_is_refused_with_its_path_and_changes_nothing(testapp, dbsession, world, tablet):
    number = tablet.mint("KE")
    uuid = new_uuid()
    tablet.push(testapp, [change(uuid, 0, make_record(number))])
    tz_uuid = push_new(testapp, tablet, "TZ")
    ana = coder(world, "ana")
    before = snapshot(dbsession, uuid)
    for body, status, error, path in _bad_cases(world, dbsession, uuid, tz_uuid, number):
        answer = send(testapp, "POST", f"{KE}/codings", ana, body, status).json
        assert (answer["status"], answer["code"]) == (status, error), (body, answer)
        assert path in [detail["path"] for detail in answer["details"]], (body, answer)
        assert answer["message"]
    assert dbsession.scalar(select(func.count()).select_from(Coding)) == 0
    assert audit_actions(dbsession, "coding.created") == []
    assert snapshot(dbsession, uuid) == before


def test_another_countrys_coding_and_unknown_ids_are_not_found(testapp, dbsession, world, tablet):
    tz_uuid = push_new(testapp, tablet, "TZ")
    capacity = code(dbsession, world.study.id, "Capacity")
    admin = coder(world, "boss", "admin")
    body = {"interview_uuid": tz_uuid, "question_id": "details", "start": 0, "end": 2, "code_id": capacity}
    tz_coding = send(testapp, "POST", f"/api/v1/studies/{STUDY}/countries/TZ/codings", admin, body, 201).json
    for method in ("GET", "PATCH", "DELETE"):
        payload = {"memo": "x"} if method == "PATCH" else None
        for ref in (tz_coding["id"], "abc", 99999999):
            answer = send(testapp, method, f"{KE}/codings/{ref}", admin, payload, 404).json
            assert answer["code"] == "coding_not_found"
    answer = send(testapp, "GET", f"/api/v1/studies/{STUDY}/countries/QQ/codings", admin, status=404).json
    assert answer["code"] == "country_not_found"


def test_bad_changes_are_refused_and_change_nothing(testapp, dbsession, world, tablet):
    uuid = push_new(testapp, tablet)
    capacity = code(dbsession, world.study.id, "Capacity")
    retired = code(dbsession, world.study.id, "Old", status="retired")
    ana = coder(world, "ana")
    created = coded(testapp, ana, uuid, 0, 8, capacity).json
    url = f"{KE}/codings/{created['id']}"
    for body, path in (
        ({}, ""),
        ({"code_id": retired}, "code_id"),
        ({"code_id": 2**31}, "code_id"),
        ({"memo": "a\x00b"}, "memo"),
        ({"start": 1}, "end"),
        ({"start": 3, "end": 2}, "end"),
        ({"start": 0, "end": len(DETAILS) + 1}, "end"),
        ({"confirm": "yes"}, "confirm"),
        ({"text": "forged"}, "text"),
    ):
        answer = send(testapp, "PATCH", url, ana, body, 422).json
        assert path in [detail["path"] for detail in answer["details"]], (body, answer)
    assert send(testapp, "GET", url, ana).json == created


# ------------------------------------------------------------------------------- own codings


def test_coders_change_only_their_own_codings_and_admins_anyones(testapp, dbsession, world, tablet):
    uuid = push_new(testapp, tablet)
    capacity = code(dbsession, world.study.id, "Capacity")
    ana, ben, boss = coder(world, "ana"), coder(world, "ben"), coder(world, "boss", "admin")
    created = coded(testapp, ana, uuid, 0, 8, capacity).json
    url = f"{KE}/codings/{created['id']}"
    assert send(testapp, "PATCH", url, ben, {"memo": "mine now"}, 403).json["code"] == "forbidden"
    assert send(testapp, "DELETE", url, ben, status=403).json["code"] == "forbidden"
    refused = [e for e in dbsession.scalars(select(AuditEvent).where(AuditEvent.outcome == "refused"))]
    assert sorted((e.action, e.actor, e.target) for e in refused) == [
        ("coding.deleted", "ben", f"{STUDY}/KE/codings/{created['id']}"),
        ("coding.updated", "ben", f"{STUDY}/KE/codings/{created['id']}"),
    ]
    assert send(testapp, "GET", url, ben).json == created  # reading is shared
    assert send(testapp, "PATCH", url, boss, {"memo": "checked"}).json["coder"] == "ana"
    assert send(testapp, "PATCH", url, ana, {"memo": ""}).json["memo"] == ""  # a memo is cleared
    assert send(testapp, "PATCH", url, ana, {"memo": "  "}).json["memo"] == ""
    send(testapp, "DELETE", url, boss)
    assert dbsession.scalar(select(func.count()).select_from(Coding)) == 0


# -------------------------------------------------------------------------------- re-anchoring


def test_a_new_revision_keeps_moves_and_flags_vanished_codings(testapp, dbsession, world, tablet):
    number = tablet.mint("KE")
    uuid = new_uuid()
    tablet.push(testapp, [change(uuid, 0, make_record(number))])
    capacity = code(dbsession, world.study.id, "Capacity")
    ana = coder(world, "ana")
    record = make_record(number)
    whole = coded(testapp, ana, uuid, 0, 8, capacity, question="agency").json  # "Ministry"
    police = DETAILS.index("police officers")
    kept = coded(testapp, ana, uuid, police, police + 15, capacity).json
    online = DETAILS.index("online exploitation")
    moved = coded(testapp, ana, uuid, online, online + 19, capacity).json
    year = DETAILS.index("every year")
    vanished = coded(testapp, ana, uuid, year, year + 10, capacity).json

    # Revision 2: "every year" is gone and the sentence after "police officers" is longer, so
    # "online exploitation" now sits further on; the agency answer is unchanged.
    new_details = "We train police officers twice on online exploitation and on online exploitation cases."
    record["answers"]["details"] = new_details
    record["quotes"] = []
    result = tablet.push(testapp, [change(uuid, 1, record)]).json["results"][0]
    assert (result["result"], result["revision"]) == ("updated", 2)

    rows = {c["id"]: c for c in send(testapp, "GET", f"{KE}/codings", ana).json["codings"]}
    assert (rows[whole["id"]]["anchor"], rows[whole["id"]]["anchored_revision"]) == ("current", 2)
    assert rows[kept["id"]]["anchor"] == "current"
    assert (rows[kept["id"]]["start"], rows[kept["id"]]["anchored_revision"]) == (police, 2)
    first_online = new_details.index("online exploitation")
    assert first_online != online
    assert (rows[moved["id"]]["anchor"], rows[moved["id"]]["start"], rows[moved["id"]]["end"]) == (
        "moved",
        first_online,  # the occurrence nearest the old offsets, not the later one
        first_online + 19,
    )
    assert rows[moved["id"]]["text"] == "online exploitation"
    assert rows[vanished["id"]]["anchor"] == "vanished"
    assert (rows[vanished["id"]]["start"], rows[vanished["id"]]["end"]) == (year, year + 10)
    assert (rows[vanished["id"]]["text"], rows[vanished["id"]]["anchored_revision"]) == ("every year", 1)
    [event] = audit_actions(dbsession, "coding.reanchored")
    assert {k: event.details[k] for k in ("kept", "moved", "vanished", "flagged")} == {
        "kept": 2,
        "moved": 1,
        "vanished": 1,
        "flagged": 2,
    }
    assert event.details["interviews"] == [uuid]

    # The coder confirms the moved coding and re-places the vanished one.
    confirmed = send(testapp, "PATCH", f"{KE}/codings/{moved['id']}", ana, {"confirm": True}).json
    assert confirmed["anchor"] == "current"
    twice = new_details.index("twice")
    replaced = send(
        testapp, "PATCH", f"{KE}/codings/{vanished['id']}", ana, {"start": twice, "end": twice + 5}
    ).json
    assert (replaced["anchor"], replaced["text"], replaced["anchored_revision"]) == ("current", "twice", 2)
    answer = send(testapp, "PATCH", f"{KE}/codings/{replaced['id']}", ana, {"confirm": True}).json
    assert answer["anchor"] == "current"


def test_a_revision_that_drops_the_answer_flags_its_codings_and_never_deletes_them(
    testapp, dbsession, world, tablet
):
    number = tablet.mint("KE")
    uuid = new_uuid()
    tablet.push(testapp, [change(uuid, 0, make_record(number))])
    capacity = code(dbsession, world.study.id, "Capacity")
    ana = coder(world, "ana")
    created = coded(testapp, ana, uuid, 0, 8, capacity).json
    record = make_record(number)
    record["answers"]["consent"] = False
    del record["answers"]["details"]
    record["quotes"] = []
    assert tablet.push(testapp, [change(uuid, 1, record)]).json["results"][0]["result"] == "updated"
    row = send(testapp, "GET", f"{KE}/codings/{created['id']}", ana).json
    assert (row["anchor"], row["text"], row["start"], row["end"]) == ("vanished", "We train", 0, 8)
    refused = send(testapp, "PATCH", f"{KE}/codings/{created['id']}", ana, {"confirm": True}, 422).json
    assert refused["details"][0]["path"] == "confirm"
    again = send(testapp, "PATCH", f"{KE}/codings/{created['id']}", ana, {"start": 0, "end": 2}, 422).json
    assert again["details"][0]["path"] == "question_id"


def test_a_batch_without_coded_interviews_records_no_reanchoring(testapp, dbsession, world, tablet):
    number = tablet.mint("KE")
    uuid = new_uuid()
    tablet.push(testapp, [change(uuid, 0, make_record(number))])
    record = make_record(number, notes="Changed.")
    assert tablet.push(testapp, [change(uuid, 1, record)]).json["results"][0]["result"] == "updated"
    assert audit_actions(dbsession, "coding.reanchored") == []


def test_place_finds_the_nearest_occurrence() -> None:
    answer = "abc xyz abc xyz abc"
    assert anchoring.place("abc", 8, 11, answer) == anchoring.Placement("current", 8, 11)
    assert anchoring.place("abc", 9, 12, answer) == anchoring.Placement("moved", 8, 11)
    assert anchoring.place("abc", 15, 18, answer) == anchoring.Placement("moved", 16, 19)
    assert anchoring.place("abd", 0, 3, answer) == anchoring.Placement("vanished", 0, 3)
    assert anchoring.place("abc", 0, 3, 42) == anchoring.Placement("vanished", 0, 3)
    # Offsets are code points: a character outside the BMP counts once.
    assert anchoring.place("b", 0, 1, "😀b") == anchoring.Placement("moved", 1, 2)


# ---------------------------------------------------------------------------------- agreement


def test_two_coders_agreement_on_a_hand_computed_example(testapp, dbsession, world, tablet):
    interviews = [push_new(testapp, tablet) for _ in range(3)]
    x, y, z = (code(dbsession, world.study.id, name) for name in ("X", "Y", "Z"))
    unused = code(dbsession, world.study.id, "Unused")
    ana, ben = coder(world, "ana"), coder(world, "ben")
    # Units (answers): u1 = (i1, details), u2 = (i1, agency), u3 = (i2, details), u4 = (i2, agency),
    # u5 = (i3, details): n = 5.
    units = {
        "u1": (interviews[0], "details"),
        "u2": (interviews[0], "agency"),
        "u3": (interviews[1], "details"),
        "u4": (interviews[1], "agency"),
        "u5": (interviews[2], "details"),
    }
    ana_codes = {"u1": [x, z], "u2": [x], "u3": [x], "u4": [y], "u5": [x, x]}
    ben_codes = {"u1": [x], "u2": [x], "u3": [y], "u4": [y], "u5": [x]}
    for headers, plan in ((ana, ana_codes), (ben, ben_codes)):
        for unit, codes in plan.items():
            uuid, question = units[unit]
            for n, code_id in enumerate(codes):
                coded(testapp, headers, uuid, n, n + 3, code_id, question=question)
    figures = send(testapp, "GET", f"{KE}/agreement?coder=ana&coder=ben", ana).json
    assert (figures["coders"], figures["units"]) == (["ana", "ben"], 5)
    by_code = {row["code_id"]: row for row in figures["codes"]}
    # X: ana {u1,u2,u3,u5}, ben {u1,u2,u5}: a = 3, b = 1 (u3), c = 0, d = 1 (u4).
    #    po = 4/5 = 0.8; pe = ((a+b)(a+c) + (c+d)(b+d)) / n² = (4·3 + 1·2) / 25 = 14/25 = 0.56;
    #    kappa = (0.8 - 0.56) / (1 - 0.56) = 0.24 / 0.44 = 6/11 = 0.5455.
    assert by_code[x]["table"] == {"both": 3, "first_only": 1, "second_only": 0, "neither": 1}
    assert (by_code[x]["percent_agreement"], by_code[x]["kappa"]) == (80.0, 0.5455)
    # Y: ana {u4}, ben {u3,u4}: a = 1, b = 0, c = 1, d = 3. po = 4/5;
    #    pe = (1·2 + 4·3) / 25 = 14/25; kappa = 6/11 as well.
    assert by_code[y]["table"] == {"both": 1, "first_only": 0, "second_only": 1, "neither": 3}
    assert (by_code[y]["percent_agreement"], by_code[y]["kappa"]) == (80.0, 0.5455)
    # Z: ana {u1}, ben {}: a = 0, b = 1, c = 0, d = 4. po = 4/5;
    #    pe = (1·0 + 4·5) / 25 = 20/25 = 0.8; kappa = (0.8 - 0.8) / 0.2 = 0.
    assert by_code[z]["table"] == {"both": 0, "first_only": 1, "second_only": 0, "neither": 4}
    assert (by_code[z]["percent_agreement"], by_code[z]["kappa"], by_code[z]["note"]) == (80.0, 0.0, None)
    assert unused not in by_code
    # A code neither applied: a = b = c = 0, d = 5; pe = (0 + 5·5) / 25 = 1: kappa undefined.
    only = send(testapp, "GET", f"{KE}/agreement?coder=ana&coder=ben&code={unused}", ana).json
    [row] = only["codes"]
    assert (row["percent_agreement"], row["kappa"]) == (100.0, None)
    assert "undefined" in row["note"]


@pytest.mark.parametrize(
    "query",
    [
        "coder=ana",
        "coder=ana&coder=ana",
        "coder=a&coder=b&coder=c",
        "coder=a&coder=b&code=x",
        "coder=a&coder=b&x=1",
    ],
)
def test_agreement_refuses_a_bad_query(testapp, world, query):
    answer = send(testapp, "GET", f"{KE}/agreement?{query}", coder(world, "ana"), status=422).json
    assert answer["code"] == "invalid_input" and answer["details"][0]["location"] == "querystring"


def test_kappa_undefined_and_empty_tables_are_null_with_a_reason() -> None:
    units, [row] = agreement.agreement([("u1", "X"), ("u2", "X")], [("u1", "X"), ("u2", "X")])
    assert (len(units), row.both, row.percent_agreement, row.kappa) == (2, 2, 100.0, None)
    assert row.note == agreement.KAPPA_UNDEFINED
    units, [row] = agreement.agreement([], [], codes=["X"])
    assert (units, row.percent_agreement, row.kappa, row.note) == (set(), None, None, agreement.NO_UNITS)
    # Complete disagreement: a = d = 0, b = c = 1: po = 0, pe = (1·1 + 1·1) / 4 = 1/2, kappa = -1.
    _, [row] = agreement.agreement([("u1", "X")], [("u2", "X")])
    assert (row.percent_agreement, row.kappa) == (0.0, -1.0)


def test_resolving_a_conflict_with_the_incoming_record_reanchors_codings(testapp, dbsession, world, tablet):
    number = tablet.mint("KE")
    uuid = new_uuid()
    tablet.push(testapp, [change(uuid, 0, make_record(number))])
    tablet.push(testapp, [change(uuid, 1, make_record(number, notes="Second visit."))])
    capacity = code(dbsession, world.study.id, "Capacity")
    ana = coder(world, "ana")
    year = DETAILS.index("every year")
    created = coded(testapp, ana, uuid, year, year + 10, capacity).json
    stale = make_record(number, quotes=[])
    stale["answers"]["details"] = "Each year, and every year since 2019, we train officers."
    result = tablet.push(testapp, [change(uuid, 1, stale)]).json["results"][0]
    assert result["result"] == "conflict"
    coordinator = world.staff("coordinator", ["KE"])
    body = {"resolution": "take_incoming", "base_revision": 2}
    url = f"/api/v1/conflicts/{result['conflict_id']}/resolve"
    assert send(testapp, "POST", url, coordinator, body).json["current"]["revision"] == 3
    row = send(testapp, "GET", f"{KE}/codings/{created['id']}", ana).json
    moved_to = stale["answers"]["details"].index("every year")
    assert (row["anchor"], row["start"], row["anchored_revision"]) == ("moved", moved_to, 3)
    [event] = audit_actions(dbsession, "coding.reanchored")
    assert (event.details["moved"], event.details["interviews"]) == (1, [uuid])
