"""The studies API: create (global admins), list what the caller may see, read the configuration,
add and update countries and research activities (admins of the study), every change audited."""

from __future__ import annotations

import json
from typing import Any

import pytest
import webtest
from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.audit.models import AuditEvent
from surveykit.studies import services as studies
from surveykit.studies.models import Country

STUDIES = "/api/v1/studies"
ENVELOPE_KEYS = {"status", "code", "message", "details"}


def assert_envelope(response: webtest.TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_int == status, response.text
    body = response.json
    assert set(body) == ENVELOPE_KEYS
    assert (body["status"], body["code"]) == (status, code)
    return body


def paths(body: dict[str, Any]) -> list[str]:
    return [detail["path"] for detail in body["details"]]


def audit_events(dbsession: Session, prefix: str = "study.") -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(
            select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.id)
        )
    )


def send(testapp: webtest.TestApp, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    return testapp.request(
        url,
        method=method,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
        expect_errors=True,
    )


@pytest.fixture
def ocsea(accounts: Any, dbsession: Session) -> Any:
    study = accounts.study("ocsea", ("KE", "TZ"))
    studies.add_activity(dbsession, study, "RA1", "Interviews with government duty bearers")
    accounts.study("other", ("KE",))
    return study


def test_a_global_admin_creates_and_configures_a_study(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    admin = accounts.headers("admin")
    created = send(testapp, "POST", STUDIES, {"slug": "ocsea", "name": "Disrupting Harm"}, admin)
    assert created.status_int == 201, created.text
    assert created.json == {
        "slug": "ocsea",
        "name": "Disrupting Harm",
        "created_at": created.json["created_at"],
        "activities": [],
        "countries": [],
    }
    kenya = send(
        testapp,
        "POST",
        f"{STUDIES}/ocsea/countries",
        {"code": "KE", "name": "Kenya", "region": "Southern and Eastern Africa", "languages": ["en", "sw"]},
        admin,
    )
    assert kenya.status_int == 201, kenya.text
    # Cambodia coded CA by the study, though its ISO code is KH: the study's code stands.
    send(testapp, "POST", f"{STUDIES}/ocsea/countries", {"code": "CA", "name": "Cambodia"}, admin)
    ra1 = send(testapp, "POST", f"{STUDIES}/ocsea/activities", {"code": "RA1", "name": "Duty bearers"}, admin)
    assert ra1.status_int == 201 and ra1.json == {"code": "RA1", "name": "Duty bearers"}

    updated = send(
        testapp,
        "PATCH",
        f"{STUDIES}/ocsea/countries/CA",
        {"region": "Southeast Asia", "languages": ["km", "en"]},
        admin,
    )
    assert updated.json == {
        "code": "CA",
        "name": "Cambodia",
        "region": "Southeast Asia",
        "languages": ["km", "en"],
    }
    renamed = send(
        testapp, "PATCH", f"{STUDIES}/ocsea/activities/RA1", {"name": "Government duty bearers"}, admin
    )
    assert renamed.json == {"code": "RA1", "name": "Government duty bearers"}
    cleared = send(testapp, "PATCH", f"{STUDIES}/ocsea/countries/KE", {"region": None}, admin)
    assert cleared.json["region"] is None

    shown = testapp.get(f"{STUDIES}/ocsea", headers=admin).json
    assert shown["activities"] == [{"code": "RA1", "name": "Government duty bearers"}]
    assert shown["countries"] == [
        {"code": "CA", "name": "Cambodia", "region": "Southeast Asia", "languages": ["km", "en"]},
        {"code": "KE", "name": "Kenya", "region": None, "languages": ["en", "sw"]},
    ]
    assert [(e.action, e.target) for e in audit_events(dbsession)] == [
        ("study.create", "ocsea"),
        ("study.add_country", "ocsea/KE"),
        ("study.add_country", "ocsea/CA"),
        ("study.add_activity", "ocsea/RA1"),
        ("study.update_country", "ocsea/CA"),
        ("study.update_activity", "ocsea/RA1"),
        ("study.update_country", "ocsea/KE"),
    ]
    changed = audit_events(dbsession)[4].details["changed"]
    assert changed == {"region": "Southeast Asia", "languages": ["km", "en"]}

    # An update that changes nothing is not an event.
    send(testapp, "PATCH", f"{STUDIES}/ocsea/activities/RA1", {"name": "Government duty bearers"}, admin)
    assert len(audit_events(dbsession)) == 7


def test_the_listing_shows_only_the_callers_studies(
    testapp: webtest.TestApp, accounts: Any, ocsea: Any
) -> None:
    listed = testapp.get(STUDIES, headers=accounts.headers("analyst", "ocsea", ["KE"])).json["studies"]
    assert listed == [
        {
            "slug": "ocsea",
            "name": "Study ocsea",
            "created_at": listed[0]["created_at"],
            "countries": ["KE", "KH", "TZ"],  # the accounts fixture adds KH with the grant
            "activities": ["RA1"],
        }
    ]
    everything = testapp.get(STUDIES, headers=accounts.headers("admin")).json["studies"]
    assert [s["slug"] for s in everything] == ["ocsea", "other"]
    nobody = accounts.user("no-grants")
    assert testapp.get(STUDIES, headers={"Authorization": f"Bearer {accounts.token(nobody)}"}).json == {
        "studies": []
    }
    assert_envelope(testapp.get(STUDIES, expect_errors=True), 401, "unauthenticated")


def test_grant_holders_read_a_study_and_only_admins_configure_it(
    testapp: webtest.TestApp, accounts: Any, ocsea: Any, dbsession: Session
) -> None:
    for role in ("fieldworker", "analyst", "coordinator"):
        headers = accounts.headers(role, "ocsea", ["KE"])
        assert testapp.get(f"{STUDIES}/ocsea", headers=headers).json["slug"] == "ocsea"
        assert_envelope(
            testapp.get(f"{STUDIES}/other", headers=headers, expect_errors=True), 403, "forbidden"
        )
        for method, url, body in (
            ("POST", f"{STUDIES}/ocsea/countries", {"code": "UG", "name": "Uganda"}),
            ("PATCH", f"{STUDIES}/ocsea/countries/KE", {"name": "Kenya"}),
            ("POST", f"{STUDIES}/ocsea/activities", {"code": "RA2", "name": "x"}),
            ("PATCH", f"{STUDIES}/ocsea/activities/RA1", {"name": "x"}),
            ("POST", STUDIES, {"slug": "mine"}),
        ):
            assert_envelope(send(testapp, method, url, body, headers), 403, "forbidden")
    study_admin = accounts.headers("admin", "ocsea")
    added = send(testapp, "POST", f"{STUDIES}/ocsea/countries", {"code": "UG", "name": "Uganda"}, study_admin)
    assert added.status_int == 201
    assert_envelope(send(testapp, "POST", STUDIES, {"slug": "mine"}, study_admin), 403, "forbidden")
    assert_envelope(
        send(testapp, "POST", f"{STUDIES}/other/countries", {"code": "UG", "name": "Uganda"}, study_admin),
        403,
        "forbidden",
    )
    refused = [e for e in audit_events(dbsession, "authz.") if e.outcome == "refused"]
    assert len(refused) >= 3 * 6 + 2


def test_unknown_studies_countries_and_activities_are_404_for_those_who_could_see_them(
    testapp: webtest.TestApp, accounts: Any, ocsea: Any
) -> None:
    admin = accounts.headers("admin")
    assert_envelope(testapp.get(f"{STUDIES}/nope", headers=admin, expect_errors=True), 404, "study_not_found")
    assert_envelope(
        send(testapp, "PATCH", f"{STUDIES}/ocsea/countries/UG", {"name": "Uganda"}, admin),
        404,
        "country_not_found",
    )
    assert_envelope(
        send(testapp, "PATCH", f"{STUDIES}/ocsea/activities/RA7", {"name": "x"}, admin),
        404,
        "activity_not_found",
    )
    assert_envelope(
        send(testapp, "POST", f"{STUDIES}/nope/countries", {"code": "UG", "name": "Uganda"}, admin),
        404,
        "study_not_found",
    )
    # Someone without a grant there cannot tell an unknown study from one they may not see.
    coordinator = accounts.headers("coordinator", "ocsea", ["KE"])
    assert_envelope(testapp.get(f"{STUDIES}/nope", headers=coordinator, expect_errors=True), 403, "forbidden")


@pytest.mark.parametrize(
    ("url", "body", "expected_paths"),
    [
        (STUDIES, {"slug": "Bad Slug"}, ["slug"]),
        (STUDIES, {"slug": "ok-slug", "name": 5}, ["name"]),
        (STUDIES, {"slug": "ok-slug", "owner": "x"}, ["owner"]),
        (STUDIES, {"slug": "ok-slug", "name": "x" * 301}, ["name"]),
        (STUDIES, {}, ["slug"]),
        (f"{STUDIES}/ocsea/countries", {"code": "ke", "name": "Kenya"}, ["code"]),
        (f"{STUDIES}/ocsea/countries", {"code": "KEN", "name": "Kenya"}, ["code"]),
        (f"{STUDIES}/ocsea/countries", {"code": "UG"}, ["name"]),
        (f"{STUDIES}/ocsea/countries", {"code": "UG", "name": "Uganda", "languages": "en"}, ["languages"]),
        (
            f"{STUDIES}/ocsea/countries",
            {"code": "UG", "name": "Uganda", "languages": ["English"]},
            ["languages[0]"],
        ),
        (
            f"{STUDIES}/ocsea/countries",
            {"code": "UG", "name": "Uganda", "languages": ["en", "en"]},
            ["languages"],
        ),
        (f"{STUDIES}/ocsea/countries", {"code": "UG", "name": "Uganda", "iso": "UG"}, ["iso"]),
        (f"{STUDIES}/ocsea/countries", {"code": "UG", "name": "Uganda\u0007"}, ["name"]),
        (f"{STUDIES}/ocsea/activities", {"code": "RA10", "name": "x"}, ["code"]),
        (f"{STUDIES}/ocsea/activities", {"code": "RA0", "name": "x"}, ["code"]),
        (f"{STUDIES}/ocsea/activities", {"code": "RA2", "name": "  "}, ["name"]),
    ],
)
def test_bad_bodies_get_field_errors(
    testapp: webtest.TestApp, accounts: Any, ocsea: Any, url: str, body: Any, expected_paths: list[str]
) -> None:
    response = send(testapp, "POST", url, body, accounts.headers("admin"))
    assert paths(assert_envelope(response, 422, "invalid_input")) == expected_paths


def test_updates_are_strict_too(testapp: webtest.TestApp, accounts: Any, ocsea: Any) -> None:
    admin = accounts.headers("admin")
    for url, body, expected in (
        (f"{STUDIES}/ocsea/countries/KE", {}, [""]),
        (f"{STUDIES}/ocsea/countries/KE", {"code": "KX"}, ["code"]),
        (f"{STUDIES}/ocsea/countries/KE", {"name": None}, ["name"]),
        (f"{STUDIES}/ocsea/activities/RA1", {"code": "RA2"}, ["code", "name"]),
        (f"{STUDIES}/ocsea/activities/RA1", {}, ["name"]),
    ):
        assert (
            paths(assert_envelope(send(testapp, "PATCH", url, body, admin), 422, "invalid_input")) == expected
        )
    not_json = testapp.post(
        f"{STUDIES}/ocsea/activities",
        "code=RA2",
        headers=admin,
        content_type="text/plain",
        expect_errors=True,
    )
    assert_envelope(not_json, 415, "unsupported_media_type")
    broken = testapp.post(
        f"{STUDIES}/ocsea/activities", "{", headers=admin, content_type="application/json", expect_errors=True
    )
    assert_envelope(broken, 400, "malformed_json")


def test_duplicates_are_conflicts(
    testapp: webtest.TestApp, accounts: Any, ocsea: Any, dbsession: Session
) -> None:
    admin = accounts.headers("admin")
    assert_envelope(send(testapp, "POST", STUDIES, {"slug": "ocsea"}, admin), 409, "conflict")
    assert_envelope(
        send(testapp, "POST", f"{STUDIES}/ocsea/countries", {"code": "KE", "name": "Kenya"}, admin),
        409,
        "conflict",
    )
    assert_envelope(
        send(testapp, "POST", f"{STUDIES}/ocsea/activities", {"code": "RA1", "name": "x"}, admin),
        409,
        "conflict",
    )
    assert len(list(dbsession.scalars(select(Country).where(Country.code == "KE")))) == 2  # ocsea and other
