"""Publishing and retiring instruments reaches tablets through the change feed."""

from __future__ import annotations

import webtest
from instrument_samples import minimal_definition
from sqlalchemy.orm import Session

from surveykit.instruments import services


def _pull(testapp: webtest.TestApp, headers: dict[str, str]) -> list[dict]:
    return testapp.get("/api/v1/sync/changes", params={"study": "ocsea", "cursor": 0}, headers=headers).json[
        "changes"
    ]


def _instrument_entries(changes: list[dict]) -> list[str]:
    return [change["key"] for change in changes if change["kind"] == "instrument"]


def test_a_study_instrument_is_announced_to_its_study(
    testapp: webtest.TestApp, dbsession: Session, accounts
) -> None:
    headers = accounts.headers("fieldworker", study="ocsea", countries=["KE"])
    accounts.study("other")
    definition = minimal_definition()
    definition["study"] = "ocsea"
    services.publish(dbsession, services.validate_definition(definition))
    dbsession.flush()
    changes = _pull(testapp, headers)
    assert _instrument_entries(changes) == [f"{definition['slug']}@1"]
    announced = next(change for change in changes if change["kind"] == "instrument")
    assert announced["object"]["version"] == 1

    other_headers = accounts.headers("fieldworker", study="other", countries=["KE"])
    other = testapp.get("/api/v1/sync/changes", params={"study": "other", "cursor": 0}, headers=other_headers)
    assert _instrument_entries(other.json["changes"]) == []


def test_a_shared_instrument_is_announced_to_every_study_and_so_is_its_retirement(
    testapp: webtest.TestApp, dbsession: Session, accounts
) -> None:
    headers = accounts.headers("fieldworker", study="ocsea", countries=["KE"])
    definition = minimal_definition()
    services.publish(dbsession, services.validate_definition(definition))
    services.publish(dbsession, services.validate_definition(definition))  # unchanged: no new entry
    services.retire(dbsession, definition["slug"])
    dbsession.flush()
    assert _instrument_entries(_pull(testapp, headers)) == [f"{definition['slug']}@1", definition["slug"]]
