"""The workbook opens in LibreOffice, and what LibreOffice reads is what the workbook holds.

LibreOffice converts every sheet to CSV (headless, a throwaway user profile); each CSV is compared
with the same sheet read by openpyxl. CI installs LibreOffice from the distribution's packages
(``.ci/run``); this test fails, never skips, when ``soffice`` is missing.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from test_export_support import AMHARIC, KHMER, THAI, ExportWorld, kenya, load

from surveykit.exports import services

# Filter options: comma, double quote, UTF-8 (76), from row 1, (no column formats), language default,
# quote all text cells: no, detect special numbers: yes, save cell contents as shown: yes, export
# formulas: no, remove spaces: no, every sheet to its own file (-1).
CSV_FILTER = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true,false,false,-1"


def soffice() -> str:
    found = shutil.which("soffice") or shutil.which("libreoffice")
    if found is None:
        pytest.fail("LibreOffice (soffice) is required: .ci/run installs libreoffice-calc-nogui")
    return found


def convert(xlsx: Path, out: Path) -> dict[str, list[list[str]]]:
    profile = out / "profile"
    completed = subprocess.run(
        [
            soffice(),
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--norestore",
            "--convert-to",
            CSV_FILTER,
            "--outdir",
            str(out),
            str(xlsx),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr
    sheets = {}
    for path in out.glob(f"{xlsx.stem}-*.csv"):
        with path.open(encoding="utf-8", newline="") as handle:
            sheets[path.stem[len(xlsx.stem) + 1 :]] = [row for row in csv.reader(handle)]
    assert sheets, f"LibreOffice wrote no CSV: {completed.stdout} {completed.stderr}"
    return sheets


def as_shown(value: Any) -> str:
    """A cell as LibreOffice shows it with the workbook's number formats."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (
            value.strftime("%Y-%m-%d %H:%M:%S")
            if value.time() != datetime.min.time()
            else f"{value:%Y-%m-%d}"
        )
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_libreoffice_opens_the_workbook_and_reads_the_same_content(
    dbsession: Session, accounts: Any, tmp_path: Path
) -> None:
    world = ExportWorld(dbsession, accounts)
    kenya(world)
    world.interview(
        "KE",
        [("=SUM(A1:A9)", "@Director"), ("Ministry of Interior", None)],
        started="2020-07-30T09:00:00+03:00",
        answers={
            "awareness_main": KHMER,
            "training": AMHARIC,
            "laws_main": THAI,
            "laws_gaps": ("word " * 9000)[:40_000],
            "budget_details": "=1+1",
            "budget_line": True,
            "people": 7,
            "follow_up": "2020-08-15",
        },
        quotes=[{"question_id": "training", "text": "-minus first", "participant": "B"}],
    )
    scope = services.resolve_scope(dbsession, "exp", "KE")
    xlsx = tmp_path / "kenya.xlsx"
    services.write_workbook(dbsession, scope, str(xlsx), "analyst")
    book = load(xlsx)

    converted = convert(xlsx, tmp_path / "csv")
    assert sorted(converted) == sorted(book.sheetnames)
    for title in book.sheetnames:
        expected = [[as_shown(value) for value in row] for row in book[title].iter_rows(values_only=True)]
        width = max(len(row) for row in expected)
        got = [row + [""] * (width - len(row)) for row in converted[title]]
        assert got == expected, title

    answers = {(row[0], row[2]): row[4] for row in converted["Answers"][1:]}
    pid = "RA1-KE-104-A"
    assert answers[(pid, "awareness_main")] == KHMER
    assert answers[(pid, "training")] == AMHARIC
    assert answers[(pid, "laws_main")] == THAI
    assert answers[(pid, "budget_details")] == "=1+1"  # text, not the formula's result 2
    participants = {row[0]: row for row in converted["Participants"][1:]}
    assert participants[pid][1:3] == ["=SUM(A1:A9)", "@Director"]
    assert participants[pid][3] == "2020-07-30"
    # An incorrectly typed cell would have come back from LibreOffice as a number or an error.
    quote = next(row for row in converted["Quotes"][1:] if row[4] == "-minus first")
    assert quote[6] == "(RA1-KE-104-B, Ministry of Interior)"
    assert len(converted["Answers"]) > 40 and len(converted["Participants"]) == 1 + 13
