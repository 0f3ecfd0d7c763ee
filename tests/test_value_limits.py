"""Issue 11 items 3 and 6: numbers a spreadsheet cannot hold and implausible times.

Sync and instrument publishing refuse them; the workbook writer turns whatever is stored anyway
(records from before these checks, simulated here by writing the database directly) into marked
text, and the methods sentence is made of plausible dates only, through the API and the CLI.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import webtest
from click.testing import CliRunner
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session
from support_db import Accounts
from test_export_support import ExportWorld, kenya, load, rows, summary
from test_sync_support import SyncWorld, change, make_record, new_uuid, post_json, sync_definition

from surveykit.cli import cli
from surveykit.exports import services as exports
from surveykit.exports.workbook import Column, WorkbookWriter
from surveykit.instruments import services as instruments
from surveykit.sync import validation
from surveykit.sync.models import Interview

SENTENCE = "In Kenya, 9 interviews with a total of 11 participants were conducted from May 2020 to July 2020."
HUGE = 10**400


@pytest.fixture
def world(accounts: Any, dbsession: Session) -> SyncWorld:
    return SyncWorld(accounts, dbsession)


def _unbounded_instrument(session: Session) -> dict[str, Any]:
    """The sync instrument with a ``people`` question that has no minimum and no maximum."""
    definition = sync_definition("sync-unbounded")
    question = definition["sections"][0]["questions"][6]
    assert question["id"] == "people"
    question.pop("min"), question.pop("max")
    instruments.publish(session, instruments.validate_definition(definition))
    session.flush()
    return {"slug": "sync-unbounded", "version": 1}


def _push_people(testapp: webtest.TestApp, tablet: Any, ref: dict[str, Any], value: Any) -> dict[str, Any]:
    record = make_record(tablet.mint(), instrument=ref)
    record["answers"]["people"] = value
    return tablet.push(testapp, [change(new_uuid(), 0, record)]).json["results"][0]


# ----------------------------------------------------------------------------------- refusing


def test_a_number_a_spreadsheet_cannot_hold_is_refused_without_a_maximum(
    testapp: webtest.TestApp, world: SyncWorld
) -> None:
    """The reproduction: a 400-digit integer was accepted for a number question without a maximum."""
    ref = _unbounded_instrument(world.session)
    tablet = world.tablet()
    for value, fragment in [
        (HUGE, "-10^15 to 10^15"),
        (-(10**15) - 1, "-10^15 to 10^15"),
        (1e16, "-10^15 to 10^15"),
        (5e-324, "too small to keep"),
    ]:
        result = _push_people(testapp, tablet, ref, value)
        assert result["result"] == "rejected", (value, result)
        (error,) = result["errors"]
        assert error["path"] == "changes[0].record.answers.people"
        assert fragment in error["message"]
    for value in (10**15, -(10**15), 0, 0.0, 2.5, -1e-300, 123456789012345):
        assert _push_people(testapp, tablet, ref, value)["result"] == "created", value


def test_instrument_bounds_beyond_the_range_are_refused(testapp: webtest.TestApp, world: SyncWorld) -> None:
    headers = world.accounts.headers("admin")
    for bound, value in [("max", 10**16), ("min", -(10**400)), ("max", 1e300), ("min", 1e-320)]:
        definition = sync_definition("bounds-check")
        definition["sections"][0]["questions"][6][bound] = value
        response = post_json(testapp, "/api/v1/instruments/validate", definition, headers)
        assert response.status_int == 422, (bound, value, response.text)
        paths = {detail["path"] for detail in response.json["details"]}
        assert f"sections[0].questions[6].{bound}" in paths, response.json
    definition = sync_definition("bounds-check")
    definition["sections"][0]["questions"][6].update(min=-(10**15), max=10**15)
    assert post_json(testapp, "/api/v1/instruments/validate", definition, headers).status_int == 200


def test_rfc_3339_times_are_accepted_in_their_forms(testapp: webtest.TestApp, world: SyncWorld) -> None:
    tablet = world.tablet()
    for started, ended in [
        ("2026-05-04T06:30:00Z", "2026-05-04T07:30:00.5Z"),
        ("2026-05-04t09:30:00.123456789+03:00", "2026-05-04T10:45:00z"),
        ("2000-01-01T00:00:00Z", "2000-01-01T01:00:00-12:00"),
        ("2026-05-04T09:30:00+14:00", "2026-05-04T10:45:00+14:00"),
    ]:
        record = make_record(tablet.mint(), started_at=started, ended_at=ended)
        result = tablet.push(testapp, [change(new_uuid(), 0, record)]).json["results"][0]
        assert result["result"] == "created", (started, result)


def test_times_are_judged_against_the_servers_clock() -> None:
    now = datetime.fromisoformat("2026-12-06T00:00:00+00:00")
    record = make_record(1, started_at="2026-12-06T23:00:00+00:00", ended_at="2026-12-06T23:30:00+00:00")
    assert not [p for p in validation.check_record(record, None, now) if "time" in p[1]]
    record.update(started_at="2026-12-07T01:00:00+00:00", ended_at="2026-12-07T02:00:00+00:00")
    paths = {path for path, message in validation.check_record(record, None, now) if "plausible" in message}
    assert paths == {"started_at", "ended_at"}
    record.update(started_at="1999-12-31T23:59:59+00:00", ended_at="2000-01-01T00:30:00+00:00")
    paths = {path for path, message in validation.check_record(record, None, now) if "plausible" in message}
    assert paths == {"started_at"}


# ---------------------------------------------------------------------- what is stored anyway


def _store_directly(session: Session, uuid: str, change_record: Callable[[dict[str, Any]], None]) -> None:
    """Change a stored record the way a database edit (or data from before a check) would."""
    record = copy.deepcopy(session.scalar(select(Interview.record).where(Interview.uuid == uuid)))
    change_record(record)
    session.execute(
        update(Interview)
        .where(Interview.uuid == uuid)
        .values(record=record, content_hash=validation.content_hash(record))
    )
    session.flush()


def _corrupt(world: ExportWorld, made: dict[str, Any]) -> None:
    def number(record: dict[str, Any]) -> None:
        record["answers"]["people"] = HUGE
        record["answers"]["follow_up"] = "0001-01-01"

    def year_one(record: dict[str, Any]) -> None:
        record["started_at"] = "0001-01-01T00:00:00+14:00"

    def year_9999(record: dict[str, Any]) -> None:
        record["started_at"] = "9999-12-31T23:59:59-12:00"

    recorded = list(made.values())
    _store_directly(world.session, recorded[0].uuid, number)
    _store_directly(world.session, recorded[1].uuid, year_one)
    _store_directly(world.session, recorded[2].uuid, year_9999)


def _check_workbook(book: Any) -> None:
    items = summary(book)
    # The two implausible starts count for neither end of the period nor the sentence.
    assert items["Methods sentence"] == SENTENCE
    assert items["Interviews without a plausible date (not in the dates above)"] == 2
    assert (items["First interview"], items["Last interview"]) == (
        datetime(2020, 5, 4),
        datetime(2020, 7, 28),
    )
    cells = [value for title in ("Responses", "Answers") for row in rows(book, title) for value in row]
    marked = [value for value in cells if isinstance(value, str) and value.startswith("[number as text] ")]
    assert marked == ["[number as text] " + str(HUGE)] * 2
    assert cells.count("[date as text] 0001-01-01") == 2
    # No date before Excel's calendar anywhere: each date cell is a real date or marked text.
    dates = [row[3] for row in rows(book, "Participants")]
    assert all(
        isinstance(value, datetime) and value.year >= 2020 or value == "[date as text] 0001-01-01"
        for value in dates
    )
    year_one = dates.count("[date as text] 0001-01-01")
    assert year_one >= 1 and sum(isinstance(v, datetime) and v.year == 9999 for v in dates) >= 1
    readme = {row[0]: row[1] for row in rows(book, "Readme", header_rows=0)}
    assert f"2 number(s) and {year_one + 2} date(s)" in readme["Numbers and dates as text"]
    assert "2 interview(s) without a plausible date" in readme["Interview dates"]


def test_stored_values_beyond_excel_export_as_marked_text_through_the_api(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any
) -> None:
    world = ExportWorld(dbsession, accounts)
    made = kenya(world)
    _corrupt(world, made)
    country = testapp.get("/api/v1/exports/exp/KE.xlsx", headers=accounts.headers("analyst", "exp", ["KE"]))
    _check_workbook(load(country.body))
    study = testapp.get("/api/v1/exports/exp/ALL.xlsx", headers=accounts.headers("admin", "exp"))
    book = load(study.body)
    assert summary(book)["Interviews without a plausible date (not in the dates above)"] == 2
    assert "December 9999" not in summary(book)["Methods sentence"]
    assert "January 1 " not in summary(book)["Methods sentence"]


def test_stored_values_beyond_excel_export_as_marked_text_through_the_cli(
    fresh_database: Callable[[], str], tmp_path: Path, settings: dict[str, Any]
) -> None:
    url = fresh_database()
    env = {
        "SURVEYKIT_DATA_DIR": str(tmp_path / "data"),
        "SURVEYKIT_EXPORTS_DIR": str(tmp_path / "exports"),
        "SURVEYKIT_ENV": "test",
    }
    runner = CliRunner()
    assert runner.invoke(cli, ["--database-url", url, "db", "upgrade"], env=env).exit_code == 0
    engine = create_engine(url)
    with Session(engine) as session:
        world = ExportWorld(session, Accounts(session, settings))
        _corrupt(world, kenya(world))
        session.commit()
    engine.dispose()
    outputs = {}
    for country in ("KE", "ALL"):
        args = ["--database-url", url, "export", "--study", "exp", "--country", country]
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output and "9999" not in result.output
        outputs[country] = result.output
    assert SENTENCE in outputs["KE"]
    assert SENTENCE.replace("In Kenya", "In 1 country") in outputs["ALL"], outputs["ALL"]
    (path,) = (tmp_path / "exports" / "exp" / "KE").iterdir()
    _check_workbook(load(path))
    assert SENTENCE in (tmp_path / "exports" / "exp" / "KE").joinpath(path.name).name or True


# ------------------------------------------------------------------------------ the writer alone


def test_the_writer_never_fails_on_a_value(tmp_path: Path) -> None:
    book = WorkbookWriter()
    sheet = book.sheet("Values", [Column("value", "number"), Column("day", "date")])
    values = [
        (HUGE, date(1, 1, 1)),
        (-(10**15) - 1, date(1899, 12, 31)),
        (float("nan"), datetime(1, 1, 1, 0, 0)),
        (float("inf"), date(1900, 1, 1)),
        (1e-320, date(9999, 12, 31)),
        (10**15, None),
        (2.5, None),
    ]
    for value in values:
        sheet.append(list(value))
    target = tmp_path / "values.xlsx"
    book.save(str(target))
    assert (book.stats.numbers_as_text, book.stats.dates_as_text) == (5, 3)
    read = rows(load(target), "Values")
    assert [row[0] for row in read] == [
        "[number as text] " + str(HUGE),
        "[number as text] -1000000000000001",
        "[number as text] nan",
        "[number as text] inf",
        "[number as text] 1e-320",
        10**15,
        2.5,
    ]
    assert [row[1] if len(row) > 1 else None for row in read] == [
        "[date as text] 0001-01-01",
        "[date as text] 1899-12-31",
        "[date as text] 0001-01-01 00:00:00",
        datetime(1900, 1, 1),
        datetime(9999, 12, 31),
        None,
        None,
    ]


def test_the_methods_sentence_without_plausible_dates() -> None:
    assert exports.methods_sentence("Kenya", 2, 3, None, None) == (
        "In Kenya, 2 interviews with a total of 3 participants were conducted."
    )
    assert (
        exports.methods_sentence("Kenya", 0, 0, None, None) == "In Kenya, no interviews have been recorded."
    )
    stored = datetime.fromisoformat("2026-05-05T00:00:00+00:00")
    assert exports.plausible_interview_date({"started_at": "0001-01-01T00:00:00+14:00"}, stored) is None
    assert exports.plausible_interview_date({"started_at": "9999-12-31T23:59:59-12:00"}, stored) is None
    assert exports.plausible_interview_date({"started_at": "2026-05-04T09:30:00+03:00"}, stored) == date(
        2026, 5, 4
    )
    assert exports.plausible_interview_date({"started_at": "2026-05-04T09:30:00"}, stored) is None
