"""The CSV for statistics, the SPSS and Stata syntax that read it, ``?lang=``, and the workbook's
Codes sheet and Summary charts (docs/exports.md)."""

from __future__ import annotations

import csv
import inspect
import io
import re
import uuid as uuid_module
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import webtest
from click.testing import CliRunner
from sqlalchemy import create_engine, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session
from support_db import Accounts
from test_export_support import SLUG, ExportWorld, definition, joined, kenya, load, rows

from surveykit.analysis.models import Code, Coding
from surveykit.audit.models import AuditEvent
from surveykit.cli import cli
from surveykit.exports import codes_sheet, csv_export, history, services, stats_syntax
from surveykit.instruments import services as instruments
from surveykit.sync.models import Interview

KE = "/api/v1/exports/exp/KE"
ALL = "/api/v1/exports/exp/ALL"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@pytest.fixture
def world(dbsession: Session, accounts: Any) -> ExportWorld:
    world = ExportWorld(dbsession, accounts)
    kenya(world)
    return world


def workbook(session: Session, country: str = "KE", **scope: Any) -> tuple[Any, Any]:
    out = io.BytesIO()
    result = services.write_workbook(
        session, services.resolve_scope(session, "exp", country, **scope), out, "analyst-jane"
    )
    return load(out.getvalue()), result


def csv_rows(session: Session, country: str = "KE", **scope: Any) -> list[list[str]]:
    export = csv_export.CsvExport(session, services.resolve_scope(session, "exp", country, **scope))
    text = b"".join(export.chunks()).decode("utf-8")
    return list(csv.reader(io.StringIO(text, newline="")))


def as_sheet_text(value: Any) -> str:
    """A cell read back from the workbook, as the CSV writes the value it was made of."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    return str(value)


def formula_like_interview(world: ExportWorld) -> None:
    world.interview(
        "KE",
        [("Ministry of Health", '=HYPERLINK("x")')],
        started="2020-07-30T09:00:00+03:00",
        answers={
            "awareness_main": "=1+1",
            "training": "-5 trainings; @all staff",
            "people": 7,
            "follow_up": "2020-08-01",
            "confidence": "low",
            "budget_line": True,
        },
    )


# ------------------------------------------------------------------------------------------- CSV


@pytest.mark.parametrize("country", ["KE", "ALL"])
def test_the_csv_equals_the_answers_sheet_cell_for_cell(
    dbsession: Session, world: ExportWorld, country: str
) -> None:
    formula_like_interview(world)
    book, _ = workbook(dbsession, country)
    sheet = [[as_sheet_text(v) for v in row] for row in joined(rows(book, "Answers", header_rows=0))]
    data = csv_rows(dbsession, country)
    assert data[0] == [str(v) for v in sheet[0]]
    assert data[0][:2] == (["ID", "Country"] if country == "ALL" else ["ID", "Section"])
    assert len(data) == len(sheet) > 40
    for csv_row, sheet_row in zip(data[1:], sheet[1:], strict=True):
        sheet_row += [""] * (len(csv_row) - len(sheet_row))
        assert [csv_export.restore_text(cell) for cell in csv_row] == sheet_row


def test_the_csv_neutralises_text_a_spreadsheet_would_run_as_a_formula(
    dbsession: Session, world: ExportWorld
) -> None:
    formula_like_interview(world)
    data = csv_rows(dbsession)
    by_question = {row[2]: row for row in data if row[0] == "RA1-KE-104-A"}
    assert by_question["awareness_main"][4] == "'=1+1"
    assert by_question["training"][4] == "'-5 trainings; @all staff"
    # A number is written as a number, a date in ISO 8601.
    assert by_question["people"][4] == "7"
    assert by_question["follow_up"][4] == "2020-08-01"
    assert by_question["confidence"][4:7] == ["Low", "", "low"]
    assert all(not cell.startswith(("=", "+", "@")) for row in data for cell in row)
    assert csv_export.csv_text("'quoted") == "''quoted"
    assert csv_export.restore_text(csv_export.csv_text("'quoted")) == "'quoted"
    assert csv_export.csv_text("a\x00b") == "a\ufffdb"


def test_the_csv_streams_rows_as_they_are_read(
    dbsession: Session, world: ExportWorld, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setattr(csv_export, "CHUNK_BYTES", 64)
    export = csv_export.CsvExport(dbsession, services.resolve_scope(dbsession, "exp", "KE"))
    chunks = export.chunks()
    assert inspect.isgenerator(chunks) and inspect.isgenerator(export.rows())
    first = next(chunks)
    assert first.startswith(b"ID,Section,Question id,Prompt,Answer")
    assert next(chunks).startswith(b"RA1-KE-95-A,")
    # Nothing is read ahead: the hash is known only once the last row has gone.
    assert export.content_hash is None and export.rows_written < 5
    if backend == "postgresql":
        # The interviews and their participants come through two server-side cursors.
        assert dbsession.execute(sql_text("SELECT count(*) FROM pg_cursors")).scalar_one() == 2
    rest = list(chunks)
    assert len(rest) > 10 and max(len(chunk) for chunk in rest) < 64 + 2_000
    assert export.content_hash == services.content_tag(
        dbsession, services.resolve_scope(dbsession, "exp", "KE"), "csv"
    )


def test_the_csv_route_etag_304_audit_and_scope(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, world: ExportWorld
) -> None:
    headers = accounts.headers("analyst", "exp", ["KE"], username="analyst-ke")
    response = testapp.get(f"{KE}.csv", headers=headers)
    assert response.content_type == "text/csv" and response.charset == "utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="exp-KE.csv"'
    etag = response.headers["ETag"]
    xlsx_etag = testapp.get(f"{KE}.xlsx", headers=headers).headers["ETag"]
    assert etag != xlsx_etag
    data = list(csv.reader(io.StringIO(response.body.decode("utf-8"), newline="")))
    assert data == csv_rows(dbsession)
    again = testapp.get(f"{KE}.csv", headers={**headers, "If-None-Match": etag}, status=304)
    assert again.body == b"" and again.headers["ETag"] == etag
    dbsession.expire_all()
    downloads = list(
        dbsession.scalars(
            select(AuditEvent).where(AuditEvent.action == "export.download").order_by(AuditEvent.id)
        )
    )
    assert [(e.details.get("format"), e.details["not_modified"]) for e in downloads] == [
        ("csv", False),
        (None, False),
        ("csv", True),
    ]
    assert downloads[0].details["etag"] == etag.strip('"') and downloads[0].target == "exp/KE"
    # The activity filter narrows it; other countries and fieldworkers are refused as for the workbook.
    assert testapp.get(f"{KE}.csv?activity=RA2", headers=headers).body.count(b"\r\n") == 1
    testapp.get("/api/v1/exports/exp/TZ.csv", headers=headers, status=403)
    testapp.get(f"{ALL}.csv", headers=headers, status=403)
    testapp.get(f"{KE}.csv", headers=accounts.headers("fieldworker", "exp", ["KE"]), status=403)
    testapp.get(f"{KE}.csv", status=401)
    bad = testapp.get(f"{KE}.csv?format=x", headers=headers, status=422)
    assert bad.content_type == "application/json"
    study_wide = testapp.get(f"{ALL}.csv", headers=accounts.headers("coordinator", "exp", None))
    assert study_wide.body.startswith(b"ID,Country,Section")
    # A change of the data gives a new tag.
    interview = dbsession.scalars(select(Interview).where(Interview.country_code == "KE")).first()
    record = {**interview.record, "answers": {**interview.record["answers"], "training": "Changed."}}
    interview.record, interview.content_hash = record, "changed"
    dbsession.flush()
    assert testapp.get(f"{KE}.csv", headers={**headers, "If-None-Match": etag}).headers["ETag"] != etag
    # A CSV went last; the workbook history (console: "changed since") counts workbooks only.
    assert history.last_export(dbsession, "exp/KE").content_hash == xlsx_etag.strip('"')


# ---------------------------------------------------------------------------------- SPSS and Stata


def spss_literal(text: str) -> list[str]:
    return [match.replace("''", "'") for match in re.findall(r"'((?:[^']|'')*)'", text)]


def parse_spss(text: str) -> tuple[dict[str, str], dict[str, dict[int, str]]]:
    """Every VARIABLE LABELS and VALUE LABELS statement: labels by variable name."""
    statements = re.findall(r"^(VARIABLE LABELS|VALUE LABELS)\n(.*?)\.$", text, re.S | re.M)
    variable_labels: dict[str, str] = {}
    value_labels: dict[str, dict[int, str]] = {}
    for command, body in statements:
        for spec in re.split(r"\n\s*/", body.strip()):
            name, _, rest = spec.strip().partition(" ")
            if command == "VARIABLE LABELS":
                (variable_labels[name],) = spss_literal(rest)
            else:
                pairs = re.findall(r"(-?\d+) '((?:[^']|'')*)'", rest)
                value_labels[name] = {int(code): label.replace("''", "'") for code, label in pairs}
    return variable_labels, value_labels


def stata_literal(text: str) -> str:
    match = re.fullmatch(r'`"(.*)"\'', text.strip(), re.S)
    assert match, text
    return match.group(1).replace("\\$", "$").replace("\\`", "`")


def parse_stata(text: str) -> tuple[dict[str, str], dict[str, dict[int, str]]]:
    """Every ``label variable`` and ``label define`` (with its ``label values``) statement."""
    variable_labels: dict[str, str] = {}
    defined: dict[str, dict[int, str]] = {}
    attached: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("label variable "):
            name, rest = line[len("label variable ") :].split(" ", 1)
            variable_labels[name] = stata_literal(rest)
        elif line.startswith("label define "):
            name, rest = line[len("label define ") :].split(" ", 1)
            assert rest.endswith(", replace")
            pairs = re.findall(r'(-?\d+) (`".*?"\')', rest[: -len(", replace")])
            defined[name] = {int(code): stata_literal(label) for code, label in pairs}
        elif line.startswith("label values "):
            variable, label = line[len("label values ") :].split()
            attached[variable] = label
    return variable_labels, {variable: defined[label] for variable, label in attached.items()}


def expected_labels(session: Session, **scope: Any) -> dict[str, Any]:
    found = stats_syntax.load_variables(session, services.resolve_scope(session, "exp", "KE", **scope))
    return {v.question_id: v for v in found}


@pytest.mark.parametrize("artifact", ["sps", "do"])
def test_the_syntax_files_label_every_question_and_choice(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, world: ExportWorld, artifact: str
) -> None:
    headers = accounts.headers("analyst", "exp", ["KE"])
    response = testapp.get(f"{KE}.{artifact}", headers=headers)
    assert response.content_type == "text/plain"
    assert response.headers["Content-Disposition"] == f'attachment; filename="exp-KE.{artifact}"'
    text = response.body.decode("utf-8")
    assert "exp-KE.csv" in text
    labels, values = (parse_spss if artifact == "sps" else parse_stata)(text)
    variables = expected_labels(dbsession)
    # Every question of both versions used has a variable labelled with its prompt.
    questions = {
        q.id: q for v in (2, 1) for q in services.version_info(SLUG, v, "", definition(v)).questions[::-1]
    }
    assert set(variables) == set(questions)
    names = [v.name for v in variables.values()]
    assert len(set(names)) == len(names) and all(NAME.match(name) for name in names)
    assert set(labels) == set(names)
    newest = {q.id: q for q in services.version_info(SLUG, 2, "", definition(2)).questions}
    for qid, variable in variables.items():
        prompt = (newest.get(qid) or questions[qid]).prompt
        assert labels[variable.name] == prompt[: 80 if artifact == "do" else None]
    assert values[variables["confidence"].name] == {1: "Low", 2: "High"}
    assert values[variables["budget_line"].name] == {0: "No", 1: "Yes"}
    assert set(values) == {variables["confidence"].name, variables["budget_line"].name}
    # The stored values the CSV holds are what the syntax codes.
    assert ("'high'" if artifact == "sps" else '`"high"\'') in text
    etag = response.headers["ETag"]
    testapp.get(f"{KE}.{artifact}", headers={**headers, "If-None-Match": etag}, status=304)
    assert etag != testapp.get(f"{KE}.csv", headers=headers).headers["ETag"]


def test_variable_names_are_valid_unique_and_short() -> None:
    taken: set[str] = set()
    names = [
        stats_syntax.variable_name(qid, taken)
        for qid in [
            "to",
            "_n",
            "str20",
            "answer",
            "1st_visit",
            "Budget.Line",
            "budget_line",
            "x" * 40,
            "x" * 41,
            "é_ü",
        ]
    ]
    assert names == [
        "q_to",
        "n",
        "q_str20",
        "q_answer",
        "q_1st_visit",
        "budget_line",
        "budget_line_2",
        "x" * 32,
        "x" * 30 + "_2",
        "e_u",
    ]
    assert all(NAME.match(name) for name in names)


def test_labels_are_escaped_for_each_program() -> None:
    scope = services.Scope(1, "exp", "Exp", (services.CountryRef("KE", "Kenya"),), False, None)
    tricky = "It's \"$HOME\" and `x' \"'\nnext line"
    variable = stats_syntax.Variable("q", "q", stats_syntax.CODED, tricky, [(1, "a'b", tricky)])
    labels, values = parse_spss(stats_syntax.spss_syntax(scope, [variable], "hash"))
    assert labels == {"q": "It's \"$HOME\" and `x' \"'  next line".replace("  ", " ")}
    assert values == {"q": {1: labels["q"]}}
    do = stats_syntax.stata_do(scope, [variable], "hash")
    stata_labels, stata_values = parse_stata(do)
    assert stata_labels["q"] == "It's \"$HOME\" and `x' \" ' next line"
    assert stata_values == {"q": {1: stata_labels["q"]}}
    assert "& stored_value == `\"a'b\"'" in do
    assert stats_syntax.cut_bytes("ééé", 5) == "éé"


# ------------------------------------------------------------------------------------------ lang


def translated_version(world: ExportWorld) -> None:
    swahili = definition(2)
    closing = swahili["sections"][-1]["questions"]
    confidence = next(q for q in closing if q["id"] == "confidence")
    confidence["prompt"] = {
        "en": "How confident is the participant?",
        "sw": "Mshiriki ana uhakika kiasi gani?",
    }
    confidence["choices"] = [
        {"value": "low", "label": {"en": "Low", "sw": "Chini"}},
        {"value": "high", "label": {"en": "High", "sw": "Juu"}},
    ]
    instruments.publish(world.session, instruments.validate_definition(swahili))
    world.interview("KE", [("Ministry of Health", None)], version=3, answers={"confidence": "high"})


def test_lang_shows_prompts_and_labels_in_that_language(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, world: ExportWorld
) -> None:
    translated_version(world)
    headers = accounts.headers("analyst", "exp", ["KE"])
    english = testapp.get(f"{KE}.xlsx", headers=headers)
    swahili = testapp.get(f"{KE}.xlsx?lang=sw", headers=headers)
    assert english.headers["ETag"] != swahili.headers["ETag"]
    answers = rows(load(swahili.body), "Answers")
    row = next(r for r in answers if r[2] == "confidence" and r[0] == "RA1-KE-104-A")
    assert row[3:5] == ["Mshiriki ana uhakika kiasi gani?", "Juu"]
    # A text without a translation falls back to the default language, as on the tablet.
    assert any(r[3] == "What training do staff receive?" for r in answers)
    data = list(csv.reader(io.StringIO(testapp.get(f"{KE}.csv?lang=sw", headers=headers).text, newline="")))
    assert ["RA1-KE-104-A", "Closing", "confidence", "Mshiriki ana uhakika kiasi gani?", "Juu"] in [
        r[:5] for r in data
    ]
    sps = testapp.get(f"{KE}.sps?lang=sw", headers=headers)
    assert sps.headers["Content-Disposition"] == 'attachment; filename="exp-KE-sw.sps"'
    labels, values = parse_spss(sps.text)
    assert labels["confidence"] == "Mshiriki ana uhakika kiasi gani?"
    assert values["confidence"] == {1: "Chini", 2: "Juu"}
    tag = sps.headers["ETag"]
    assert tag != testapp.get(f"{KE}.sps", headers=headers).headers["ETag"]
    testapp.get(f"{KE}.sps?lang=sw", headers={**headers, "If-None-Match": tag}, status=304)
    for extension in ("xlsx", "csv", "sps", "do"):
        refused = testapp.get(f"{KE}.{extension}?lang=fr", headers=headers, status=422).json
        assert refused["code"] == "invalid_input"
        assert refused["details"] == [
            {"location": "querystring", "path": "lang", "message": refused["details"][0]["message"]}
        ]
        assert "exp-ra1 v1" in refused["details"][0]["message"] and "'fr'" in refused["message"]
        malformed = testapp.get(f"{KE}.{extension}?lang=not a language", headers=headers, status=422).json
        assert malformed["details"][0]["path"] == "lang"


# ----------------------------------------------------------------------------------- Codes sheet


def add_codes(session: Session, world: ExportWorld, made: dict[str, Any]) -> dict[str, Any]:
    coder = world.accounts.user(None, "analyst", "exp", ["KE"])

    def code(name: str, parent: Code | None = None, colour: str = "#336699") -> Code:
        found = Code(
            guid=str(uuid_module.uuid4()),
            study_id=world.study.id,
            parent_id=parent.id if parent else None,
            name=name,
            colour=colour,
            created_by="analyst",
        )
        session.add(found)
        session.flush()
        return found

    theme = code("Law enforcement")
    sub = code("Capacity", theme, "#AA0000")
    awareness = code("Public awareness", colour="#00AA00")

    def coding(recorded: Any, code: Code, qid: str, text: str, start: int, **extra: Any) -> Coding:
        found = Coding(
            guid=str(uuid_module.uuid4()),
            study_id=world.study.id,
            country_code="KE",
            code_id=code.id,
            interview_uuid=recorded.uuid,
            question_id=qid,
            start_offset=start,
            end_offset=start + len(text),
            text=text,
            coder_id=coder.id,
            coder=coder.username,
            anchored_revision=1,
            **extra,
        )
        session.add(found)
        session.flush()
        return found

    group = made["group"]
    quote_c = next(q for q in group.record["quotes"] if q["participant"] == "C")
    coding(group, sub, "laws_main", "Prosecutions rely", 0, quote_id=quote_c["id"], memo="Prosecution")
    coding(group, awareness, "awareness_main", "parents do not", 24)
    coding(made["director"], awareness, "awareness_main", "Awareness is low", 0, anchor="moved")
    return {"theme": theme, "sub": sub, "awareness": awareness, "coder": coder.username}


def test_the_codes_sheet_lists_every_coded_passage_with_its_citation(
    dbsession: Session, accounts: Any
) -> None:
    world = ExportWorld(dbsession, accounts)
    made = kenya(world)
    scope = services.resolve_scope(dbsession, "exp", "KE")
    before = services.content_tag(dbsession, scope)
    csv_before = services.content_tag(dbsession, scope, "csv")
    codes = add_codes(dbsession, world, made)
    after = services.content_tag(dbsession, scope)
    assert after != before
    assert services.content_tag(dbsession, scope, "csv") == csv_before
    book, result = workbook(dbsession)
    assert result.content_hash == after and result.coded_passages == 3
    assert [c.value for c in book["Codes"][1]] == [
        "Participant",
        "Question id",
        "Code",
        "Colour",
        "Passage",
        "Start",
        "End",
        "Anchor",
        "Coder",
        "Memo",
        "Citation",
        "Short citation",
    ]
    coder = codes["coder"]
    assert rows(book, "Codes") == [
        [
            "RA1-KE-95-A",
            "awareness_main",
            "Public awareness",
            "#00AA00",
            "Awareness is low",
            0,
            16,
            "moved",
            coder,
            None,
            "(RA1-KE-95-A, Director of Cyber Security, Ministry of ICT)",
            "(RA1-KE-95-A)",
        ],
        [
            "RA1-KE-97-A; RA1-KE-97-B; RA1-KE-97-C",
            "awareness_main",
            "Public awareness",
            "#00AA00",
            "parents do not",
            24,
            38,
            "current",
            coder,
            None,
            "(RA1-KE-97-A, Head of the Cybercrime Unit, Directorate of Criminal Investigations); "
            "(RA1-KE-97-B, Directorate of Criminal Investigations); "
            "(RA1-KE-97-C, Senior Prosecutor, Office of the Director of Public Prosecutions)",
            "(RA1-KE-97-A); (RA1-KE-97-B); (RA1-KE-97-C)",
        ],
        [
            "RA1-KE-97-C",
            "laws_main",
            "Law enforcement / Capacity",
            "#AA0000",
            "Prosecutions rely",
            0,
            17,
            "current",
            coder,
            "Prosecution",
            "(RA1-KE-97-C, Senior Prosecutor, Office of the Director of Public Prosecutions)",
            "(RA1-KE-97-C)",
        ],
    ]
    # The citations are the Quotes sheet's.
    quotes = {row[0]: row[6] for row in rows(book, "Quotes")}
    assert quotes["RA1-KE-97-C"] == rows(book, "Codes")[2][10]
    # Renaming a code changes the tag too.
    codes["sub"].name = "Skills"
    dbsession.flush()
    assert services.content_tag(dbsession, scope) != after
    assert codes_sheet.code_path(codes_sheet.study_codes(dbsession, world.study.id), codes["sub"].id) == (
        "Law enforcement / Skills"
    )
    # Tanzania's workbook has none of Kenya's codings.
    assert rows(workbook(dbsession, "TZ")[0], "Codes") == []


def test_the_summary_has_charts_of_interviews_by_country_mode_and_status(
    dbsession: Session, world: ExportWorld
) -> None:
    out = io.BytesIO()
    services.write_workbook(dbsession, services.resolve_scope(dbsession, "exp", "ALL"), out, "analyst-jane")
    names = zipfile.ZipFile(io.BytesIO(out.getvalue())).namelist()
    assert {"xl/charts/chart1.xml", "xl/charts/chart2.xml", "xl/drawings/drawing1.xml"} <= set(names)
    charts = load(out.getvalue())["Summary"]._charts
    assert len(charts) == 2
    chart_xml = zipfile.ZipFile(io.BytesIO(out.getvalue())).read("xl/charts/chart1.xml").decode()
    assert "Interviews by country and mode" in chart_xml
    assert "'Summary'!$F$" in chart_xml and "'Summary'!$A$" in chart_xml


# ------------------------------------------------------------------------------------------- CLI


def test_the_cli_writes_the_csv_and_the_syntax_beside_it(
    fresh_database: Any, tmp_path: Path, settings: dict[str, Any]
) -> None:
    url = fresh_database()
    env = {"SURVEYKIT_DATA_DIR": str(tmp_path / "d"), "SURVEYKIT_EXPORTS_DIR": str(tmp_path / "x")}
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["--database-url", url, *args], env={**env, "SURVEYKIT_ENV": "test"})

    assert run("db", "upgrade").exit_code == 0
    engine = create_engine(url)
    with Session(engine) as session:
        kenya(ExportWorld(session, Accounts(session, settings)))
        session.commit()
    engine.dispose()
    for file_format in ("csv", "sps", "do"):
        result = run("export", "--study", "exp", "--country", "KE", "--format", file_format, "--lang", "sw")
        assert result.exit_code == 0, result.output
    folder = tmp_path / "x" / "exp" / "KE"
    assert sorted(path.name for path in folder.iterdir()) == [
        "exp-KE-sw.csv",
        "exp-KE-sw.do",
        "exp-KE-sw.sps",
    ]
    assert (folder / "exp-KE-sw.csv").read_bytes().startswith(b"ID,Section,Question id")
    assert "exp-KE-sw.csv" in (folder / "exp-KE-sw.sps").read_text()
    refused = run("export", "--study", "exp", "--country", "KE", "--format", "csv", "--lang", "fr")
    assert refused.exit_code != 0 and "'fr'" in refused.output
    refused = run("export", "--study", "exp", "--country", "KE", "--format", "do", "--skip-unchanged")
    assert refused.exit_code == 2
