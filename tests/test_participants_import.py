"""Bulk import of the planned sample from CSV and XLSX: all rows or none, a report per bad row,
no name columns, over HTTP (multipart and raw bodies)."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import openpyxl
import pytest
import webtest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from surveykit.audit.models import AuditEvent
from surveykit.participants import importer
from surveykit.participants.importer import ImportRejected, UnsupportedFile
from surveykit.participants.models import InterviewNumberCounter, Participant
from surveykit.studies import services as studies

IMPORT = "/api/v1/studies/ocsea/countries/KE/participants/import"
XLSX = importer.XLSX_CONTENT_TYPE
ENVELOPE_KEYS = {"status", "code", "message", "details"}

SAMPLE_CSV = """agency,position,interview
Ministry of ICT,Director of Cyber Security,1
Ministry of ICT,,1
"National Council for Children, Ministry of Social Affairs",Programme officer,
Police Cyber Crime Unit,Head,2
Communications Authority,,
"""


def xlsx(rows: list[list[Any]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def parse_csv(text: str) -> importer.ImportPlan:
    return importer.parse(text.encode("utf-8"), importer.CSV)


def rejected(data: bytes | str, kind: str = importer.CSV) -> list[tuple[int | None, str | None, str]]:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with pytest.raises(ImportRejected) as caught:
        importer.parse(raw, kind)
    return [(e.row, e.column, e.message) for e in caught.value.errors]


def layout(plan: importer.ImportPlan) -> list[list[tuple[int, str, str | None]]]:
    return [[(p.row, p.agency, p.position) for p in interview] for interview in plan.interviews]


# ------------------------------------------------------------------------------------------ parsing


def test_a_csv_sample_groups_rows_into_interviews() -> None:
    plan = parse_csv(SAMPLE_CSV)
    assert layout(plan) == [
        [(2, "Ministry of ICT", "Director of Cyber Security"), (3, "Ministry of ICT", None)],
        [(4, "National Council for Children, Ministry of Social Affairs", "Programme officer")],
        [(5, "Police Cyber Crime Unit", "Head")],
        [(6, "Communications Authority", None)],
    ]
    assert (plan.rows, plan.participants, len(plan.interviews)) == (5, 5, 4)


def test_an_xlsx_sample_reads_like_the_csv() -> None:
    data = xlsx(
        [
            ["Agency", "Position", "Interview"],
            ["Ministry of ICT", "Director of Cyber Security", 1],
            ["Ministry of ICT", None, 1.0],
            ["National Council for Children, Ministry of Social Affairs", "Programme officer", None],
            ["Police Cyber Crime Unit", "Head", "2"],
            [None, None, None],
            ["Communications Authority", None, None],
        ]
    )
    plan = importer.parse(data, importer.file_kind(data, XLSX))
    assert [[p.agency for p in interview] for interview in plan.interviews] == [
        ["Ministry of ICT", "Ministry of ICT"],
        ["National Council for Children, Ministry of Social Affairs"],
        ["Police Cyber Crime Unit"],
        ["Communications Authority"],
    ]
    assert [p.row for interview in plan.interviews for p in interview] == [2, 3, 4, 5, 7]


def test_formula_looking_cells_are_plain_text() -> None:
    plan = parse_csv('agency,position\n=HYPERLINK("http://x"),+1 director\n@SUM(1),-x\n')
    assert layout(plan) == [[(2, '=HYPERLINK("http://x")', "+1 director")], [(3, "@SUM(1)", "-x")]]
    data = xlsx([["agency", "position"], ["=1+2", "=A1"]])
    assert layout(importer.parse(data, importer.XLSX)) == [[(2, "=1+2", "=A1")]]


def test_only_agency_is_required_and_headings_are_forgiving() -> None:
    plan = parse_csv("\ufeff AGENCY \r\nMinistry of ICT\r\n\r\n,\nPolice\n")
    assert layout(plan) == [[(2, "Ministry of ICT", None)], [(5, "Police", None)]]
    semicolons = parse_csv("agency;position\nMinistry of ICT, Kenya;Director\n")
    assert layout(semicolons) == [[(2, "Ministry of ICT, Kenya", "Director")]]
    tabs = parse_csv("interview\tagency\n7\tMinistry\n7\tPolice\n")
    assert [[p.agency for p in group] for group in tabs.interviews] == [["Ministry", "Police"]]
    line_breaks = parse_csv('agency\n"Ministry of ICT,\n  Department of\tCyber Security"\n')
    assert layout(line_breaks) == [[(2, "Ministry of ICT, Department of Cyber Security", None)]]


def test_dates_and_numbers_in_xlsx_become_text() -> None:
    data = xlsx([["agency", "position", "interview"], [2020, datetime(2020, 5, 14), 3.5]])
    assert layout(importer.parse(data, importer.XLSX)) == [[(2, "2020", "2020-05-14")]]


def test_every_bad_row_is_reported_and_nothing_planned() -> None:
    text = (
        "agency,position,interview\n"
        "Ministry of ICT,,1\n"
        ",Director,1\n"  # row 3: no agency
        f"{'x' * 501},,\n"  # row 4: agency too long
        f"Police,{'y' * 301},\n"  # row 5: position too long
        "Ministry\u0007,,\n"  # row 6: a control character
        "Ministry,,1,extra\n"  # row 7: a cell outside the columns
        f"Ministry,,{'k' * 101}\n"  # row 8: grouping key too long
    )
    assert rejected(text) == [
        (3, "agency", "agency is required"),
        (4, "agency", "agency is longer than 500 characters (501)"),
        (5, "position", "position is longer than 300 characters (301)"),
        (6, "agency", "agency contains the control character U+0007"),
        (7, None, "a cell lies in a column without a heading"),
        (8, "interview", "interview is longer than 100 characters (101)"),
    ]


def test_an_interview_has_at_most_26_participants() -> None:
    text = "agency,interview\n" + "Ministry,big\n" * 27
    [(row, column, message)] = rejected(text)
    assert (row, column) == (28, "interview") and "at most 26" in message


@pytest.mark.parametrize(
    "heading",
    [
        "name",
        "Name",
        "Full name",
        "full_name",
        "FIRST NAME",
        "Surname",
        "participant name",
        "Names",
        "Agency name",
    ],
)
def test_a_column_of_names_is_refused_outright(heading: str) -> None:
    text = f"agency,{heading}\nMinistry of ICT,Jane Wanjiru\n,\n"
    errors = rejected(text)
    assert len(errors) == 1 and errors[0][:2] == (1, None)
    assert "stores no names" in errors[0][2]
    assert "Jane" not in errors[0][2]


def test_unknown_duplicate_and_missing_columns() -> None:
    assert rejected("agency,ministry\nx,y\n") == [
        (1, None, "column B has an unknown heading; the columns are agency, position, interview, id")
    ]
    assert rejected("agency,agency\nx,y\n") == [(1, "agency", "column agency appears twice")]
    assert rejected("position\nDirector\n") == [(1, "agency", "the agency column is missing")]
    assert rejected("agency,,position\nx,y,z\n") == [(2, None, "a cell lies in a column without a heading")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"agency,position\n", "the file has headings but no participant rows"),
        (b"agency\n\n,\n", "the file has headings but no participant rows"),
        (b"\n\nagency\nx\n", "the first row must name the columns: agency, position, interview, id"),
        (b"agency\nMinist\xe8re\n", "the file is not UTF-8 text (byte 13); save it as 'CSV UTF-8'"),
    ],
)
def test_empty_and_unreadable_csv(data: bytes, message: str) -> None:
    assert [error[2] for error in rejected(data)] == [message]


def test_quoting_errors_name_the_row() -> None:
    [(row, _, message)] = rejected('agency\nok\n"unterminated\n')
    assert row == 3 and message.startswith("not valid CSV")


@pytest.mark.parametrize(
    ("data", "content_type", "filename", "message"),
    [
        (b"PK\x03\x04junk", "text/csv", None, "zip archive"),
        (b"agency\nx\n", XLSX, None, "not an XLSX workbook"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, None, "old.xls", ".xls files are not supported"),
        (b"agency\nx\n", "application/pdf", None, "expected a CSV or XLSX file"),
        (b"agency\x00\nx\n", "text/csv", None, "NUL bytes"),
    ],
)
def test_wrong_file_types(data: bytes, content_type: str | None, filename: str | None, message: str) -> None:
    with pytest.raises(UnsupportedFile) as caught:
        importer.parse(data, importer.file_kind(data, content_type, filename))
    assert message in str(caught.value)


def test_a_zip_that_is_not_a_workbook_is_refused() -> None:
    out = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    with pytest.raises(UnsupportedFile, match="not a readable XLSX workbook"):
        importer.parse(out.getvalue(), importer.file_kind(out.getvalue(), None, "sample.xlsx"))


def test_file_kind_follows_names_types_and_bytes() -> None:
    workbook = xlsx([["agency"], ["x"]])
    assert importer.file_kind(workbook, None, "Sample.XLSX") == importer.XLSX
    assert importer.file_kind(workbook, "application/octet-stream", None) == importer.XLSX
    assert importer.file_kind(b"agency\n", None, "sample.csv") == importer.CSV
    assert importer.file_kind(b"agency\n", "text/csv; charset=utf-8", None) == importer.CSV
    assert importer.file_kind(b"agency\n", None, None) == importer.CSV


def test_too_many_rows() -> None:
    text = "agency\n" + "Ministry\n" * (importer.MAX_ROWS + 1)
    [(row, _, message)] = rejected(text)
    assert row == importer.MAX_ROWS + 2 and "more than" in message


def test_the_report_is_capped_but_counts_everything() -> None:
    text = "agency,position\n" + ",x\n" * 300
    with pytest.raises(ImportRejected) as caught:
        parse_csv(text)
    assert (len(caught.value.errors), caught.value.total) == (importer.MAX_ERRORS, 300)
    assert "and 299 more" in str(caught.value)


# ------------------------------------------------------------------------------------------- HTTP


def assert_envelope(response: webtest.TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_int == status, response.text
    body = response.json
    assert set(body) == ENVELOPE_KEYS
    assert (body["status"], body["code"]) == (status, code)
    return body


class Team:
    def __init__(self, accounts: Any, dbsession: Session) -> None:
        self.study = accounts.study("ocsea", ("KE", "TZ"))
        studies.add_activity(dbsession, self.study, "RA1", "Duty bearers")
        self.coordinator = accounts.headers("coordinator", "ocsea", ["KE"])
        self.coordinator_tz = accounts.headers("coordinator", "ocsea", ["TZ"])
        self.analyst = accounts.headers("analyst", "ocsea", ["KE"])
        self.fieldworker = accounts.headers("fieldworker", "ocsea", ["KE"])


@pytest.fixture
def team(accounts: Any, dbsession: Session) -> Team:
    return Team(accounts, dbsession)


def participants(dbsession: Session) -> list[tuple[str, str, str | None]]:
    dbsession.expire_all()
    return list(
        dbsession.execute(
            select(Participant.pid, Participant.agency, Participant.position).order_by(Participant.pid)
        )
    )


def post_raw(
    testapp: webtest.TestApp, data: bytes, content_type: str, headers: dict[str, str], **query: str
) -> Any:
    params = "&".join(f"{key}={value}" for key, value in {"activity": "RA1", **query}.items())
    return testapp.post(
        f"{IMPORT}?{params}", data, headers=headers, content_type=content_type, expect_errors=True
    )


def test_a_coordinator_imports_a_csv_upload(testapp: webtest.TestApp, team: Team, dbsession: Session) -> None:
    response = testapp.post(
        IMPORT,
        {"activity": "RA1"},
        upload_files=[("file", "sample.csv", SAMPLE_CSV.encode())],
        headers=team.coordinator,
    )
    assert response.status_int == 201
    body = response.json
    assert {k: body[k] for k in ("dry_run", "file_type", "rows", "interview_count", "participant_count")} == {
        "dry_run": False,
        "file_type": "csv",
        "rows": 5,
        "interview_count": 4,
        "participant_count": 5,
    }
    assert [p["pid"] for p in body["participants"]] == [
        "RA1-KE-01-A",
        "RA1-KE-01-B",
        "RA1-KE-02-A",
        "RA1-KE-03-A",
        "RA1-KE-04-A",
    ]
    assert participants(dbsession)[:2] == [
        ("RA1-KE-01-A", "Ministry of ICT", "Director of Cyber Security"),
        ("RA1-KE-01-B", "Ministry of ICT", None),
    ]
    [event] = dbsession.scalars(select(AuditEvent).where(AuditEvent.action == "participant.import"))
    assert event.target == "ocsea/KE/RA1"
    assert event.details == {
        "file_type": "csv",
        "rows": 5,
        "interviews": 4,
        "participants": 5,
        "first_number": 1,
        "last_number": 4,
        "known_ids": 0,
    }
    # A second import continues the numbering.
    again = post_raw(testapp, b"agency\nPolice\n", "text/csv", team.coordinator)
    assert [p["pid"] for p in again.json["participants"]] == ["RA1-KE-05-A"]


def test_raw_xlsx_body_and_dry_run(testapp: webtest.TestApp, team: Team, dbsession: Session) -> None:
    data = xlsx([["agency", "position"], ["Ministry of ICT", "Director"], ["Police", None]])
    dry = post_raw(testapp, data, XLSX, team.coordinator, dry_run="true")
    assert dry.status_int == 200
    assert dry.json == {
        "dry_run": True,
        "file_type": "xlsx",
        "rows": 2,
        "interview_count": 2,
        "participant_count": 2,
    }
    assert participants(dbsession) == []
    assert dbsession.scalar(select(func.count()).select_from(InterviewNumberCounter)) == 0
    real = post_raw(testapp, data, XLSX, team.coordinator)
    assert real.status_int == 201
    assert participants(dbsession) == [
        ("RA1-KE-01-A", "Ministry of ICT", "Director"),
        ("RA1-KE-02-A", "Police", None),
    ]


def test_a_bad_file_imports_nothing_and_reports_every_row(
    testapp: webtest.TestApp, team: Team, dbsession: Session
) -> None:
    text = "agency,position\nMinistry of ICT,Director\n,Officer\nPolice,\n" + f"{'x' * 501},\n"
    response = post_raw(testapp, text.encode(), "text/csv", team.coordinator)
    body = assert_envelope(response, 422, "import_invalid")
    assert body["message"].startswith("nothing was imported")
    assert body["details"] == [
        {
            "location": "file",
            "path": "rows[3].agency",
            "message": "agency is required",
            "row": 3,
            "column": "agency",
        },
        {
            "location": "file",
            "path": "rows[5].agency",
            "message": "agency is longer than 500 characters (501)",
            "row": 5,
            "column": "agency",
        },
    ]
    assert participants(dbsession) == []
    names = post_raw(testapp, b"agency,full name\nMinistry,Jane Wanjiru\n", "text/csv", team.coordinator)
    body = assert_envelope(names, 422, "import_invalid")
    assert "stores no names" in body["message"] and "Jane" not in names.text
    assert participants(dbsession) == []
    assert not list(dbsession.scalars(select(AuditEvent).where(AuditEvent.action == "participant.import")))


def test_wrong_types_and_missing_parameters(testapp: webtest.TestApp, team: Team) -> None:
    assert_envelope(
        post_raw(testapp, b"agency", "text/plain", team.coordinator), 415, "unsupported_media_type"
    )
    assert_envelope(post_raw(testapp, b"agency\nx\n", XLSX, team.coordinator), 415, "unsupported_media_type")
    assert_envelope(
        post_raw(testapp, xlsx([["agency"]]), "text/csv", team.coordinator), 415, "unsupported_media_type"
    )
    upload = testapp.post(
        IMPORT,
        {"activity": "RA1"},
        upload_files=[("file", "sample.pdf", b"%PDF-1.4", "application/pdf")],
        headers=team.coordinator,
        expect_errors=True,
    )
    assert_envelope(upload, 415, "unsupported_media_type")
    no_file = testapp.post(IMPORT, {"activity": "RA1"}, headers=team.coordinator, expect_errors=True)
    assert_envelope(no_file, 415, "unsupported_media_type")
    multipart_without_file = testapp.post(
        IMPORT,
        {"activity": "RA1"},
        upload_files=[("other", "a.csv", b"agency\nx\n")],
        headers=team.coordinator,
        expect_errors=True,
    )
    assert [d["path"] for d in assert_envelope(multipart_without_file, 422, "invalid_input")["details"]] == [
        "other"
    ]
    no_activity = testapp.post(
        f"{IMPORT}", b"agency\nx\n", headers=team.coordinator, content_type="text/csv", expect_errors=True
    )
    assert [d["path"] for d in assert_envelope(no_activity, 422, "invalid_input")["details"]] == ["activity"]
    unknown_activity = post_raw(testapp, b"agency\nx\n", "text/csv", team.coordinator, activity="RA4")
    assert_envelope(unknown_activity, 404, "activity_not_found")
    bad_flag = post_raw(testapp, b"agency\nx\n", "text/csv", team.coordinator, dry_run="maybe")
    assert [d["path"] for d in assert_envelope(bad_flag, 422, "invalid_input")["details"]] == ["dry_run"]
    upload_in_form = testapp.post(
        IMPORT,
        {"activity": "RA1", "dry_run": "1"},
        upload_files=[("file", "s.csv", b"agency\nx\n")],
        headers=team.coordinator,
    )
    assert upload_in_form.json["dry_run"] is True


def test_only_coordinators_and_admins_of_the_country_import(
    testapp: webtest.TestApp, team: Team, dbsession: Session
) -> None:
    for headers in (team.analyst, team.fieldworker, team.coordinator_tz):
        assert_envelope(post_raw(testapp, b"agency\nx\n", "text/csv", headers), 403, "forbidden")
    tz = testapp.post(
        "/api/v1/studies/ocsea/countries/TZ/participants/import?activity=RA1",
        b"agency\nx\n",
        headers=team.coordinator_tz,
        content_type="text/csv",
    )
    assert [p["pid"] for p in tz.json["participants"]] == ["RA1-TZ-01-A"]
    assert [pid for pid, _, _ in participants(dbsession)] == ["RA1-TZ-01-A"]


def test_json_rows_import_like_a_sheet(testapp: webtest.TestApp, team: Team, dbsession: Session) -> None:
    rows = [
        {"agency": "Ministry of ICT", "position": "Director", "interview": 1},
        {"agency": "Ministry of ICT", "interview": 1},
        {"agency": "Police", "position": None},
    ]
    url = f"{IMPORT}?activity=RA1"
    response = testapp.post_json(url, {"rows": rows}, headers=team.coordinator)
    assert response.status_int == 201
    assert (response.json["file_type"], response.json["interview_count"]) == ("json", 2)
    assert [pid for pid, _, _ in participants(dbsession)] == ["RA1-KE-01-A", "RA1-KE-01-B", "RA1-KE-02-A"]

    bad = testapp.post_json(
        url,
        {"rows": [{"agency": "Police"}, {"position": "x"}, {"agency": "x", "ministry": "y"}, "text"]},
        headers=team.coordinator,
        expect_errors=True,
    )
    details = assert_envelope(bad, 422, "import_invalid")["details"]
    assert [d["path"] for d in details] == ["rows[1].agency", "rows[2].ministry", "rows[3]"]
    names = testapp.post_json(
        url,
        {"rows": [{"agency": "Police", "Name": "Jane Wanjiru"}]},
        headers=team.coordinator,
        expect_errors=True,
    )
    body = assert_envelope(names, 422, "import_invalid")
    assert body["details"][0]["path"] == "rows[0].Name" and "Jane" not in names.text
    for body, path in (({}, "rows"), ({"rows": [], "extra": 1}, "extra")):
        response = testapp.post_json(url, body, headers=team.coordinator, expect_errors=True)
        assert [d["path"] for d in assert_envelope(response, 422, "invalid_input")["details"]] == [path]
    empty = testapp.post_json(url, {"rows": []}, headers=team.coordinator, expect_errors=True)
    assert_envelope(empty, 422, "import_invalid")
    not_a_list = testapp.post_json(
        url, {"rows": {"agency": "x"}}, headers=team.coordinator, expect_errors=True
    )
    assert_envelope(not_a_list, 422, "import_invalid")
    assert len(participants(dbsession)) == 3


def test_parse_records_checks_types_and_duplicates() -> None:
    with pytest.raises(ImportRejected) as caught:
        importer.parse_records(
            [
                {"agency": 5.5},
                {"agency": True},
                {"agency": "x", "Agency": "y"},
                {"agency": "ok", "interview": 7},
            ]
        )
    assert [(e.row, e.column, e.message) for e in caught.value.errors] == [
        (0, "agency", "agency must be text"),
        (0, "agency", "agency is required"),
        (1, "agency", "agency must be text"),
        (1, "agency", "agency is required"),
        (2, "agency", "agency is given twice"),
    ]
    plan = importer.parse_records([{"agency": "a", "interview": 7}, {"agency": "b", "interview": "7"}])
    assert [[p.agency for p in group] for group in plan.interviews] == [["a", "b"]]


def test_a_workbook_cannot_make_the_reader_pad_millions_of_cells() -> None:
    """The declared dimensions are ignored; rows and columns read are bounded."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["agency"])
    sheet.append(["Ministry of ICT"])
    sheet.cell(row=importer.MAX_SHEET_ROWS + 5, column=1, value="Police")
    out = io.BytesIO()
    workbook.save(out)
    assert rejected(out.getvalue(), importer.XLSX) == [
        (importer.MAX_SHEET_ROWS + 1, None, f"the sheet has more than {importer.MAX_SHEET_ROWS} rows")
    ]
    wide = xlsx([["agency", *[None] * (importer.MAX_COLUMNS - 1), "extra"], ["x"]])
    assert rejected(wide, importer.XLSX) == [
        (1, None, f"the sheet is wider than {importer.MAX_COLUMNS} columns")
    ]
    gaps = openpyxl.Workbook()
    gaps.active.append(["agency", "position"])
    gaps.active.cell(row=40_000, column=1, value="Police")
    out = io.BytesIO()
    gaps.save(out)
    assert layout(importer.parse(out.getvalue(), importer.XLSX)) == [[(40_000, "Police", None)]]
