"""The import preview: each row of a checked sheet with the ID it would get, and the problems of a
refused sheet grouped by row."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from surveykit.participants import importer, preview, services
from surveykit.studies import services as studies

SHEET = """agency,position,interview
Ministry of ICT,Director of Cyber Security,1
Police Cyber Crime Unit,Head,
Ministry of ICT,,1
"""


@pytest.fixture
def study(accounts: Any, dbsession: Session) -> Any:
    study = accounts.study("ocsea", ("KE", "TZ"))
    studies.add_activity(dbsession, study, "RA1", "Duty bearers")
    dbsession.flush()
    return study


def _plan(text: str) -> importer.ImportPlan:
    return importer.parse(text.encode("utf-8"), importer.CSV, scope=("RA1", "KE"))


def test_each_row_with_the_id_it_gets_and_the_forecast_holds(dbsession: Session, study: Any) -> None:
    services.register_interview(dbsession, study, "KE", "RA1", [services.NewParticipant("Earlier")], "tests")
    plan = _plan(SHEET)
    rows = preview.preview_plan(dbsession, study, "KE", "RA1", plan)
    assert [(r.row, r.interview, r.letter, r.pid, r.position) for r in rows] == [
        (2, 1, "A", "RA1-KE-02-A", "Director of Cyber Security"),
        (3, 2, "A", "RA1-KE-03-A", "Head"),
        (4, 1, "B", "RA1-KE-02-B", None),
    ]
    stored = services.import_plan(dbsession, study, "KE", "RA1", plan, "tests")
    assert sorted(p.pid for group in stored for p in group) == sorted(r.pid for r in rows)


def test_known_ids_are_kept_and_new_ones_follow_them(dbsession: Session, study: Any) -> None:
    plan = _plan("agency,id\nMinistry,RA1-KE-07-A\nPolice,\n")
    rows = preview.preview_plan(dbsession, study, "KE", "RA1", plan)
    assert [(r.pid, r.known) for r in rows] == [("RA1-KE-07-A", True), ("RA1-KE-08-A", False)]
    stored = services.import_plan(dbsession, study, "KE", "RA1", plan, "tests")
    assert sorted(p.pid for group in stored for p in group) == ["RA1-KE-07-A", "RA1-KE-08-A"]


def test_problems_are_grouped_by_row() -> None:
    with pytest.raises(importer.ImportRejected) as raised:
        _plan(f"agency,position\nMinistry,\n,{'y' * 301}\nPolice,\n,\n")
    grouped = preview.problems_by_row(raised.value.errors)
    assert [(g.row, [c for c, _ in g.problems]) for g in grouped] == [(3, ["agency", "position"])]
    whole = preview.problems_by_row([importer.RowError(None, None, "the file is empty")])
    assert whole[0].row is None and whole[0].problems == ((None, "the file is empty"),)
