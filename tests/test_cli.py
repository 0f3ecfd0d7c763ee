"""The `surveykit` command itself: entry points, the db group, and the embedded database's first start."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from instrument_samples import RA1_FILE, RA1_SLUG, minimal_definition, write_yaml
from sqlalchemy.orm import Session

from surveykit import migrate
from surveykit.cli import CLIContext, cli, format_table, prepare_database, publish_files
from surveykit.instruments import services


def _child_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("SURVEYKIT_")}


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "surveykit.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_child_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: " in result.stdout
    for command in ("db", "instruments", "serve"):
        assert f"  {command}" in result.stdout


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("surveykit")
    assert script.is_file()
    result = subprocess.run(
        [str(script), "instruments", "validate", str(RA1_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_child_env(),
    )
    assert result.returncode == 0, result.stderr
    assert f"valid ({RA1_SLUG}, " in result.stdout


def test_help_lists_the_instrument_commands() -> None:
    result = CliRunner().invoke(cli, ["instruments", "--help"])
    assert result.exit_code == 0
    for command in ("validate", "publish", "list", "retire"):
        assert f"  {command}" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["instruments", "pubish"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_db_upgrade_is_idempotent(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    runner = CliRunner()
    first = runner.invoke(cli, ["--database-url", url, "db", "upgrade"])
    second = runner.invoke(cli, ["--database-url", url, "db", "upgrade"])
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert first.output == second.output
    listed = runner.invoke(cli, ["--database-url", url, "instruments", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.strip() == "no instruments published"


def test_db_upgrade_to_a_revision(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    result = CliRunner().invoke(cli, ["--database-url", url, "db", "upgrade", "--revision", "0001"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "database at revision 0001"


def test_publish_files_publishes_every_file_and_reports_each(dbsession: Session, tmp_path: Path) -> None:
    sample = write_yaml(tmp_path / "sample.yaml", minimal_definition())
    lines: list[str] = []
    results = publish_files(dbsession, [RA1_FILE, sample, sample], "tester", lines.append)
    assert [(r.slug, r.version, r.created) for r in results] == [
        (RA1_SLUG, 1, True),
        ("sample-debrief", 1, True),
        ("sample-debrief", 1, False),
    ]
    assert lines == [
        f"{RA1_FILE}: {RA1_SLUG} published as new version 1",
        f"{sample}: sample-debrief published as new version 1",
        f"{sample}: sample-debrief unchanged, still version 1",
    ]


def test_format_table_aligns_columns() -> None:
    table = format_table([["slug", "v"], ["a-long-slug", "12"]])
    assert table.splitlines() == ["slug         v", "-----------  --", "a-long-slug  12"]


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[CLIContext]:
    instruments_dir = tmp_path / "instruments"
    instruments_dir.mkdir()
    write_yaml(instruments_dir / "sample.yaml", minimal_definition())
    (instruments_dir / "README.txt").write_text("not an instrument", encoding="utf-8")
    context = CLIContext(
        None,
        {
            "SURVEYKIT_DATABASE_URL": "",
            "SURVEYKIT_ENV": "test",
            "SURVEYKIT_DATA_DIR": str(tmp_path / "data"),
            "SURVEYKIT_INSTRUMENTS_DIR": str(instruments_dir),
        },
    )
    yield context
    context.close()


def test_first_start_of_the_embedded_database_publishes_the_instruments(embedded: CLIContext) -> None:
    lines: list[str] = []
    prepare_database(embedded, lines.append)
    assert (Path(embedded.settings["surveykit.data_dir"]) / "surveykit.sqlite3").is_file()
    assert migrate.is_up_to_date(embedded.engine)
    assert any(line.endswith("sample-debrief published as new version 1") for line in lines), lines
    with embedded.session() as session:
        assert [row["slug"] for row in services.list_instruments(session)] == ["sample-debrief"]


def test_later_starts_do_not_republish(embedded: CLIContext) -> None:
    prepare_database(embedded, lambda line: None)
    changed = minimal_definition()
    changed["title"]["en"] = "Changed on disk"
    write_yaml(Path(embedded.settings["surveykit.instruments_dir"]) / "sample.yaml", changed)
    with embedded.session() as session:
        services.retire(session, "sample-debrief")

    lines: list[str] = []
    prepare_database(embedded, lines.append)
    assert not any("published" in line for line in lines), lines
    with embedded.session() as session:
        [row] = services.list_instruments(session, include_retired=True)
    assert (row["current_version"], row["retired"], row["title"]) == (1, True, "Sample debrief")
