"""The published JSON Schema of a record accepts exactly what the server's validation accepts.

Over generated records (hypothesis), for the checks a JSON Schema can express: a record is valid by
``record_schema(instrument)`` if and only if ``surveykit.sync.validation`` finds no problem in it.
The generator stays off what only the server can check (``record_schema.NOT_EXPRESSIBLE``): every
study, country, activity and instrument named exists, no question has a relevance condition or a
binding, there are no quotes, times lie in the plausible window, and no whole number is written
with a fraction (``1.0``, an integer to JSON Schema, a float to the server).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from test_sync_support import SLUG, SyncWorld, change, make_record, new_uuid, sync_definition

from surveykit.sync import validation
from surveykit.sync.record_schema import change_schema, record_schema
from surveykit.sync.validation import CompiledInstrument, QuestionRule

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _rule(qid: str, qtype: str, **kw: Any) -> QuestionRule:
    choices = kw.pop("choices", None)
    return QuestionRule(
        id=qid,
        type=qtype,
        required=kw.pop("required", False),
        choices=frozenset(choices) if choices else None,
        minimum=kw.pop("minimum", None),
        maximum=kw.pop("maximum", None),
        relevance=None,
        relevance_source=None,
        probes=kw.pop("probes", 0),
    )


RULES = (
    _rule("story", "long_text", required=True, probes=3),
    _rule("title", "short_text", probes=1),
    _rule("level", "single_choice", choices=["low", "high"], required=True),
    _rule("partners", "multiple_choice", choices=["ngo", "police", "school"]),
    _rule("focal", "yes_no"),
    _rule("staff", "number", minimum=0, maximum=500),
    _rule("share", "number"),
    _rule("since", "date"),
)
INSTRUMENT = CompiledInstrument(
    slug="ra1-test",
    version=3,
    content_hash="x",
    activity="RA1",
    study="ocsea",
    languages=("en", "km"),
    questions=RULES,
    by_id={rule.id: rule for rule in RULES},
)
SCHEMA = record_schema(INSTRUMENT)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())

BASE: dict[str, Any] = {
    "study": "ocsea",
    "country": "KE",
    "activity": "RA1",
    "interview_number": 12,
    "participants": [
        {
            "letter": "A",
            "agency": "Ministry of Justice",
            "position": None,
            "consent_given": True,
            "consent_date": "2026-05-04",
            "consent_recorded_how": "written_form",
        }
    ],
    "instrument": {"slug": "ra1-test", "version": 3},
    "language": "en",
    "mode": "in_person",
    "started_at": "2026-05-04T09:30:00+03:00",
    "ended_at": "2026-05-04T10:45:00+03:00",
    "status": "complete",
    "answers": {"story": "It began in 2019.", "level": "high"},
    "notes": "",
}

ODD = st.sampled_from([None, True, 0, 1.5, "", " ", "x", [], {}, "a\x00b", "tab\tin", "\x85", 10**16])
TEXT = st.sampled_from(["", "  ", "Ministry of Interior", "a\nb", "x" * 501, "x" * 300, "bell\x07", "ok\t"])
TIMES = st.sampled_from(
    [
        "2026-05-04T09:30:00+03:00",
        "2026-05-04T06:00:00Z",
        "2026-05-04 09:30:00+03:00",
        "2026-05-04T09:30:00",
        "2026-13-04T09:30:00Z",
        "2026-05-04T09:30:00+15:00",
        "1999-12-31T23:00:00Z",
        "2026-05-04T09:30:00.123456+14:00",
        "2026-02-30T09:30:00Z",
    ]
)
ANSWERS: dict[str, Any] = {
    "story": st.one_of(ODD, TEXT),
    "title": st.one_of(ODD, TEXT),
    "level": st.one_of(ODD, st.sampled_from(["low", "high", "medium"])),
    "partners": st.one_of(ODD, st.lists(st.sampled_from(["ngo", "police", "school", "army", 3]), max_size=4)),
    "focal": st.one_of(ODD, st.booleans()),
    "staff": st.one_of(ODD, st.sampled_from([0, 500, 501, -1, 12.5, 1e-301, 1e-299])),
    "share": st.one_of(ODD, st.sampled_from([10**15, -(10**15) - 1, 2.5, -1e-320, 0.0, 1e15 + 2])),
    "since": st.one_of(
        ODD, st.sampled_from(["1860-01-01", "1799-12-31", "2100-12-31", "2101-01-01", "2024-02-30", "24-1-1"])
    ),
    "unknown_q": st.one_of(ODD, TEXT),
}
PARTICIPANT_FIELDS: dict[str, Any] = {
    "letter": st.sampled_from(["A", "B", "a", None]),
    "agency": st.one_of(ODD, TEXT),
    "position": st.one_of(ODD, TEXT),
    "consent_given": st.one_of(st.booleans(), st.none(), st.just("yes")),
    "consent_date": st.sampled_from([None, "2026-05-04", "1999-01-01", "2026-5-4", "2026-02-31", 3]),
    "consent_recorded_how": st.sampled_from([None, "written_form", "verbal_audio", "by fax", "", 1]),
    "name": st.just("Someone"),
}
TOP: dict[str, Any] = {
    "study": st.sampled_from(["ocsea", "OCSEA", "o", 5]),
    "country": st.sampled_from(["KE", "ke", "KEN"]),
    "activity": st.sampled_from(["RA1", "RA0", "RA10"]),
    "interview_number": st.sampled_from([1, 99_999, 0, 100_000, 1.5, True, "3"]),
    "instrument": st.sampled_from(
        [{"slug": "ra1-test", "version": 3, "x": 1}, {"slug": "ra1-test"}, {"slug": 3, "version": 3}, "ra1"]
    ),
    "language": st.sampled_from(["en", "km", "fr", 1]),
    "mode": st.sampled_from(["in_person", "virtual", "phone", "email", None]),
    "started_at": st.one_of(TIMES, ODD),
    "ended_at": st.sampled_from([None, "2026-05-04T12:45:00+03:00", "2026-05-04T10:45", 7]),
    "status": st.sampled_from(["draft", "complete", "done"]),
    "notes": st.one_of(ODD, TEXT),
    "quotes": st.sampled_from([None, [], "q", [1]]),
    "probes_used": st.one_of(
        st.sampled_from([None, {}, [], "x", {"story": 1}, {"unknown_q": [0]}, {"level": [0]}]),
        st.dictionaries(
            st.sampled_from(["story", "title", "Bad Key"]),
            st.one_of(
                st.lists(st.integers(0, 3), max_size=3),
                st.lists(st.sampled_from([0, 1, -1, True, "0", 2.5, None]), max_size=2),
            ),
            max_size=2,
        ),
    ),
    "interviewer": st.just("someone"),
}


@st.composite
def records(draw: Any) -> dict[str, Any]:
    record = copy.deepcopy(BASE)
    for name in draw(st.lists(st.sampled_from(sorted(TOP)), max_size=3, unique=True)):
        if draw(st.integers(0, 5)) == 0 and name in record:
            del record[name]
        else:
            record[name] = draw(TOP[name])
    people = draw(st.integers(0, 3))
    if people != 1:
        record["participants"] = [
            {**BASE["participants"][0], "letter": "ABC"[i], "agency": f"Agency {i}"} for i in range(people)
        ]
    for index, participant in enumerate(record["participants"]):
        for name in draw(st.lists(st.sampled_from(sorted(PARTICIPANT_FIELDS)), max_size=3, unique=True)):
            if draw(st.integers(0, 4)) == 0 and name in participant:
                del participant[name]
            else:
                participant[name] = draw(PARTICIPANT_FIELDS[name])
        if index == 0 and draw(st.integers(0, 9)) == 0:
            record["participants"][0] = "A"
    if draw(st.integers(0, 20)) == 0:
        record["answers"] = draw(st.sampled_from([[], "x", None]))
    else:
        for qid in draw(st.lists(st.sampled_from(sorted(ANSWERS)), max_size=4, unique=True)):
            if draw(st.integers(0, 4)) == 0:
                record["answers"].pop(qid, None)
            else:
                record["answers"][qid] = draw(ANSWERS[qid])
    return record


def server_accepts(record: Any) -> bool:
    key, problems = validation.read_key(record)
    if key is None:
        return False
    _, ref_problems = validation.read_instrument_ref(record)
    return not (
        problems
        or ref_problems
        or validation.check_text(record)
        or validation.check_record(record, INSTRUMENT, NOW)
    )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=records())
def test_the_record_schema_accepts_what_the_server_accepts(record: dict[str, Any]) -> None:
    problems = validation.check_record(record, INSTRUMENT, NOW) if isinstance(record, dict) else []
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(record)]
    assert (not errors) == server_accepts(record), (errors, problems)


@pytest.mark.parametrize(
    ("ticks", "valid"),
    [
        ({"story": [0, 2], "title": [0]}, True),
        ({"story": []}, True),
        ({}, True),
        (None, True),
        ({"story": [3]}, False),
        ({"title": [1]}, False),
        ({"story": [1, 1]}, False),
        ({"story": [-1]}, False),
        ({"story": [True]}, False),
        ({"story": ["0"]}, False),
        ({"story": 0}, False),
        ({"level": [0]}, False),
        ({"unknown_q": [0]}, False),
        ([0], False),
    ],
)
def test_the_schema_and_the_server_agree_on_probes_used(ticks: Any, valid: bool) -> None:
    record = copy.deepcopy(BASE)
    record["probes_used"] = ticks
    assert server_accepts(record) is valid
    assert (not list(VALIDATOR.iter_errors(record))) is valid


def test_the_base_record_is_valid_and_a_change_carries_it() -> None:
    assert server_accepts(BASE)
    assert not list(VALIDATOR.iter_errors(BASE))
    change = {"uuid": "7d4f1c2e-0b9a-4e57-9a52-3f0c1d2e4b6a", "base_revision": 0, "record": BASE}
    jsonschema.Draft202012Validator(change_schema(SCHEMA)).validate(change)
    jsonschema.Draft202012Validator.check_schema(record_schema())
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


# ------------------------------------------------------------------ the served schema, over HTTP


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


SCHEMA_URL = f"/api/v1/instruments/{SLUG}/versions/1/record-schema"


def test_a_tablet_checks_a_record_offline_and_the_server_agrees(testapp: Any, world: SyncWorld) -> None:
    tablet = world.tablet()
    response = testapp.get(SCHEMA_URL, headers=tablet.headers, status=200)
    schema = response.json
    jsonschema.Draft202012Validator.check_schema(schema)
    checker = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    good, bad = make_record(tablet.mint()), make_record(tablet.mint())
    choice = next(q for q in sync_definition()["sections"][0]["questions"] if q["type"] == "single_choice")
    bad["answers"][choice["id"]] = "not-a-choice"
    assert not list(checker.iter_errors(good))
    assert [list(e.absolute_path) for e in checker.iter_errors(bad)] == [["answers", choice["id"]]]
    results = tablet.push(testapp, [change(new_uuid(), 0, good), change(new_uuid(), 0, bad)]).json["results"]
    assert [r["result"] for r in results] == ["created", "rejected"]
    assert results[1]["errors"][0]["path"] == f"changes[1].record.answers.{choice['id']}"
    # Versions never change: the schema is cached like the version, and revalidated by its ETag.
    assert response.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    etag = response.headers["ETag"]
    again = testapp.get(SCHEMA_URL, headers={**tablet.headers, "If-None-Match": etag}, status=304)
    assert again.headers["ETag"] == etag and again.body == b""


def test_the_record_schema_needs_a_token_and_an_existing_version(testapp: Any, world: SyncWorld) -> None:
    assert testapp.get(SCHEMA_URL, status=401).json["code"] == "unauthenticated"
    headers = world.tablet().headers
    for url, code in [
        (f"/api/v1/instruments/{SLUG}/versions/9/record-schema", "version_not_found"),
        (f"/api/v1/instruments/{SLUG}/versions/x/record-schema", "version_not_found"),
        ("/api/v1/instruments/no-such-thing/versions/1/record-schema", "instrument_not_found"),
    ]:
        assert testapp.get(url, headers=headers, status=404).json["code"] == code
