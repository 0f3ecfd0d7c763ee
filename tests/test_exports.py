"""Workbooks built from the registry and the synced interview records, read back with openpyxl."""

from __future__ import annotations

import io
from datetime import date, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_export_support import (
    AMHARIC,
    KHMER,
    SLUG,
    THAI,
    ExportWorld,
    as_date,
    definition,
    header,
    joined,
    kenya,
    load,
    per_country,
    rows,
    summary,
)

from surveykit.exports import services
from surveykit.exports.workbook import CONTROL_MARKER
from surveykit.participants import services as registry
from surveykit.participants.ids import parse_pid
from surveykit.participants.models import Participant
from surveykit.studies import services as studies
from surveykit.sync import services as sync
from surveykit.sync.models import Interview

KENYA_SENTENCE = (
    "In Kenya, 9 interviews with a total of 11 participants were conducted from May 2020 to July 2020."
)
MODES = {"in_person": "In person", "virtual": "Virtual", "phone": "Phone"}
LABELS = {"ngo": "NGOs", "un": "UN agencies", "police": "Foreign police", "low": "Low", "high": "High"}
QUESTION_ORDER = {
    version: [q["id"] for q in definition(version)["metadata"]]
    + [
        q["id"]
        for section in definition(version)["sections"]
        for sub in [section, *section.get("sections", [])]
        for q in sub.get("questions", [])
    ]
    for version in (1, 2)
}
TYPES = {
    q["id"]: q["type"]
    for version in (1, 2)
    for section in definition(version)["sections"]
    for sub in [section, *section.get("sections", [])]
    for q in [*definition(version)["metadata"], *sub.get("questions", [])]
}


@pytest.fixture
def world(dbsession: Session, accounts: Any) -> ExportWorld:
    return ExportWorld(dbsession, accounts)


def export(session: Session, country: str, activity: str | None = None, **kw: Any) -> tuple[Any, Any]:
    scope = services.resolve_scope(session, "exp", country, activity)
    out = io.BytesIO()
    result = services.write_workbook(session, scope, out, "analyst-jane", **kw)
    return load(out.getvalue()), result


def shown(qid: str, value: Any) -> Any:
    """What the workbook shows for an answer (written independently of the exporter)."""
    kind = TYPES[qid]
    if kind == "yes_no":
        return "Yes" if value else "No"
    if kind == "multiple_choice":
        return "; ".join(LABELS[v] for v in value)
    if kind == "single_choice":
        return LABELS[value]
    if kind == "date":
        return datetime.fromisoformat(value)
    return value


def registry_rows(session: Session, world: ExportWorld, country: str) -> list[Participant]:
    session.expire_all()
    return list(
        session.scalars(
            select(Participant)
            .where(Participant.study_id == world.study.id, Participant.country_code == country)
            .where(Participant.status == "interviewed")
            .order_by(Participant.interview_number, Participant.letter)
        )
    )


def cite(person: Participant) -> str:
    if person.position:
        return f"({person.pid}, {person.position}, {person.agency})"
    return f"({person.pid}, {person.agency})"


# ------------------------------------------------------------------------------------ round trip


def test_round_trip_every_participant_answer_and_quote_equals_the_database(
    dbsession: Session, world: ExportWorld
) -> None:
    kenya(world)
    book, result = export(dbsession, "KE")
    people = registry_rows(dbsession, world, "KE")
    interviews = {i.interview_number: i for i in world.stored_interviews("KE")}
    assert len(people) == 11 and len(interviews) == 9

    # Participants: the registry, in ID order, with the interview's facts and the citations.
    expected = []
    for person in people:
        interview = interviews[person.interview_number]
        record = interview.record
        group = [p for p in people if p.interview_number == person.interview_number]
        expected.append(
            [
                person.pid,
                person.agency,
                person.position,
                datetime.fromisoformat(record["started_at"][:10]),
                MODES[record["mode"]],
                None,  # conducted in: no interview_language answer, and Kenya lists no language
                record["language"],
                SLUG,
                record["instrument"]["version"],
                interview.status,
                f"RA1-KE-{person.interview_number}",
                len(group),
                cite(person),
                f"({person.pid})",
            ]
        )
    assert header(book, "Participants")[:3] == ["ID", "Ministry/Government Agency", "Position"]
    assert rows(book, "Participants") == [row[: len(_trimmed(row))] for row in expected]

    # Sorted by ID in natural order: RA1-KE-100-A comes after RA1-KE-99-A.
    pids = [row[0] for row in rows(book, "Participants")]
    assert pids == sorted(pids, key=lambda pid: parse_pid(pid)) != sorted(pids)
    assert pids.index("RA1-KE-100-A") == pids.index("RA1-KE-99-A") + 1

    # Answers (long form): every answer of every participant, in instrument order.
    expected_answers = []
    for person in people:
        interview = interviews[person.interview_number]
        answers = interview.record["answers"]
        for qid in QUESTION_ORDER[interview.record["instrument"]["version"]]:
            if qid in answers:
                expected_answers.append([person.pid, qid, shown(qid, answers[qid]), interview.revision])
    got = [[row[0], row[2], row[4], row[8]] for row in rows(book, "Answers")]
    assert got == expected_answers

    # Responses: one row per participant; cells under the question id header row.
    ids_row = header(book, "Responses", 2)
    responses = rows(book, "Responses", header_rows=3)
    assert [row[0] for row in responses] == pids
    for person, row in zip(people, responses, strict=True):
        answers = interviews[person.interview_number].record["answers"]
        cells = dict(zip(ids_row[3:], row[3:], strict=False))
        assert {qid: value for qid, value in cells.items() if value is not None} == {
            qid: shown(qid, value) for qid, value in answers.items()
        }

    # Quotes: attributed to the participant's letter, cited from the registry.
    by_pid = {person.pid: person for person in people}
    expected_quotes = []
    for person in people:
        record = interviews[person.interview_number].record
        for quote in record.get("quotes", []):
            if quote.get("participant", "A") == person.letter:
                expected_quotes.append(
                    [person.pid, quote["question_id"], quote["text"], ", ".join(quote["tags"]) or None]
                )
    quotes = rows(book, "Quotes")
    assert [[r[0], r[2], r[4], r[5]] for r in quotes] == expected_quotes
    for row in quotes:
        assert row[6] == cite(by_pid[row[0]]) and row[7] == f"({row[0]})"
    citations = {row[0]: row[6] for row in quotes}
    assert citations == {
        "RA1-KE-95-A": "(RA1-KE-95-A, Director of Cyber Security, Ministry of ICT)",
        "RA1-KE-96-A": "(RA1-KE-96-A, Ministry of Justice)",
        "RA1-KE-97-A": "(RA1-KE-97-A, Head of the Cybercrime Unit, Directorate of Criminal Investigations)",
        "RA1-KE-97-B": "(RA1-KE-97-B, Directorate of Criminal Investigations)",
        "RA1-KE-97-C": "(RA1-KE-97-C, Senior Prosecutor, Office of the Director of Public Prosecutions)",
    }

    # Summary: the methods sentence, counts, and how the workbook was made.
    items = summary(book)
    sentence = (
        "In Kenya, 9 interviews with a total of 11 participants were conducted from May 2020 to July 2020."
    )
    assert items["Methods sentence"] == sentence
    assert items["Interviews"] == 9 and items["Participants"] == 11
    assert (items["Interviews: in person"], items["Interviews: virtual"], items["Interviews: phone"]) == (
        5,
        3,
        1,
    )
    assert (items["Interviews: complete"], items["Interviews: draft"]) == (9, 0)
    assert as_date(items["First interview"]) == date(2020, 5, 4)
    assert as_date(items["Last interview"]) == date(2020, 7, 28)
    assert items["Instrument versions used"] == "exp-ra1 v1 (3 interviews); exp-ra1 v2 (6 interviews)"
    assert items["Generated by"] == "analyst-jane"
    assert items["Filters"] == "none (every research activity)"
    assert items["Content hash (SHA-256)"] == result.content_hash
    assert isinstance(items["Generated at (UTC)"], datetime)
    assert per_country(book)[0]["Methods sentence"] == sentence
    assert book.properties.identifier == result.content_hash
    assert book.properties.description == sentence
    assert book.sheetnames == [
        "Summary",
        "Participants",
        "Responses",
        "Answers",
        "Quotes",
        "Codes",
        "Codebook",
        "Readme",
    ]


def _trimmed(row: list[Any]) -> list[Any]:
    row = list(row)
    while row and row[-1] is None:
        row.pop()
    return row


def test_two_instrument_versions_are_aligned_by_question_id(dbsession: Session, world: ExportWorld) -> None:
    kenya(world)
    book, _ = export(dbsession, "KE")
    ids_row = header(book, "Responses", 2)
    assert ids_row[:3] == ["Question id"] or ids_row[0] == "Question id"
    questions = ids_row[3:]
    # Version 2's order, with the question only version 1 had kept in its place after laws_main.
    assert questions == [
        "agency",
        "awareness_main",
        "training",
        "budget_line",
        "budget_details",
        "laws_main",
        "laws_gaps",
        "laws_future",
        "partners",
        "people",
        "follow_up",
        "confidence",
    ]
    sections = header(book, "Responses", 1)[3:]
    assert sections[questions.index("training")] == "Government ministries/agencies > Capacity"
    prompts = header(book, "Responses", 3)
    # The header shows the newest wording; the Answers sheet the wording each interview was asked in.
    assert prompts[3 + questions.index("awareness_main")].endswith("understand online child abuse?")
    responses = {row[0]: row for row in rows(book, "Responses", header_rows=3)}
    gaps, future = 3 + questions.index("laws_gaps"), 3 + questions.index("laws_future")
    assert responses["RA1-KE-95-A"][gaps] == "Grooming is not an offence yet."
    assert responses["RA1-KE-97-C"][future] == "A national plan of action is being drafted."
    answers = rows(book, "Answers")
    first = next(row for row in answers if row[0] == "RA1-KE-95-A" and row[2] == "awareness_main")
    assert first[3].endswith("understand the issue?")
    codebook = rows(book, "Codebook")
    assert [(r[0], r[1], r[4]) for r in codebook if r[4] in ("laws_gaps", "laws_future")] == [
        ("exp-ra1", 1, "laws_gaps"),
        ("exp-ra1", 2, "laws_future"),
    ]
    assert len(codebook) == 2 * 11
    partners = next(r for r in codebook if r[4] == "partners")
    assert partners[9] == "ngo = NGOs; un = UN agencies; police = Foreign police"


def test_two_research_activities_and_two_instruments(dbsession: Session, world: ExportWorld) -> None:
    kenya(world)
    ra2 = world.interview(
        "KE", [("Ministry of Health", None)], activity="RA2", answers={"awareness_main": "RA2 answer"}
    )
    world.interview("TZ", [("Police", None)], activity="RA2", started="2020-06-01T09:00:00+03:00")
    book, result = export(dbsession, "KE")
    pids = [row[0] for row in rows(book, "Participants")]
    assert pids[-1] == ra2.pids[0] == "RA2-KE-01-A"
    assert pids[:-1] == sorted(pids[:-1], key=parse_pid)
    sections = header(book, "Responses", 1)[3:]
    assert sections[0] == "exp-ra1: Interview metadata" and "exp-ra2: Public awareness" in sections
    responses = {row[0]: row for row in rows(book, "Responses", header_rows=3)}
    ids_row = header(book, "Responses", 2)
    ra2_column = 3 + sections.index("exp-ra2: Public awareness")
    assert ids_row[ra2_column] == "awareness_main"
    assert responses[ra2.pids[0]][ra2_column] == "RA2 answer"
    assert responses[ra2.pids[0]][1:3] == ["exp-ra2", 1]
    assert {row[0] for row in rows(book, "Codebook")} == {"exp-ra1", "exp-ra2"}
    assert result.total.interviews == 10
    assert export(dbsession, "KE", "RA2")[1].total.interviews == 1
    study_wide, _ = export(dbsession, "ALL")
    order = [(row[0][:6], row[3]) for row in rows(study_wide, "Participants")]
    assert order == [("RA1-KE", "KE")] * 11 + [("RA2-KE", "KE"), ("RA2-TZ", "TZ")]


def test_an_empty_country_gives_a_valid_workbook_with_zero_counts(
    dbsession: Session, world: ExportWorld
) -> None:
    kenya(world)
    book, result = export(dbsession, "TZ")
    assert book.sheetnames == [
        "Summary",
        "Participants",
        "Responses",
        "Answers",
        "Quotes",
        "Codes",
        "Codebook",
        "Readme",
    ]
    items = summary(book)
    assert items["Methods sentence"] == "In Tanzania, no interviews have been recorded."
    assert (items["Interviews"], items["Participants"], items["Quotes"]) == (0, 0, 0)
    assert items["Instrument versions used"] == "none"
    for title in ("Participants", "Answers", "Quotes", "Codebook"):
        assert rows(book, title) == []
    assert rows(book, "Responses", header_rows=3) == []
    assert header(book, "Responses", 3) == ["ID", "Instrument", "Version"]
    assert result.total.interviews == 0


def test_formulas_control_characters_long_answers_and_scripts_survive(
    dbsession: Session, world: ExportWorld
) -> None:
    long_answer = ("የመስመር ላይ ጥቃት " * 4000)[:40_000]
    formula_texts = ["=1+1", "+254 700", "-5 officers", "@SUM(A1)", "\tindented", "\rreturn first"]
    recorded = world.interview(
        "KH",
        [('=HYPERLINK("http://evil.example","x")', "-Head of unit"), ("Ministry of Interior", None)],
        language="km",
        answers={
            "awareness_main": KHMER,
            "training": AMHARIC,
            "laws_main": THAI,
            "laws_gaps": long_answer,
            "budget_details": "bell and escape",
            "budget_line": True,
        },
        quotes=[
            {"question_id": "awareness_main", "text": KHMER[:20], "tags": ["=tag"]},
            {"question_id": "laws_main", "text": THAI, "participant": "B"},
        ],
    )
    # Sync refuses control characters now (the text rule); a record stored before that rule may
    # still hold them, and the export must neutralise them all the same.
    stored = dbsession.scalar(select(Interview).where(Interview.uuid == recorded.uuid))
    stored.record = {
        **stored.record,
        "answers": {**stored.record["answers"], "budget_details": "bell\x07and\x1bescape"},
    }
    dbsession.flush()
    for index, text in enumerate(formula_texts):
        world.interview("KH", [(f"Agency {index}", text)], answers={"awareness_main": text})
    book, result = export(dbsession, "KH")

    participants = rows(book, "Participants")
    assert participants[0][:3] == [recorded.pids[0], '=HYPERLINK("http://evil.example","x")', "-Head of unit"]
    assert (
        participants[0][12] == f'({recorded.pids[0]}, -Head of unit, =HYPERLINK("http://evil.example","x"))'
    )
    # The registry strips positions; answers keep their leading tab or carriage return.
    assert [row[2] for row in participants[2:]] == [text.strip() for text in formula_texts]
    cells = [cell for row in book["Participants"].iter_rows(min_row=2) for cell in row if cell.value]
    assert all(cell.data_type in ("s", "n", "d") for cell in cells)

    answers = joined(rows(book, "Answers"))
    mine = {row[2]: row[4] for row in answers if row[0] == recorded.pids[0]}
    assert mine["awareness_main"] == KHMER
    assert mine["training"] == AMHARIC
    assert mine["laws_main"] == THAI
    assert mine["laws_gaps"] == long_answer
    assert mine["budget_details"] == f"bell{CONTROL_MARKER}and{CONTROL_MARKER}escape"
    assert [row[4] for row in answers if row[2] == "awareness_main"][2:] == formula_texts
    # The 40,000-character answer is in two marked parts on consecutive rows, once per participant.
    raw = [row for row in rows(book, "Answers") if row[2] == "laws_gaps"]
    assert [row[4][:11] for row in raw] == ["[part 1/2] ", "[part 2/2] "] * 2
    responses = joined(rows(book, "Responses", header_rows=3))
    assert len(responses) == 2 + len(formula_texts)
    quotes = rows(book, "Quotes")
    assert [(row[0], row[4], row[5]) for row in quotes] == [
        (recorded.pids[0], KHMER[:20], "=tag"),
        (recorded.pids[1], THAI, None),
    ]
    stats = result.stats
    # Two participants repeat the interview's answer: 2 cells in Responses and 2 in Answers.
    assert (stats.control_characters, stats.cells_with_control_characters) == (8, 4)
    assert stats.split_texts == 4
    readme = {row[0]: row[1] for row in rows(book, "Readme")}
    assert "8 replaced in 4 cell(s)" in readme["Control characters"]
    assert "4 text(s) split" in readme["Long texts"]


def test_the_study_wide_workbook_has_a_country_column_and_a_summary_per_country(
    dbsession: Session, world: ExportWorld
) -> None:
    kenya(world)
    world.interview("KH", [("Ministry of Interior", "Police Colonel")], started="2020-08-03T09:00:00+07:00")
    book, result = export(dbsession, "ALL")
    assert header(book, "Participants")[:4] == ["ID", "Ministry/Government Agency", "Position", "Country"]
    assert header(book, "Responses", 3)[:2] == ["ID", "Country"]
    assert header(book, "Answers")[:2] == ["ID", "Country"]
    assert header(book, "Quotes")[:2] == ["Participant", "Country"]
    participants = rows(book, "Participants")
    assert [(row[0][:6], row[3]) for row in participants] == [("RA1-KE", "KE")] * 11 + [("RA1-KH", "KH")]
    table = per_country(book)
    assert [row["Code"] for row in table] == ["ET", "KE", "KH", "TH", "TZ"]
    sentences = {row["Code"]: row["Methods sentence"] for row in table}
    assert sentences["KE"] == (
        "In Kenya, 9 interviews with a total of 11 participants were conducted from May 2020 to July 2020."
    )
    assert (
        sentences["KH"]
        == "In Cambodia, 1 interview with a total of 1 participant was conducted in August 2020."
    )
    assert sentences["TZ"] == "In Tanzania, no interviews have been recorded."
    items = summary(book)
    assert items["Methods sentence"] == (
        "In 2 countries, 10 interviews with a total of 12 participants were conducted from May 2020 "
        "to August 2020."
    )
    assert items["Countries"].startswith("all countries of the study: Ethiopia (ET), Kenya (KE)")
    assert result.scope.label == "ALL"


def test_the_study_wide_workbook_keeps_a_record_whose_country_the_study_no_longer_lists(
    dbsession: Session, world: ExportWorld
) -> None:
    kenya(world)
    world.interview("KH", [("Ministry of Interior", "Police Colonel")], started="2020-08-03T09:00:00+07:00")
    # Sync only accepts the study's countries; an edit by hand can still take one off the list.
    country = studies.get_country(dbsession, world.study, "KH")
    country.code = "KX"
    dbsession.flush()
    book, result = export(dbsession, "ALL")
    participants = rows(book, "Participants")
    assert [row[0] for row in participants if row[3] == "KH"] == ["RA1-KH-01-A"]
    assert any(row[0] == "RA1-KH-01-A" for row in rows(book, "Answers"))
    table = {row["Code"]: row for row in per_country(book)}
    assert table["KH"]["Interviews"] == 1 and table["KX"]["Interviews"] == 0
    assert result.total.interviews == 10 and result.total.participants == 12


def test_withdrawn_participants_and_their_quotes_are_left_out(dbsession: Session, world: ExportWorld) -> None:
    made = kenya(world)
    withdrawn = registry.get_participant(dbsession, world.study, "RA1-KE-97-B", for_update=True)
    registry.update_participant(dbsession, withdrawn, {"status": "withdrawn"})
    book, result = export(dbsession, "KE")
    pids = [row[0] for row in rows(book, "Participants")]
    assert "RA1-KE-97-B" not in pids and len(pids) == 10
    assert {row[0] for row in rows(book, "Quotes")} == {
        "RA1-KE-95-A",
        "RA1-KE-96-A",
        "RA1-KE-97-A",
        "RA1-KE-97-C",
    }
    assert "RA1-KE-97-B" not in {row[0] for row in rows(book, "Answers")}
    items = summary(book)
    assert items["Withdrawn participants (left out)"] == 1
    assert items["Methods sentence"].startswith("In Kenya, 9 interviews with a total of 10 participants")
    assert result.total.quotes_excluded == 1
    assert made["group"].pids == ["RA1-KE-97-A", "RA1-KE-97-B", "RA1-KE-97-C"]


def test_drafts_are_counted_by_status(dbsession: Session, world: ExportWorld) -> None:
    world.interview("ET", [("Ministry of Women", None)], started="2020-05-02T09:00:00+03:00")
    draft = world.interview(
        "ET", [("Federal Police", None)], status="draft", started="2020-05-09T09:00:00+03:00"
    )
    book, _ = export(dbsession, "ET")
    items = summary(book)
    assert (items["Interviews: complete"], items["Interviews: draft"]) == (1, 1)
    statuses = {row[0]: row[9] for row in rows(book, "Participants")}
    assert statuses[draft.pids[0]] == "draft"
    assert items["Methods sentence"] == (
        "In Ethiopia, 2 interviews with a total of 2 participants were conducted in May 2020."
    )


def test_the_activity_filter(dbsession: Session, world: ExportWorld) -> None:
    kenya(world)
    book, result = export(dbsession, "KE", "RA2")
    assert summary(book)["Filters"] == "research activity = RA2"
    assert summary(book)["Research activity"] == "RA2"
    assert result.total.interviews == 0
    book, result = export(dbsession, "KE", "RA1")
    assert result.total.interviews == 9
    with pytest.raises(studies.ActivityNotFound):
        services.resolve_scope(dbsession, "exp", "KE", "RA5")
    with pytest.raises(studies.CountryNotFound):
        services.resolve_scope(dbsession, "exp", "XX")


def test_a_sheet_past_the_row_limit_continues_and_loses_nothing(
    dbsession: Session, world: ExportWorld
) -> None:
    kenya(world)
    full, _ = export(dbsession, "KE")
    small, result = export(dbsession, "KE", max_rows=8)
    assert "Answers (2)" in small.sheetnames and "Responses (2)" in small.sheetnames
    assert small.sheetnames.index("Answers (2)") == small.sheetnames.index("Answers") + 1
    for title, header_rows in [("Participants", 1), ("Responses", 3), ("Answers", 1), ("Quotes", 1)]:
        parts = [name for name in small.sheetnames if name == title or name.startswith(f"{title} (")]
        combined = [row for name in parts for row in rows(small, name, header_rows)]
        assert combined == rows(full, title, header_rows), title
        assert all(small[name].max_row <= 8 for name in parts)
    assert result.stats.continuation_sheets


# ---------------------------------------------------------------------------------- content hash


def test_the_content_hash_covers_the_data_not_the_file(dbsession: Session, world: ExportWorld) -> None:
    made = kenya(world)
    scope = services.resolve_scope(dbsession, "exp", "KE")
    first_book, first = export(dbsession, "KE", generated_at=datetime(2026, 1, 1, 9, 0))
    _, again = export(dbsession, "KE", generated_at=datetime(2026, 1, 2, 9, 0))
    assert first.content_hash == again.content_hash == services.content_tag(dbsession, scope)
    tz_before = services.content_tag(dbsession, services.resolve_scope(dbsession, "exp", "TZ"))

    # A registry change (a position edited) changes it.
    person = registry.get_participant(dbsession, world.study, "RA1-KE-96-A", for_update=True)
    registry.update_participant(dbsession, person, {"position": "Principal State Counsel"})
    after_registry = services.content_tag(dbsession, scope)
    assert after_registry != first.content_hash

    # A new revision of a record changes it.
    interview = dbsession.get(Interview, made["justice"].uuid)
    record = {**interview.record, "notes": "second look"}
    change = {"uuid": interview.uuid, "base_revision": interview.revision, "record": record}
    assert sync.push_batch(dbsession, world.caller, [change]).results[0].result == "updated"
    after_sync = services.content_tag(dbsession, scope)
    assert after_sync not in (first.content_hash, after_registry)
    _, latest = export(dbsession, "KE")
    assert latest.content_hash == after_sync

    # Other countries are not affected; the filter and the study-wide scope have their own hashes.
    assert services.content_tag(dbsession, services.resolve_scope(dbsession, "exp", "TZ")) == tz_before
    assert (
        services.content_tag(dbsession, services.resolve_scope(dbsession, "exp", "KE", "RA1")) != after_sync
    )
    assert first_book.properties.identifier == first.content_hash


# ---------------------------------------------------------------------------------- report text


@pytest.mark.parametrize(
    ("interviews", "participants", "first", "last", "sentence"),
    [
        (
            9,
            11,
            date(2020, 5, 4),
            date(2020, 7, 28),
            KENYA_SENTENCE,
        ),
        (
            1,
            1,
            date(2020, 5, 4),
            date(2020, 5, 4),
            "In Kenya, 1 interview with a total of 1 participant was conducted in May 2020.",
        ),
        (
            1,
            2,
            date(2020, 5, 4),
            date(2020, 5, 4),
            "In Kenya, 1 interview with a total of 2 participants was conducted in May 2020.",
        ),
        (
            2,
            2,
            date(2020, 12, 30),
            date(2021, 1, 4),
            "In Kenya, 2 interviews with a total of 2 participants were conducted from December 2020 to "
            "January 2021.",
        ),
        (0, 0, None, None, "In Kenya, no interviews have been recorded."),
    ],
)
def test_methods_sentence(
    interviews: int, participants: int, first: date | None, last: date | None, sentence: str
) -> None:
    assert services.methods_sentence("Kenya", interviews, participants, first, last) == sentence


def test_citations() -> None:
    assert (
        services.citation("RA1-KE-04-B", "Ministry of ICT", "Director of Cyber Security")
        == "(RA1-KE-04-B, Director of Cyber Security, Ministry of ICT)"
    )
    assert (
        services.citation("RA1-KE-03-A", "Ministry of Justice", None) == "(RA1-KE-03-A, Ministry of Justice)"
    )
    assert (
        services.citation("RA1-KE-03-A", "Ministry of Justice", "  ") == "(RA1-KE-03-A, Ministry of Justice)"
    )
    assert services.short_citation("RA1-KE-04-B") == "(RA1-KE-04-B)"


@pytest.mark.parametrize("to_path", [False, True])
def test_an_export_started_again_after_a_new_instrument_version_appeared_is_complete(
    dbsession: Session, world: ExportWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, to_path: bool
) -> None:
    kenya(world)
    expected, _ = export(dbsession, "KE")
    original = services._Builder.interview
    calls = {"n": 0}

    def appears_once(self: Any, row: Any, people: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # mid-way through the first attempt, with the Answers entry open
            raise services.ScopeChanged("a version appeared")
        original(self, row, people)

    monkeypatch.setattr(services._Builder, "interview", appears_once)
    scope = services.resolve_scope(dbsession, "exp", "KE")
    target: Any = str(tmp_path / "again.xlsx") if to_path else io.BytesIO()
    result = services.write_workbook(dbsession, scope, target, "analyst-jane")
    assert calls["n"] > 9  # the first attempt was given up, the second one read every interview
    book = load((tmp_path / "again.xlsx").read_bytes() if to_path else target.getvalue())
    assert book.sheetnames == expected.sheetnames
    for title in ("Participants", "Answers", "Quotes"):
        assert rows(book, title) == rows(expected, title)
    assert result.total.interviews == 9


def test_the_probes_ticked_are_in_the_answers_sheet(dbsession: Session, world: ExportWorld) -> None:
    ticked = world.interview(
        "KE",
        [("Ministry of ICT", "Director"), ("Ministry of ICT", None)],
        language="sw",
        answers={"training": "Two workshops a year.", "budget_line": False},
        # Ticked out of order; laws_main has no answer, but its ticks show.
        probes_used={"training": [2, 0], "laws_main": [1]},
    )
    plain = world.interview(
        "KE", [("Judiciary", None)], answers={"training": "None yet."}, probes_used={"laws_main": []}
    )
    book, result = export(dbsession, "KE")
    assert header(book, "Answers") == [
        "ID",
        "Section",
        "Question id",
        "Prompt",
        "Answer",
        "Probes used",
        "Stored value",
        "Language",
        "Revision",
    ]
    answers = rows(book, "Answers")
    by_key = {(row[0], row[2]): row for row in answers}
    for pid in ticked.pids:
        # One probe per line, in the instrument's order and default language (not the record's).
        row = by_key[(pid, "training")]
        assert row[4:6] == ["Two workshops a year.", "Who runs it?\nDoes it cover live streaming?"]
        assert by_key[(pid, "budget_line")][4:7] == ["No", None, "false"]
        assert by_key[(pid, "laws_main")][3:7] == [
            "Which laws apply, and where are the gaps?",
            None,
            "Live streaming?",
            None,
        ]
    assert by_key[(plain.pids[0], "training")][4:6] == ["None yet.", None]
    # An empty list of ticks and no answer: no row.
    assert {(row[0], row[2]) for row in answers} == {
        *((pid, qid) for pid in ticked.pids for qid in ("training", "budget_line", "laws_main")),
        (plain.pids[0], "training"),
    }
    readme = {row[0]: row[1] for row in rows(book, "Readme")}
    assert "(surveykit-export/4)" in readme["Generated"]
    assert "probes the interviewer ticked" in readme["Answers"]
