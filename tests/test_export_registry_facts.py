"""The Participants sheet shows the language an interview was conducted in (not the one its record
was entered in), and the Summary counts every withdrawn participant, those of planned interviews
that never produced a record included."""

from __future__ import annotations

import io
from typing import Any

import pytest
from sqlalchemy.orm import Session
from test_export_support import ExportWorld, definition, header, load, per_country, rows, summary

from surveykit.exports import services
from surveykit.instruments import services as instruments
from surveykit.participants import services as registry
from surveykit.studies import services as studies


@pytest.fixture
def world(dbsession: Session, accounts: Any) -> ExportWorld:
    return ExportWorld(dbsession, accounts)


def export(session: Session, country: str) -> tuple[Any, services.ExportResult]:
    out = io.BytesIO()
    result = services.write_workbook(session, services.resolve_scope(session, "exp", country), out, "analyst")
    return load(out.getvalue()), result


def with_interview_language(session: Session) -> int:
    """A version of the export instrument whose metadata asks the interview language (as RA1 does)."""
    changed = definition(2)
    changed["metadata"].append({"id": "interview_language", "type": "short_text", "prompt": "Language"})
    return instruments.publish(session, instruments.validate_definition(changed)).version


def test_the_language_column_is_the_language_the_interview_was_conducted_in(
    dbsession: Session, world: ExportWorld
) -> None:
    version = with_interview_language(dbsession)
    khmer_only = studies.get_country(dbsession, world.study, "KH")
    studies.update_country(dbsession, khmer_only, languages=["km"])
    answered = world.interview(
        "KH", [("Ministry of Interior", None)], version=version, answers={"interview_language": "Khmer"}
    )
    from_country = world.interview("KH", [("Ministry of Justice", None)], version=version, answers={})
    book, _ = export(dbsession, "KH")
    columns = header(book, "Participants")
    language, entry = columns.index("Language"), columns.index("Entry language")
    by_pid = {row[0]: row for row in rows(book, "Participants")}
    # Entered on an English tablet, conducted in Khmer: both are shown, each in its own column.
    assert (by_pid[answered.pids[0]][language], by_pid[answered.pids[0]][entry]) == ("Khmer", "en")
    assert (by_pid[from_country.pids[0]][language], by_pid[from_country.pids[0]][entry]) == ("km", "en")

    # A country with several interview languages and no answer: not guessed from the entry language.
    kenya = studies.get_country(dbsession, world.study, "KE")
    studies.update_country(dbsession, kenya, languages=["en", "sw"])
    unknown = world.interview("KE", [("Police", None)], version=version, answers={})
    book, _ = export(dbsession, "KE")
    [row] = [row for row in rows(book, "Participants") if row[0] == unknown.pids[0]]
    assert (row[language], row[entry]) == (None, "en")


def test_the_country_languages_are_part_of_the_content_hash(dbsession: Session, world: ExportWorld) -> None:
    world.interview("KH", [("Ministry of Interior", None)])
    scope = services.resolve_scope(dbsession, "exp", "KH")
    before = services.content_tag(dbsession, scope)
    country = studies.get_country(dbsession, world.study, "KH")
    studies.update_country(dbsession, country, languages=["km"])
    assert services.content_tag(dbsession, services.resolve_scope(dbsession, "exp", "KH")) != before


def test_withdrawn_participants_of_interviews_without_a_record_are_counted(
    dbsession: Session, world: ExportWorld
) -> None:
    world.interview("TZ", [("Ministry of Home Affairs", None)])
    planned = registry.register_interview(
        dbsession,
        world.study,
        "TZ",
        "RA1",
        [registry.NewParticipant("Police"), registry.NewParticipant("Police")],
        "tests",
    )
    scope = services.resolve_scope(dbsession, "exp", "TZ")
    before = services.content_tag(dbsession, scope)
    for person in planned:
        registry.update_participant(dbsession, person, {"status": "withdrawn"})
    # Another country's withdrawal is not counted here.
    elsewhere = registry.register_interview(
        dbsession, world.study, "ET", "RA1", [registry.NewParticipant("X")], "t"
    )
    registry.update_participant(dbsession, elsewhere[0], {"status": "withdrawn"})

    book, result = export(dbsession, "TZ")
    assert summary(book)["Withdrawn participants (left out)"] == 2
    assert result.total.withdrawn == 2
    [tanzania] = [row for row in per_country(book) if row["Country"] == "Tanzania"]
    assert tanzania["Withdrawn (left out)"] == 2
    assert [row[0] for row in rows(book, "Participants")] == ["RA1-TZ-01-A"]
    # The count is part of what the workbook holds, so of its content hash.
    assert result.content_hash == services.content_tag(dbsession, scope) != before

    everywhere = services.resolve_scope(dbsession, "exp", services.ALL_COUNTRIES)
    out = io.BytesIO()
    study_wide = services.write_workbook(dbsession, everywhere, out, "analyst")
    assert study_wide.total.withdrawn == 3
