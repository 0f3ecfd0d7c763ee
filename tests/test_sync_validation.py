"""Every kind of bad record is rejected with its field path; drafts may leave required answers out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from test_sync_support import SyncWorld, change, make_record, new_uuid, post_json, sync_definition

from surveykit.instruments import services as instruments
from surveykit.sync import validation

Mutation = Callable[[dict[str, Any]], None]


def _answers(**values: Any) -> Mutation:
    def mutate(record: dict[str, Any]) -> None:
        for key, value in values.items():
            if value is _DROP:
                record["answers"].pop(key, None)
            else:
                record["answers"][key] = value

    return mutate


def _set(**fields: Any) -> Mutation:
    def mutate(record: dict[str, Any]) -> None:
        for key, value in fields.items():
            if value is _DROP:
                record.pop(key, None)
            else:
                record[key] = value

    return mutate


def _participant(index: int = 0, **fields: Any) -> Mutation:
    def mutate(record: dict[str, Any]) -> None:
        while len(record["participants"]) <= index:
            record["participants"].append(
                {"letter": "ABCDEF"[len(record["participants"])], "agency": "X", "consent_given": True}
            )
        for key, value in fields.items():
            if value is _DROP:
                record["participants"][index].pop(key, None)
            else:
                record["participants"][index][key] = value

    return mutate


def _quote(**fields: Any) -> Mutation:
    def mutate(record: dict[str, Any]) -> None:
        for key, value in fields.items():
            if value is _DROP:
                record["quotes"][0].pop(key, None)
            else:
                record["quotes"][0][key] = value

    return mutate


def _second_quote_same_id(record: dict[str, Any]) -> None:
    record["quotes"].append(dict(record["quotes"][0], start=None, end=None, text="officers"))


_DROP = object()
P = "changes[0].record"

# (case, mutation, {path: fragment of the message})
CASES: list[tuple[str, Mutation, dict[str, str]]] = [
    (
        "unknown question",
        _answers(budget_secret="x"),
        {f"{P}.answers.budget_secret": "not a question of sync-debrief version 1"},
    ),
    ("unknown question odd key", _answers(**{"Bad Key": 1}), {f'{P}.answers["Bad Key"]': "not a question"}),
    (
        "probes_used not an object",
        _set(probes_used=[0, 1]),
        {f"{P}.probes_used": "must be an object: question id -> list of probe indexes"},
    ),
    (
        "probes of an unknown question",
        _set(probes_used={"q3": [0]}),
        {f"{P}.probes_used.q3": "not a question of sync-debrief version 1"},
    ),
    (
        "probes of a question without probes",
        _set(probes_used={"mode": [0]}),
        {f"{P}.probes_used.mode": "the question mode has no probes to tick"},
    ),
    ("probes not a list", _set(probes_used={"details": 1}), {f"{P}.probes_used.details": "must be a list"}),
    (
        "probe index out of range",
        _set(probes_used={"details": [0, 3]}),
        {f"{P}.probes_used.details[1]": "no probe 3: the question has 3 (0 to 2)"},
    ),
    (
        "probe ticked twice",
        _set(probes_used={"details": [2, 0, 2]}),
        {f"{P}.probes_used.details[2]": "the same probe as probes_used.details[0]"},
    ),
    (
        "probe index not a whole number",
        _set(probes_used={"details": [1.0, "1", True, -1, None]}),
        {f"{P}.probes_used.details[{i}]": "must be a probe's index: a whole number from 0" for i in range(5)},
    ),
    (
        "probes ticked on a question not asked",
        _set(probes_used={"budget_line_details": [1]}),
        {f"{P}.probes_used.budget_line_details": "probes ticked, but the question is not asked"},
    ),
    ("text as number", _answers(details=12), {f"{P}.answers.details": "must be text"}),
    ("yes_no as text", _answers(consent="yes"), {f"{P}.answers.consent": "true or false"}),
    (
        "choice not offered",
        _answers(mode="carrier_pigeon"),
        {f"{P}.answers.mode": "'carrier_pigeon' is not a choice"},
    ),
    ("single choice as list", _answers(mode=["phone"]), {f"{P}.answers.mode": "one choice value"}),
    (
        "multiple choice not offered",
        _answers(partners=["ngo", "army"]),
        {f"{P}.answers.partners": "'army' is not a choice"},
    ),
    ("multiple choice twice", _answers(partners=["ngo", "ngo"]), {f"{P}.answers.partners": "selected twice"}),
    ("multiple choice as text", _answers(partners="ngo"), {f"{P}.answers.partners": "list of choice values"}),
    ("number above max", _answers(people=11), {f"{P}.answers.people": "above the maximum 10"}),
    ("number below min", _answers(people=-1), {f"{P}.answers.people": "below the minimum 0"}),
    ("number as text", _answers(people="3"), {f"{P}.answers.people": "must be a number"}),
    ("number as boolean", _answers(people=True), {f"{P}.answers.people": "must be a number"}),
    ("date format", _answers(visit_date="04/05/2026"), {f"{P}.answers.visit_date": "YYYY-MM-DD"}),
    ("date impossible", _answers(visit_date="2026-02-30"), {f"{P}.answers.visit_date": "YYYY-MM-DD"}),
    (
        "answered though not relevant",
        _answers(budget_line_exists=False, budget_line_details="A line for hotlines."),
        {f"{P}.answers.budget_line_details": "relevance '$budget_line_exists == true' is false"},
    ),
    (
        "answered though relevance unanswered",
        _answers(consent=_DROP),
        {f"{P}.answers.details": "not asked", f"{P}.answers.consent": "required in a complete record"},
    ),
    ("required missing", _answers(agency=_DROP), {f"{P}.answers.agency": "required in a complete record"}),
    ("required empty", _answers(agency=""), {f"{P}.answers.agency": "required in a complete record"}),
    (
        "required once relevant",
        _answers(budget_line_exists=True),
        {f"{P}.answers.budget_line_details": "required in a complete record"},
    ),
    ("answers not an object", _set(answers=["agency"]), {f"{P}.answers": "must be an object"}),
    ("letters skip", _participant(1, letter="C"), {f"{P}.participants[1].letter": "must be 'B'"}),
    ("letter lower case", _participant(0, letter="a"), {f"{P}.participants[0].letter": "must be 'A'"}),
    ("agency missing", _participant(0, agency=_DROP), {f"{P}.participants[0].agency": "required"}),
    ("agency blank", _participant(0, agency="  "), {f"{P}.participants[0].agency": "required"}),
    (
        "agency too long",
        _participant(0, agency="A" * 501),
        {f"{P}.participants[0].agency": "longer than 500"},
    ),
    (
        "position too long",
        _participant(0, position="P" * 301),
        {f"{P}.participants[0].position": "longer than 300"},
    ),
    ("a name field", _participant(0, name="Jane Doe"), {f"{P}.participants[0].name": "no name field"}),
    (
        "consent missing",
        _participant(0, consent_given=_DROP),
        {f"{P}.participants[0].consent_given": "required"},
    ),
    (
        "consent as text",
        _participant(0, consent_given="yes"),
        {f"{P}.participants[0].consent_given": "true, false or null"},
    ),
    (
        "consent unknown when complete",
        _participant(0, consent_given=None, consent_date=None, consent_recorded_how=None),
        {f"{P}.participants[0].consent_given": "complete record"},
    ),
    (
        "consent date without consent",
        _participant(0, consent_given=False, consent_recorded_how=None),
        {f"{P}.participants[0].consent_date": "only when consent_given is true"},
    ),
    (
        "consent date format",
        _participant(0, consent_date="May 4"),
        {f"{P}.participants[0].consent_date": "YYYY-MM-DD"},
    ),
    ("no participants", _set(participants=[]), {f"{P}.participants": "one or more"}),
    (
        "participant not an object",
        _set(participants=["RA1-KE-01-A"]),
        {f"{P}.participants[0]": "must be an object"},
    ),
    ("mode", _set(mode="video"), {f"{P}.mode": "in_person, virtual, phone"}),
    (
        "language not offered",
        _set(language="fr"),
        {f"{P}.language": "'fr' is not a language of the instrument (en, pt)"},
    ),
    (
        "started after ended",
        _set(started_at="2026-05-04T11:00:00+03:00"),
        {f"{P}.ended_at": "before started_at"},
    ),
    ("time without zone", _set(started_at="2026-05-04T09:30:00"), {f"{P}.started_at": "time zone"}),
    ("time garbage", _set(ended_at="soon"), {f"{P}.ended_at": "RFC 3339"}),
    # Issue 11 item 6: RFC 3339 only, offsets of real time zones, and a plausible window.
    ("time with a space", _set(started_at="2026-05-04 09:30:00+03:00"), {f"{P}.started_at": "RFC 3339"}),
    ("time, basic format", _set(started_at="20260504T093000+0300"), {f"{P}.started_at": "RFC 3339"}),
    ("time without seconds", _set(started_at="2026-05-04T09:30+03:00"), {f"{P}.started_at": "RFC 3339"}),
    ("time, week date", _set(started_at="2026-W19-1T09:30:00Z"), {f"{P}.started_at": "RFC 3339"}),
    ("offset beyond +14:00", _set(started_at="2026-05-04T09:30:00+23:59"), {f"{P}.started_at": "RFC 3339"}),
    (
        "year 1",
        _set(started_at="0001-01-01T00:00:00+14:00"),
        {f"{P}.started_at": "not a plausible interview time: it must lie between 2000-01-01"},
    ),
    (
        "year 9999",
        _set(started_at="9999-12-31T23:59:59-12:00", ended_at="9999-12-31T23:59:59-12:00"),
        {f"{P}.started_at": "not a plausible interview time", f"{P}.ended_at": "not a plausible"},
    ),
    ("ended next year", _set(ended_at="2099-01-01T00:00:00Z"), {f"{P}.ended_at": "not a plausible"}),
    (
        "date answer 9999",
        _answers(visit_date="9999-12-31"),
        {f"{P}.answers.visit_date": "1800-01-01 and 2100-12-31"},
    ),
    (
        "date answer 1799",
        _answers(visit_date="1799-12-31"),
        {f"{P}.answers.visit_date": "1800-01-01 and 2100-12-31"},
    ),
    (
        "consent in year 1",
        _participant(0, consent_date="0001-01-01"),
        {f"{P}.participants[0].consent_date": "must lie between 2000-01-01"},
    ),
    # Issue 11 item 3: numbers a spreadsheet cannot hold exactly.
    ("number of 400 digits", _answers(people=10**400), {f"{P}.answers.people": "-10^15 to 10^15"}),
    ("number just past 10^15", _answers(people=-(10**15) - 1), {f"{P}.answers.people": "-10^15 to 10^15"}),
    ("huge decimal", _answers(people=1e300), {f"{P}.answers.people": "-10^15 to 10^15"}),
    ("tiny decimal", _answers(people=1e-320), {f"{P}.answers.people": "too small to keep"}),
    ("complete without end", _set(ended_at=_DROP), {f"{P}.ended_at": "required in a complete record"}),
    ("status", _set(status="done"), {f"{P}.status": "'draft' or 'complete'"}),
    ("notes as list", _set(notes=["a"]), {f"{P}.notes": "must be text"}),
    ("unknown field", _set(interviewer="someone"), {f"{P}.interviewer": "unknown field"}),
    ("required field missing", _set(language=_DROP), {f"{P}.language": "required"}),
    (
        "quote of an unanswered question",
        _quote(question_id="budget_line_details", start=_DROP, end=_DROP),
        {f"{P}.quotes[0].question_id": "answered in this record"},
    ),
    (
        "quote text differs",
        _quote(text="We train soldiers every year"),
        {f"{P}.quotes[0].text": "differs from the answer"},
    ),
    ("quote beyond the answer", _quote(end=500), {f"{P}.quotes[0].end": "beyond the answer"}),
    ("quote start without end", _quote(end=_DROP), {f"{P}.quotes[0].start": "go together"}),
    ("quote offsets backwards", _quote(start=10, end=5), {f"{P}.quotes[0].start": "go together"}),
    (
        "quote offsets into a number",
        _quote(question_id="people", text="3", start=0, end=1),
        {f"{P}.quotes[0].start": "text answer"},
    ),
    ("quote without id", _quote(id=_DROP), {f"{P}.quotes[0].id": "UUID"}),
    ("quote id twice", _second_quote_same_id, {f"{P}.quotes[1].id": "same id as quotes[0]"}),
    ("quote empty text", _quote(text="", start=_DROP, end=_DROP), {f"{P}.quotes[0].text": "required"}),
    (
        "quote by a participant not in the interview",
        _quote(participant="Z"),
        {f"{P}.quotes[0].participant": "letter"},
    ),
    ("quote tags", _quote(tags=["ok", ""]), {f"{P}.quotes[0].tags": "list of short texts"}),
    ("quote unknown field", _quote(speaker="A"), {f"{P}.quotes[0].speaker": "unknown field"}),
    (
        "instrument version unknown",
        _set(instrument={"slug": "sync-debrief", "version": 9}),
        {f"{P}.instrument": "no published version 9"},
    ),
    ("instrument shape", _set(instrument="sync-debrief"), {f"{P}.instrument": "required"}),
    ("unknown study", _set(study="nowhere"), {f"{P}.study": "no study 'nowhere'"}),
    ("country not in study", _set(country="UG"), {f"{P}.country": "study ocsea has no country UG"}),
    ("activity not configured", _set(activity="RA2"), {f"{P}.activity": "no research activity RA2"}),
    ("interview number zero", _set(interview_number=0), {f"{P}.interview_number": "whole number"}),
    ("interview number text", _set(interview_number="04"), {f"{P}.interview_number": "whole number"}),
    ("country lower case", _set(country="ke"), {f"{P}.country": "two-letter"}),
]


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


@pytest.mark.parametrize(("case", "mutate", "expected"), CASES, ids=[case for case, _, _ in CASES])
def test_a_bad_record_is_rejected_with_its_field_paths(testapp, world, case, mutate, expected) -> None:
    tablet = world.tablet(["KE"])
    record = make_record(tablet.mint())
    mutate(record)
    if case in ("unknown study", "country not in study"):
        # A tablet's grants name existing studies and countries; only a global admin gets this far.
        body = {"changes": [change(new_uuid(), 0, record)]}
        response = post_json(testapp, "/api/v1/sync", body, world.accounts.headers("admin"))
    else:
        response = tablet.push(testapp, [change(new_uuid(), 0, record)])
    result = response.json["results"][0]
    assert result["result"] == "rejected", result
    assert result["code"] == "record_invalid"
    errors = {error["path"]: error["message"] for error in result["errors"]}
    for path, fragment in expected.items():
        assert path in errors, (path, errors)
        assert fragment in errors[path], (fragment, errors[path])
    assert all(error["location"] == "body" for error in result["errors"])


def test_every_problem_is_reported_at_once(testapp, world) -> None:
    tablet = world.tablet()
    record = make_record(tablet.mint(), mode="video", language="fr")
    record["answers"].update(people=99, mode="radio")
    record["participants"][0]["agency"] = ""
    result = tablet.push(testapp, [change(new_uuid(), 0, record)]).json["results"][0]
    assert {e["path"] for e in result["errors"]} == {
        f"{P}.mode",
        f"{P}.language",
        f"{P}.answers.people",
        f"{P}.answers.mode",
        f"{P}.participants[0].agency",
    }
    assert result["message"].startswith("invalid record: ")


@pytest.mark.parametrize(
    ("change_body", "paths"),
    [
        ({"uuid": "not-a-uuid", "base_revision": 0, "record": {}}, ["changes[0].uuid"]),
        ({"base_revision": 0, "record": {}}, ["changes[0].uuid"]),
        (
            {"uuid": "UUID", "base_revision": -1, "record": {}},
            ["changes[0].base_revision"],
        ),
        ({"uuid": "UUID", "base_revision": True, "record": {}}, ["changes[0].base_revision"]),
        ({"uuid": "UUID", "base_revision": 0, "record": []}, ["changes[0].record"]),
        ({"uuid": "UUID", "base_revision": 0, "record": {}, "extra": 1}, ["changes[0].extra"]),
    ],
)
def test_a_malformed_change_is_rejected(testapp, world, change_body, paths) -> None:
    tablet = world.tablet()
    if change_body.get("uuid") == "UUID":
        change_body = dict(change_body, uuid=new_uuid())
    result = tablet.push(testapp, [change_body]).json["results"][0]
    assert result["result"] == "rejected"
    assert paths == [e["path"] for e in result["errors"]][: len(paths)]


def test_a_draft_may_leave_required_answers_out(testapp, world) -> None:
    tablet = world.tablet()
    record = make_record(tablet.mint(), status="draft", answers={"budget_line_exists": True}, quotes=[])
    record.pop("ended_at")
    record["participants"][0].update(consent_given=None, consent_date=None, consent_recorded_how=None)
    uuid = new_uuid()
    assert tablet.push(testapp, [change(uuid, 0, record)]).json["results"][0]["result"] == "created"
    # Completing it without the answers is refused; with them it is accepted.
    complete = dict(record, status="complete", ended_at="2026-05-04T10:00:00Z")
    refused = tablet.push(testapp, [change(uuid, 1, complete)]).json["results"][0]
    assert {e["path"] for e in refused["errors"]} == {
        f"{P}.answers.agency",
        f"{P}.answers.consent",
        f"{P}.answers.budget_line_details",
        f"{P}.participants[0].consent_given",
    }
    complete = make_record(
        record["interview_number"],
        answers={
            "agency": "Ministry of ICT",
            "consent": False,
            "budget_line_exists": True,
            "budget_line_details": "One line, for the hotline.",
        },
        quotes=[],
    )
    assert tablet.push(testapp, [change(uuid, 1, complete)]).json["results"][0]["result"] == "updated"


def test_a_record_follows_its_own_instrument_version(testapp, world, dbsession) -> None:
    """Version 2 drops ``people`` and adds ``hotline``: each record is checked against its own."""
    definition = sync_definition()
    questions = definition["sections"][0]["questions"]
    questions[:] = [q for q in questions if q["id"] != "people"]
    questions.append({"id": "hotline", "type": "yes_no", "prompt": "Hotline?"})
    instruments.publish(dbsession, instruments.validate_definition(definition))
    dbsession.flush()
    tablet = world.tablet()
    old = make_record(tablet.mint())
    assert tablet.push(testapp, [change(new_uuid(), 0, old)]).json["results"][0]["result"] == "created"
    new = make_record(tablet.mint(), instrument={"slug": "sync-debrief", "version": 2})
    refused = tablet.push(testapp, [change(new_uuid(), 0, new)]).json["results"][0]
    assert [e["path"] for e in refused["errors"]] == [f"{P}.answers.people"]
    new["answers"].pop("people")
    new["answers"]["hotline"] = True
    assert tablet.push(testapp, [change(new_uuid(), 0, new)]).json["results"][0]["result"] == "created"


def test_an_instrument_of_another_study_or_activity_is_refused(testapp, world, dbsession) -> None:
    instruments.publish(dbsession, instruments.validate_definition(sync_definition("other-debrief", "other")))
    ra2 = sync_definition("ra2-debrief", None)
    ra2["activity"] = "RA2"
    instruments.publish(dbsession, instruments.validate_definition(ra2))
    dbsession.flush()
    tablet = world.tablet()
    for slug, message in (("other-debrief", "belongs to study other"), ("ra2-debrief", "instrument of RA2")):
        record = make_record(tablet.mint(), instrument={"slug": slug, "version": 1})
        result = tablet.push(testapp, [change(new_uuid(), 0, record)]).json["results"][0]
        errors = {e["path"]: e["message"] for e in result["errors"]}
        assert message in errors[f"{P}.instrument.slug"]


def test_canonical_json_and_hash() -> None:
    record = {"b": [1, 2.5, "é"], "a": {"y": None, "x": True}}
    assert validation.canonical_json(record) == '{"a":{"x":true,"y":null},"b":[1,2.5,"é"]}'.encode()
    assert validation.content_hash(record) == validation.content_hash(
        {"a": {"y": None, "x": True}, "b": [1, 2.5, "é"]}
    )
    assert (
        validation.parse_uuid("7D4F1C2E-0B9A-4E57-9A52-3F0C1D2E4B6A")
        == "7d4f1c2e-0b9a-4e57-9a52-3f0c1d2e4b6a"
    )
    assert validation.parse_uuid("7d4f1c2e0b9a4e579a523f0c1d2e4b6a") is None


def test_text_the_databases_cannot_store_is_rejected_not_a_500(testapp, world) -> None:
    tablet = world.tablet()
    good = make_record(tablet.mint())
    nul = make_record(tablet.mint(), notes="before\x00after")
    surrogate = make_record(tablet.mint())
    surrogate["answers"]["details"] = "broken \ud800 text"
    infinite = make_record(tablet.mint())
    body = json.dumps({"changes": [change(new_uuid(), 0, r) for r in (good, nul, surrogate, infinite)]})
    # The last record's number answer becomes 1e999, which Python's JSON reads as infinity.
    head, _, tail = body.rpartition('"people": 3')
    body = f'{head}"people": 1e999{tail}'
    response = testapp.post(
        "/api/v1/sync", body.encode(), headers={**tablet.headers, "Content-Type": "application/json"}
    )
    results = response.json["results"]
    assert [r["result"] for r in results] == ["created", "rejected", "rejected", "rejected"]
    assert results[1]["errors"][0]["path"] == "changes[1].record.notes"
    assert results[2]["errors"][0]["path"] == "changes[2].record.answers.details"
    assert results[2]["content_hash"] is None
    assert results[3]["errors"][0]["path"] == "changes[3].record.answers.people"


def test_an_invalid_answer_leaves_the_relevance_of_its_dependants_undecided(testapp, world) -> None:
    tablet = world.tablet()
    record = make_record(tablet.mint())
    record["answers"].update(budget_line_exists="yes", budget_line_details="A line for the hotline.")
    result = tablet.push(testapp, [change(new_uuid(), 0, record)]).json["results"][0]
    assert [e["path"] for e in result["errors"]] == [f"{P}.answers.budget_line_exists"]


# Text with every kind of character the text rule treats differently: plain, line breaks and tabs
# (refused in keys only), other C0 controls, DEL and C1 controls, lone surrogates, quotes and
# backslashes (escaped in JSON without being refused), and non-ASCII text.
_CHARACTERS = st.sampled_from(
    [
        "a",
        "é",
        "ก",
        " ",
        "\n",
        "\t",
        "\r",
        "\x00",
        "\x07",
        "\x1b",
        "\x7f",
        "\x85",
        "\x9f",
        "\ud800",
        '"',
        "\\",
        "/",
    ]
)
_TEXT = st.lists(_CHARACTERS, max_size=6).map("".join)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_TEXT, _JSON, max_size=5))
def test_the_text_check_from_canonical_text_agrees_with_the_full_walk(record: dict) -> None:
    """The push checks a record's text from its canonical JSON when it can: it must find exactly
    what walking the record finds (nothing, or the same problems)."""
    hashed = validation.hash_and_text(record)
    canonical = hashed[1] if hashed is not None else None
    assert validation.check_text_of(record, canonical) == validation.check_text(record)


@pytest.mark.parametrize(
    "record",
    [
        {"notes": "two lines\nand a tab\there, a return\r", "answers": {"q1": "plain"}},
        {"notes": 'façade, nº 3, «quoted» \\ and "escaped"'},
        {"answers": {"q1\nq2": "a key over two lines"}},
        {"answers": [{"ok": "fine\n"}, {"tab\tkey": 1}]},
        {"notes": "a C1 control \x85 after a line\n"},
        {"notes": "DEL \x7f"},
        {"notes": "a bell \x07"},
        {"score": float("inf")},
        {"notes": "the word NaN is text"},
    ],
)
def test_the_text_check_from_canonical_text_agrees_with_the_walk_on_line_breaks_and_controls(
    record: dict,
) -> None:
    hashed = validation.hash_and_text(record)
    canonical = hashed[1] if hashed is not None else None
    assert validation.check_text_of(record, canonical) == validation.check_text(record)


def test_probe_ticks_are_stored_and_pulled_back_unchanged(testapp, world) -> None:
    tablet = world.tablet()
    ticks = {"details": [2, 0], "budget_line_details": []}
    uuid, record = new_uuid(), make_record(tablet.mint(), probes_used=ticks)
    result = tablet.push(testapp, [change(uuid, 0, record)]).json["results"][0]
    assert result["result"] == "created", result
    assert result["content_hash"] == validation.content_hash(record)
    pulled = testapp.get("/api/v1/sync/changes?study=ocsea&limit=1000", headers=tablet.headers).json
    entry = next(e for e in pulled["changes"] if e["key"] == uuid)
    assert entry["object"]["record"] == record and entry["object"]["record"]["probes_used"] == ticks
    # No ticks at all, an empty object and null are all valid (older tablets send none).
    for value in ({}, None):
        other = make_record(tablet.mint(), probes_used=value)
        assert tablet.push(testapp, [change(new_uuid(), 0, other)]).json["results"][0]["result"] == "created"
    # Without the instrument (it could not be found), only the shape is checked.
    assert validation.check_probes_used({"details": [0]}, None, {}, {}) == []
    assert validation.check_probes_used({"details": [0, 0]}, None, {}, {}) == [
        ("probes_used.details[1]", "the same probe as probes_used.details[0]")
    ]
