"""``surveykit studies`` and ``surveykit participants`` against a fresh database the CLI migrated."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from surveykit.audit.models import AuditEvent
from surveykit.cli import cli
from surveykit.participants.models import InterviewNumberCounter, Participant
from surveykit.studies.models import ResearchActivity


class CLI:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.url = url
        self.data_dir = data_dir
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        env = {"SURVEYKIT_DATA_DIR": str(self.data_dir), "SURVEYKIT_ENV": "test"}
        return self.runner.invoke(cli, ["--database-url", self.url, *args], env=env)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 0, f"{args}: {result.output}"
        return result.output

    def fails(self, *args: str, code: int = 1) -> str:
        result = self(*args)
        assert result.exit_code == code, f"{args}: exit {result.exit_code}: {result.output}"
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert "Traceback" not in result.output
        return result.output


@pytest.fixture
def run(fresh_database: Callable[[], str], tmp_path: Path) -> CLI:
    runner = CLI(fresh_database(), tmp_path / "data")
    runner.ok("db", "upgrade")
    return runner


@pytest.fixture
def db(run: CLI) -> Iterator[Session]:
    engine = create_engine(run.url)
    session = Session(engine)
    yield session
    session.close()
    engine.dispose()


def table(output: str) -> list[list[str]]:
    header, rule, *rows = output.strip().splitlines()
    assert set(rule) <= {"-", " "}
    return [re.split(r"\s{2,}", line.strip()) for line in [header, *rows]]


def audit_actions(db: Session) -> list[str]:
    db.rollback()
    return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def seed(run: CLI) -> None:
    run.ok("studies", "add", "ocsea", "--name", "Disrupting Harm")
    run.ok(
        "studies",
        "add-country",
        "ocsea",
        "KE",
        "--name",
        "Kenya",
        "--region",
        "Eastern Africa",
        "--language",
        "en",
    )
    run.ok(
        "studies", "add-country", "ocsea", "CA", "--name", "Cambodia", "--language", "km", "--language", "en"
    )
    run.ok("studies", "add-activity", "ocsea", "RA1", "--name", "Government duty bearers")


def test_studies_add_activity_and_show(run: CLI, db: Session) -> None:
    seed(run)
    out = run.ok("studies", "add-activity", "ocsea", "RA2", "--name", "Frontline workers")
    assert "ocsea: research activity RA2 (Frontline workers) added" in out
    shown = run.ok("studies", "show", "ocsea")
    head, activities, countries = shown.strip().split("\n\n")
    assert head == "ocsea: Disrupting Harm"
    assert table(activities) == [
        ["activity", "name"],
        ["RA1", "Government duty bearers"],
        ["RA2", "Frontline workers"],
    ]
    assert table(countries) == [
        ["country", "name", "region", "languages"],
        ["CA", "Cambodia", "-", "km,en"],
        ["KE", "Kenya", "Eastern Africa", "en"],
    ]
    assert table(run.ok("studies", "list")) == [
        ["study", "name", "countries"],
        ["ocsea", "Disrupting Harm", "CA KE"],
    ]
    assert audit_actions(db) == [
        "study.create",
        "study.add_country",
        "study.add_country",
        "study.add_activity",
        "study.add_activity",
    ]
    assert "already has a research activity RA1" in run.fails(
        "studies", "add-activity", "ocsea", "RA1", "--name", "x"
    )
    assert "RA1 to RA9" in run.fails("studies", "add-activity", "ocsea", "RA10", "--name", "x")
    assert "no study" in run.fails("studies", "add-activity", "nope", "RA1", "--name", "x")
    assert "no study" in run.fails("studies", "show", "nope")
    assert "language code" in run.fails(
        "studies", "add-country", "ocsea", "TZ", "--name", "Tanzania", "--language", "Swahili"
    )
    run.ok("studies", "add", "empty")
    empty = run.ok("studies", "show", "empty")
    assert "no research activities" in empty and "no countries" in empty
    db.rollback()
    assert db.scalar(select(func.count()).select_from(ResearchActivity)) == 2


def write_xlsx(path: Path, rows: list[list[Any]]) -> Path:
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    workbook.save(path)
    return path


def test_participants_import_and_list(run: CLI, db: Session, tmp_path: Path) -> None:
    seed(run)
    sample = tmp_path / "kenya.csv"
    sample.write_text(
        "agency,position,interview\n"
        "Ministry of ICT,Director of Cyber Security,a\n"
        "Ministry of ICT,,a\n"
        "Police Cyber Crime Unit,Head,\n",
        encoding="utf-8",
    )
    args = ["participants", "import", str(sample), "--study", "ocsea", "--country", "KE", "--activity", "RA1"]
    dry = run.ok(*args, "--dry-run")
    assert "kenya.csv is valid: 3 participant(s) in 2 interview(s) from 3 row(s); nothing was stored" in dry
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Participant)) == 0
    out = run.ok(*args)
    assert (
        "imported 3 participant(s) in 2 interview(s) from 3 row(s): interviews RA1-KE-01 to RA1-KE-02" in out
    )
    assert table(run.ok("participants", "list", "--study", "ocsea", "--country", "KE")) == [
        ["ID", "Ministry/Government Agency", "Position", "status"],
        ["RA1-KE-01-A", "Ministry of ICT", "Director of Cyber Security", "planned"],
        ["RA1-KE-01-B", "Ministry of ICT", "planned"],
        ["RA1-KE-02-A", "Police Cyber Crime Unit", "Head", "planned"],
    ]
    workbook = write_xlsx(tmp_path / "more.xlsx", [["Agency"], ["Communications Authority"]])
    run.ok(
        "participants", "import", str(workbook), "--study", "ocsea", "--country", "KE", "--activity", "RA1"
    )
    listed = table(
        run.ok("participants", "list", "--study", "ocsea", "--country", "KE", "--status", "planned")
    )
    assert listed[-1] == ["RA1-KE-03-A", "Communications Authority", "planned"]
    assert "no participants" in run.ok("participants", "list", "--study", "ocsea", "--country", "CA")
    db.rollback()
    imports = list(
        db.scalars(
            select(AuditEvent).where(AuditEvent.action == "participant.import").order_by(AuditEvent.id)
        )
    )
    assert [(e.target, e.details["first_number"], e.details["last_number"]) for e in imports] == [
        ("ocsea/KE/RA1", 1, 2),
        ("ocsea/KE/RA1", 3, 3),
    ]
    assert imports[0].actor.startswith("cli")


def test_a_bad_file_prints_a_table_of_problems_and_imports_nothing(
    run: CLI, db: Session, tmp_path: Path
) -> None:
    seed(run)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "agency,position\nMinistry of ICT,\n,Director\nPolice," + "x" * 301 + "\n", encoding="utf-8"
    )
    out = run.fails(
        "participants", "import", str(bad), "--study", "ocsea", "--country", "KE", "--activity", "RA1"
    )
    lines = out.strip().splitlines()
    assert lines[0] == "Error: bad.csv cannot be imported:"
    assert table("\n".join(lines[1:-1])) == [
        ["row", "column", "problem"],
        ["3", "agency", "agency is required"],
        ["4", "position", "position is longer than 300 characters (301)"],
    ]
    assert lines[-1] == "nothing was imported"
    names = tmp_path / "names.xlsx"
    write_xlsx(names, [["agency", "Full Name"], ["Ministry", "Jane Wanjiru"]])
    out = run.fails(
        "participants", "import", str(names), "--study", "ocsea", "--country", "KE", "--activity", "RA1"
    )
    assert "stores no names" in out and "Jane" not in out
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "the file is empty" in run.fails(
        "participants", "import", str(empty), "--study", "ocsea", "--country", "KE", "--activity", "RA1"
    )
    wrong = tmp_path / "sample.pdf"
    wrong.write_bytes(b"%PDF-1.4")
    assert "nothing was imported" in run.fails(
        "participants", "import", str(wrong), "--study", "ocsea", "--country", "KE", "--activity", "RA1"
    )
    good = tmp_path / "good.csv"
    good.write_text("agency\nMinistry\n", encoding="utf-8")
    assert "has no research activity 'RA2'" in run.fails(
        "participants", "import", str(good), "--study", "ocsea", "--country", "KE", "--activity", "RA2"
    )
    assert "has no country 'TZ'" in run.fails(
        "participants", "import", str(good), "--study", "ocsea", "--country", "TZ", "--activity", "RA1"
    )
    assert "no study" in run.fails(
        "participants", "import", str(good), "--study", "nope", "--country", "KE", "--activity", "RA1"
    )
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Participant)) == 0
    assert db.scalar(select(func.count()).select_from(InterviewNumberCounter)) == 0
    assert "participant.import" not in audit_actions(db)


def test_a_large_import_shows_progress_and_numbers_every_interview(
    run: CLI, db: Session, tmp_path: Path
) -> None:
    seed(run)
    rows = "".join(
        f"Agency number {i} with a reasonably long name,Officer {i},{i // 2}\n" for i in range(2000)
    )
    sample = tmp_path / "large.csv"
    sample.write_text("agency,position,interview\n" + rows, encoding="utf-8")
    assert sample.stat().st_size > 64 * 1024
    out = run.ok(
        "participants", "import", str(sample), "--study", "ocsea", "--country", "KE", "--activity", "RA1"
    )
    assert "imported 2000 participant(s) in 1000 interview(s)" in out
    db.rollback()
    letters = db.execute(
        select(Participant.letter, func.count()).group_by(Participant.letter).order_by(Participant.letter)
    ).all()
    assert letters == [("A", 1000), ("B", 1000)]
    assert db.scalar(select(func.max(Participant.interview_number))) == 1000
    assert db.scalar(
        select(Participant.pid).where(Participant.interview_number == 1000, Participant.letter == "B")
    ) == ("RA1-KE-1000-B")


def test_the_progress_bar_reports_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from surveykit.participants import cli as participants_cli

    captured = io.StringIO()
    monkeypatch.setattr(participants_cli.sys, "stderr", captured)
    with participants_cli.progress_bar(True, "reading", "row") as update:
        assert update is not None
        update(5)
    with participants_cli.progress_bar(False, "reading", "row") as update:
        assert update is None
