"""Paging and searching a country's registry: keyset pages in ID order, filters, clear refusals."""

from __future__ import annotations

from typing import Any

import pytest
import webtest
from sqlalchemy.orm import Session

from surveykit.participants import ids
from surveykit.participants import services as registry
from surveykit.participants.models import Participant
from surveykit.studies import services as studies

URL = "/api/v1/studies/ocsea/countries/KE/participants"
AGENCIES = ["Ministry of ICT", "National Police Service", "Office of the 100% Director", "ministry of health"]


@pytest.fixture
def people(accounts: Any, dbsession: Session) -> list[Participant]:
    """KE: 40 RA1 interviews (every third of two officials) and 12 RA2 ones; TZ: 5. Every fifth
    KE participant withdrawn; positions on some."""
    study = accounts.study("ocsea", ("KE", "TZ"))
    for code in ("RA1", "RA2"):
        studies.add_activity(dbsession, study, code, code)
    made = []
    for activity, country, interviews in (("RA1", "KE", 40), ("RA2", "KE", 12), ("RA1", "TZ", 5)):
        numbers = ids.allocate_interview_numbers(dbsession, study.id, activity, country, interviews)
        for n, number in enumerate(numbers):
            for letter in "AB" if n % 3 == 0 else "A":
                person = Participant(
                    study_id=study.id,
                    activity=activity,
                    country_code=country,
                    interview_number=number,
                    letter=letter,
                    pid=ids.format_pid(activity, country, number, letter),
                    agency=AGENCIES[(n + len(made)) % len(AGENCIES)],
                    position="Director of Cyber Security" if n % 4 == 0 else None,
                    status="withdrawn" if len(made) % 5 == 0 else "planned",
                    created_by="tests",
                )
                dbsession.add(person)
                made.append(person)
    dbsession.flush()
    return made


def _kenya(people: list[Participant]) -> list[Participant]:
    return sorted(
        (p for p in people if p.country_code == "KE"),
        key=lambda p: (p.activity, p.interview_number, p.letter),
    )


def _walk(testapp: webtest.TestApp, headers: dict[str, str], url: str) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    while url:
        body = testapp.get(url, headers=headers).json
        pages += 1
        seen += [p["pid"] for p in body["participants"]]
        url = body.get("next")
        assert ("next_after" in body) == bool(url)
        if url:
            assert body["next_after"] == body["participants"][-1]["pid"]
    return seen, pages


def test_pages_walk_the_whole_country_in_id_order(testapp, accounts, people) -> None:
    headers = accounts.headers("coordinator", "ocsea", ["KE"])
    expected = [p.pid for p in _kenya(people)]
    seen, pages = _walk(testapp, headers, f"{URL}?limit=7")
    assert seen == expected
    assert pages == -(-len(expected) // 7)
    # The default page holds them all here, and says there is no more.
    body = testapp.get(URL, headers=headers).json
    assert [p["pid"] for p in body["participants"]] == expected and "next" not in body


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ("activity=RA2", lambda p: p.activity == "RA2"),
        ("withdrawn=true", lambda p: p.status == "withdrawn"),
        ("withdrawn=false", lambda p: p.status != "withdrawn"),
        ("status=planned", lambda p: p.status == "planned"),
        ("id_prefix=RA1-KE-0", lambda p: p.pid.startswith("RA1-KE-0")),
        ("id_prefix=ra2-ke-1", lambda p: p.pid.startswith("RA2-KE-1")),
        ("agency=MINISTRY", lambda p: "ministry" in p.agency.lower()),
        # A % in the search is a percent sign, not a wildcard.
        ("agency=100%25", lambda p: "100%" in p.agency),
        ("position=cyber", lambda p: p.position is not None),
        (
            "agency=police&withdrawn=false&activity=RA1",
            lambda p: "Police" in p.agency and p.status != "withdrawn" and p.activity == "RA1",
        ),
    ],
)
def test_filters_narrow_and_page_together(query: str, keep: Any, testapp, accounts, people) -> None:
    headers = accounts.headers("analyst", "ocsea", ["KE"])
    expected = [p.pid for p in _kenya(people) if keep(p)]
    assert expected, "the fixture must hold some matches"
    seen, _pages = _walk(testapp, headers, f"{URL}?{query}&limit=3")
    assert seen == expected


def test_the_service_pages_with_filters(dbsession, people) -> None:
    study = studies.get_study(dbsession, "ocsea")
    filters = registry.ParticipantFilter(activity="RA1", withdrawn=False)
    expected = [p.pid for p in _kenya(people) if p.activity == "RA1" and p.status != "withdrawn"]
    seen: list[str] = []
    after = None
    while True:
        page = registry.participant_page(dbsession, study, "KE", filters, after, limit=10)
        seen += [p.pid for p in page.participants]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == expected
    # A page ending on the last match says so.
    exact = registry.participant_page(dbsession, study, "KE", filters, limit=len(expected))
    assert exact.next_after is None and len(exact.participants) == len(expected)
    # Participants registered after a page was read come after it, never into it.
    first = registry.participant_page(dbsession, study, "KE", limit=5)
    registry.register_interview(dbsession, study, "KE", "RA1", [registry.NewParticipant("Late agency")], "t")
    second = registry.participant_page(dbsession, study, "KE", after=first.next_after, limit=5)
    assert [p.pid for p in second.participants] == [p.pid for p in _kenya(people)[5:10]]


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=RA1-KE-4", "after"),
        ("after=nonsense", "after"),
        ("withdrawn=maybe", "withdrawn"),
        ("id_prefix=RA1%20KE", "id_prefix"),
        ("agency=", "agency"),
        ("status=gone", "status"),
        ("activity=RA0", "activity"),
        ("name=Amina", "name"),
    ],
)
def test_bad_filters_are_422_with_the_parameter(query: str, path: str, testapp, accounts, people) -> None:
    headers = accounts.headers("coordinator", "ocsea", ["KE"])
    answer = testapp.get(f"{URL}?{query}", headers=headers, status=422)
    assert answer.json["code"] == "invalid_input"
    assert [(d["location"], d["path"]) for d in answer.json["details"]] == [("querystring", path)]


def test_paging_keeps_to_the_callers_country(testapp, accounts, people) -> None:
    tz = accounts.headers("coordinator", "ocsea", ["TZ"])
    testapp.get(f"{URL}?limit=2", headers=tz, status=403)
    body = testapp.get(
        "/api/v1/studies/ocsea/countries/TZ/participants?limit=2&after=RA1-KE-02-A", headers=tz
    ).json
    # An ID of another country as the cursor is only a position: TZ's IDs after it.
    assert [p["pid"] for p in body["participants"]] == ["RA1-TZ-03-A", "RA1-TZ-04-A"]
