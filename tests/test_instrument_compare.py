"""Comparing versions of an instrument (surveykit.instruments.compare), as functions and over the API:
each kind of change on hand-made pairs, and what the type-change guard of publishing would refuse."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import webtest
from instrument_samples import minimal_definition
from sqlalchemy.orm import Session

from surveykit.instruments import compare, services

ENVELOPE_KEYS = {"status", "code", "message", "details"}
SLUG = "ocsea-debrief"


def _valid(data: dict[str, Any]) -> dict[str, Any]:
    return services.validate_definition(copy.deepcopy(data))


def _changes(result: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [change for change in result["changes"] if kind is None or change["kind"] == kind]


def _kinds(result: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((change["question"], change["kind"]) for change in result["changes"])


# --- the comparison itself -------------------------------------------------------------------------


def test_a_definition_compared_with_itself_has_no_changes() -> None:
    definition = _valid(minimal_definition())
    result = compare.compare_definitions(definition, copy.deepcopy(definition))
    assert result["identical"] is True and result["changes"] == [] and result["publishable"] is True
    assert set(result["counts"]) == set(compare.CHANGE_KINDS) and not any(result["counts"].values())


def test_added_and_removed_questions() -> None:
    old = minimal_definition()
    new = copy.deepcopy(old)
    new["sections"][0]["questions"].pop(2)  # mode
    new["sections"][0]["questions"].append({"id": "venue", "type": "short_text", "prompt": "Where?"})
    result = compare.compare_definitions(_valid(old), _valid(new))
    assert _kinds(result) == [("mode", "removed"), ("venue", "added")]
    [added] = _changes(result, "added")
    assert added["to"] == {"section": ["first"], "position": 3, "path": "sections[0].questions[2]"}
    assert added["refused"] is False
    [removed] = _changes(result, "removed")
    assert removed["from"]["path"] == "sections[0].questions[2]"
    assert result["counts"]["added"] == result["counts"]["removed"] == 1 and not result["identical"]


def test_moves_to_another_section_and_within_one() -> None:
    old = minimal_definition()
    new = copy.deepcopy(old)
    first = new["sections"][0]["questions"]
    # mode goes to the sub-section; consent and details keep their order (a question inserted
    # before them does not move them).
    mode = first.pop(2)
    new["sections"][1]["sections"][0]["questions"].insert(0, mode)
    first.insert(0, {"id": "opening", "type": "long_text", "prompt": "Opening remarks"})
    result = compare.compare_definitions(_valid(old), _valid(new))
    assert _kinds(result) == [("mode", "moved"), ("opening", "added")]
    [moved] = _changes(result, "moved")
    assert (moved["from"]["section"], moved["to"]["section"]) == (["first"], ["second", "second_sub"])
    assert moved["to"]["position"] == 1

    swapped = copy.deepcopy(old)
    questions = swapped["sections"][0]["questions"]
    questions[1], questions[2] = questions[2], questions[1]  # details after mode (still after consent)
    result = compare.compare_definitions(_valid(old), _valid(swapped))
    [moved] = _changes(result)
    assert moved["kind"] == "moved" and moved["question"] in {"details", "mode"}
    assert moved["from"]["section"] == moved["to"]["section"] == ["first"]


def test_rewording_is_reported_per_language() -> None:
    old = minimal_definition()
    new = copy.deepcopy(old)
    new["sections"][0]["questions"][0]["prompt"]["pt"] = "O consentimento foi dado?"
    new["sections"][0]["questions"][1]["prompt"] = {"en": "Describe what happened.", "pt": "Descreva."}
    result = compare.compare_definitions(_valid(old), _valid(new))
    assert sorted(
        (c["question"], c["language"], c["old"], c["new"]) for c in _changes(result, "reworded")
    ) == [
        ("consent", "pt", "Foi dado consentimento?", "O consentimento foi dado?"),
        ("details", "pt", None, "Descreva."),
    ]
    assert len(result["changes"]) == 2


def test_choices_relevance_probes_notes_required_and_bounds() -> None:
    old = minimal_definition()
    new = copy.deepcopy(old)
    mode = new["sections"][0]["questions"][2]
    labels = {choice["value"]: choice for choice in mode["choices"]}
    removed_value = mode["choices"][-1]["value"]
    kept_value = mode["choices"][0]["value"]
    mode["choices"] = [choice for choice in mode["choices"] if choice["value"] != removed_value]
    labels[kept_value]["label"] = {"en": "Face to face", "pt": labels[kept_value]["label"]["pt"]}
    mode["choices"].append({"value": "radio", "label": "Radio"})
    details = new["sections"][0]["questions"][1]
    details["relevance"] = "$consent == true and $agency != null"
    details["probes"] = ["Who was there?", "Who spoke first?"]
    details["notes"] = "Do not press; note silences."
    details["required"] = True
    people = new["sections"][1]["sections"][0]["questions"][0]
    people["max"] = people.get("max", 0) + 1
    old_mode = old["sections"][0]["questions"][2]
    old_kept_label = {c["value"]: c["label"] for c in old_mode["choices"]}[kept_value]
    result = compare.compare_definitions(_valid(old), _valid(new))
    assert _kinds(result) == sorted(
        [
            ("mode", "choice_removed"),
            ("mode", "choice_relabelled"),
            ("mode", "choice_added"),
            ("details", "relevance_changed"),
            ("details", "probes_changed"),
            ("details", "notes_changed"),
            ("details", "required_changed"),
            ("people", "setting_changed"),
        ]
    )
    [relabelled] = _changes(result, "choice_relabelled")
    english = old_kept_label["en"] if isinstance(old_kept_label, dict) else old_kept_label
    assert relabelled == {
        "question": "mode",
        "kind": "choice_relabelled",
        "value": kept_value,
        "language": "en",
        "old": english,
        "new": "Face to face",
    }
    assert _changes(result, "choice_added")[0]["label"] == {"en": "Radio"}
    assert _changes(result, "choice_removed")[0]["value"] == removed_value
    [relevance] = _changes(result, "relevance_changed")
    assert (relevance["old"], relevance["new"]) == (
        "$consent == true",
        "$consent == true and $agency != null",
    )
    [probes] = _changes(result, "probes_changed")
    assert probes["old"] == [{"en": "Who was there?"}]
    assert probes["new"] == [{"en": "Who was there?"}, {"en": "Who spoke first?"}]
    [notes] = _changes(result, "notes_changed")
    assert (notes["old"], notes["new"]) == ({"en": "Do not press."}, {"en": "Do not press; note silences."})
    [required] = _changes(result, "required_changed")
    assert (required["old"], required["new"]) == (False, True)
    [bound] = _changes(result, "setting_changed")
    assert bound["setting"] == "max" and bound["new"] == bound["old"] + 1
    # Nothing here is a type change: publishing it would pass the guard.
    assert result["refused"] == [] and result["publishable"] is True


# --- against the stored versions: the type-change guard ---------------------------------------------


def _publish(session: Session, data: dict[str, Any]) -> int:
    result = services.publish(session, _valid(data))
    session.flush()
    return result.version


def test_a_type_change_is_shown_as_the_guard_would_refuse_it(dbsession: Session) -> None:
    old = minimal_definition(SLUG)
    _publish(dbsession, old)
    draft = copy.deepcopy(old)
    draft["sections"][0]["questions"][1]["type"] = "short_text"  # details: long_text -> short_text
    draft = _valid(draft)
    result = compare.compare_with_draft(dbsession, SLUG, None, draft)
    [change] = _changes(result, "type_changed")
    assert (change["question"], change["old"], change["new"]) == ("details", "long_text", "short_text")
    # The very refusal publishing gives.
    with pytest.raises(services.DefinitionError) as refused:
        services.publish(dbsession, draft)
    [(path, message)] = refused.value.errors
    assert change["refused"] is True and change["refusal"] == message
    assert result["refused"] == [{"path": path, "message": message, "question": "details"}]
    assert result["publishable"] is False
    assert (result["from"], result["to"]) == (
        {"version": 1, "draft": False},
        {"version": None, "draft": True},
    )


def test_the_guard_remembers_a_question_removed_earlier(dbsession: Session) -> None:
    first = minimal_definition(SLUG)
    _publish(dbsession, first)
    second = copy.deepcopy(first)
    second["sections"][0]["questions"].pop(1)  # details (long_text) is dropped in version 2
    _publish(dbsession, second)
    draft = copy.deepcopy(second)
    draft["sections"][0]["questions"].append({"id": "details", "type": "number", "prompt": "How many?"})
    result = compare.compare_with_draft(dbsession, SLUG, 2, _valid(draft))
    [added] = _changes(result)
    assert (added["question"], added["kind"], added["refused"]) == ("details", "added", True)
    assert "was long_text in version 1" in added["refusal"]
    assert result["publishable"] is False
    # From version 1, the same draft shows the type change itself.
    result = compare.compare_with_draft(dbsession, SLUG, 1, _valid(draft))
    [changed] = _changes(result, "type_changed")
    assert changed["refused"] is True and _changes(result, "moved")[0]["question"] == "details"


def test_stored_versions_compare_with_defaults(dbsession: Session) -> None:
    first = minimal_definition(SLUG)
    _publish(dbsession, first)
    second = copy.deepcopy(first)
    second["sections"][0]["questions"][0]["prompt"]["en"] = "Did the participant consent?"
    _publish(dbsession, second)
    result = compare.compare_versions(dbsession, SLUG, None)
    assert (result["from"]["version"], result["to"]["version"]) == (1, 2)
    assert _kinds(result) == [("consent", "reworded")] and result["publishable"] is True
    backwards = compare.compare_versions(dbsession, SLUG, 2, 1)
    assert [(c["old"], c["new"]) for c in backwards["changes"]] == [
        ("Did the participant consent?", "Was consent given?")
    ]
    same = compare.compare_versions(dbsession, SLUG, 2, 2)
    assert same["identical"] is True and same["changes"] == []
    with pytest.raises(services.VersionNotFound):
        compare.compare_versions(dbsession, SLUG, 1, 3)
    with pytest.raises(services.InstrumentNotFound):
        compare.compare_versions(dbsession, "no-such", 1, 2)


# --- the API ------------------------------------------------------------------------------------------


@pytest.fixture
def versions(dbsession: Session, accounts: Any) -> dict[str, Any]:
    """ocsea-debrief versions 1 and 2 (study ocsea), other-debrief (study other)."""
    accounts.study("ocsea", ("KE",))
    accounts.study("other", ("KE",))
    first = minimal_definition(SLUG)
    first["study"] = "ocsea"
    _publish(dbsession, first)
    second = copy.deepcopy(first)
    second["sections"][0]["questions"][1]["relevance"] = "$consent == false"
    _publish(dbsession, second)
    other = minimal_definition("other-debrief")
    other["study"] = "other"
    _publish(dbsession, other)
    return second


def _envelope(response: webtest.TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_int == status, response.text
    assert response.content_type == "application/json"
    body = response.json
    assert set(body) == ENVELOPE_KEYS and (body["status"], body["code"]) == (status, code)
    return body


def test_comparing_over_the_api(testapp: webtest.TestApp, accounts: Any, versions: dict[str, Any]) -> None:
    base = f"/api/v1/instruments/{SLUG}/compare"
    _envelope(testapp.get(f"{base}?from=1&to=2", expect_errors=True), 401, "unauthenticated")
    analyst = accounts.user("ke-analyst", "analyst", "ocsea", ["KE"])
    testapp.authorization = ("Bearer", accounts.token(analyst))
    result = testapp.get(f"{base}?from=1&to=2").json
    [change] = result["changes"]
    assert change == {
        "question": "details",
        "kind": "relevance_changed",
        "old": "$consent == true",
        "new": "$consent == false",
    }
    assert testapp.get(base).json["changes"] == result["changes"]  # from 1 to the current, 2
    assert testapp.get(f"{base}?from=2&to=2").json["changes"] == []

    draft = copy.deepcopy(versions)
    draft["sections"][0]["questions"][0]["type"] = "short_text"  # consent: yes_no -> short_text
    compared = testapp.post_json(f"{base}?from=1", draft).json
    assert _kinds(compared) == [("consent", "type_changed"), ("details", "relevance_changed")]
    assert compared["publishable"] is False and compared["refused"][0]["question"] == "consent"
    assert testapp.post_json(base, draft).json["from"] == {"version": 2, "draft": False}


def test_compare_errors(testapp: webtest.TestApp, accounts: Any, versions: dict[str, Any]) -> None:
    base = f"/api/v1/instruments/{SLUG}/compare"
    testapp.authorization = (
        "Bearer",
        accounts.token(accounts.user("ke-coord", "coordinator", "ocsea", ["KE"])),
    )
    _envelope(
        testapp.get("/api/v1/instruments/no-such/compare", expect_errors=True), 404, "instrument_not_found"
    )
    _envelope(testapp.get(f"{base}?from=1&to=9", expect_errors=True), 404, "version_not_found")
    _envelope(testapp.get(f"{base}?from=7", expect_errors=True), 404, "version_not_found")
    for query, field in (("from=abc", "from"), ("from=1&to=0", "to"), ("to=-1", "to"), ("from=1.5", "from")):
        body = _envelope(testapp.get(f"{base}?{query}", expect_errors=True), 400, "bad_request")
        assert [(d["location"], d["path"]) for d in body["details"]] == [("querystring", field)], query
    body = _envelope(testapp.get(f"{base}?from=1&from=2", expect_errors=True), 400, "bad_request")
    assert body["details"][0]["path"] == "from"
    _envelope(testapp.post_json(f"{base}?to=1", versions, expect_errors=True), 400, "bad_request")
    _envelope(testapp.post_json(f"{base}?from=5", versions, expect_errors=True), 404, "version_not_found")
    broken = copy.deepcopy(versions)
    broken["sections"][0]["questions"][0]["type"] = "maybe"
    body = _envelope(testapp.post_json(base, broken, expect_errors=True), 422, "invalid_input")
    assert body == testapp.post_json("/api/v1/instruments/validate", broken, expect_errors=True).json
    elsewhere = copy.deepcopy(versions)
    elsewhere["slug"] = "another-debrief"
    body = _envelope(testapp.post_json(base, elsewhere, expect_errors=True), 422, "invalid_input")
    assert body["details"][0]["path"] == "slug"
    # Another study's instrument: refused like reading it.
    _envelope(testapp.get("/api/v1/instruments/other-debrief/compare", expect_errors=True), 403, "forbidden")
    _envelope(
        testapp.post_json("/api/v1/instruments/other-debrief/compare", versions, expect_errors=True),
        403,
        "forbidden",
    )
