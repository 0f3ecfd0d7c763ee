"""The command line as an operator meets it: --version, help everywhere, a lazy start, the db
commands, `surveykit config`, offline migration SQL, and one line for each failure an operator can fix."""

from __future__ import annotations

import importlib
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from test_client_support import child_env

from surveykit import migrate
from surveykit.cli import LAZY_COMMANDS, cli
from surveykit.config import PROJECT_ROOT, load_settings
from surveykit.db import make_engine

SURVEYKIT = [sys.executable, "-m", "surveykit.cli"]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SURVEYKIT, *args], capture_output=True, text=True, env=child_env(**env), timeout=120
    )


def invoke(*args: str, env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), env=env)


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"surveykit {importlib.metadata.version('surveykit')}"


def _walk(command: click.Command, path: str, ctx: click.Context) -> list[str]:
    missing = [] if command.help or command.short_help else [path]
    for param in command.params:
        if isinstance(param, click.Option) and not param.help and param.name != "help":
            missing.append(f"{path} {param.opts[0]}")
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            missing += _walk(command.get_command(ctx, name), f"{path} {name}", ctx)
    return missing


def test_every_command_and_option_has_help() -> None:
    assert _walk(cli, "surveykit", click.Context(cli)) == []


def test_the_help_listed_without_importing_a_command_is_the_commands_own() -> None:
    for name, (module, attribute, short_help) in LAZY_COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        assert command.name == name
        assert command.get_short_help_str(70) == short_help


def test_help_loads_no_capability_package() -> None:
    probe = (
        "import sys\nfrom surveykit.cli import main\nsys.argv = ['surveykit', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('surveykit.accounts', 'surveykit.sync',"
        " 'surveykit.exports', 'surveykit.participants', 'surveykit.openapi', 'alembic', 'argon2',"
        " 'openpyxl'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert "Commands:" in result.stdout and "participants" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------------------------- db


def test_db_history_check_and_downgrade(fresh_database: Any) -> None:
    url = fresh_database()
    engine = make_engine(load_settings({}, {"SURVEYKIT_DATABASE_URL": url}))
    try:
        head = migrate.head_revision(engine)
        behind = invoke("--database-url", url, "db", "check")
        assert behind.exit_code == 1 and "run `surveykit db upgrade`" in behind.output

        assert invoke("--database-url", url, "db", "upgrade").exit_code == 0
        history = invoke("--database-url", url, "db", "history")
        assert history.exit_code == 0
        lines = history.output.strip().splitlines()
        assert lines[0].startswith("0001 ")
        assert lines[-1].startswith(f"{head} ") and lines[-1].endswith("(current)")
        checked = invoke("--database-url", url, "db", "check")
        assert checked.exit_code == 0 and "up to date and matching the models" in checked.output

        down = invoke("--database-url", url, "db", "downgrade", "-1")
        assert down.exit_code == 0, down.output
        previous = migrate.current_revision(engine)
        assert previous is not None and previous != head
        assert f"database at revision {previous}" in down.output
        assert invoke("--database-url", url, "db", "check").exit_code == 1
        assert invoke("--database-url", url, "db", "upgrade").exit_code == 0
        assert migrate.current_revision(engine) == head
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "database_url",
    ["", "postgresql+psycopg://reviewer@db.example.invalid/surveykit"],
    ids=["sqlite", "postgresql"],
)
def test_offline_migration_sql(tmp_path: Path, database_url: str) -> None:
    # production.ini with no secret set: writing SQL for review needs none, and connects nowhere.
    env = child_env(SURVEYKIT_DATA_DIR=str(tmp_path), SURVEYKIT_DATABASE_URL=database_url)
    env.pop("SURVEYKIT_SECRET")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "alembic"),
            "-c",
            str(PROJECT_ROOT / "production.ini"),
            "upgrade",
            "head",
            "--sql",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE interviews" in result.stdout
    engine = make_engine(load_settings({}, {"SURVEYKIT_DATA_DIR": str(tmp_path)}))
    head = migrate.head_revision(engine)
    assert f"'{head}'" in result.stdout.split("UPDATE alembic_version")[-1]
    assert not (tmp_path / "surveykit.sqlite3").exists()


# --------------------------------------------------------------------------------------- config


def test_config_shows_every_setting_its_source_and_masks_secrets(tmp_path: Path) -> None:
    ini = tmp_path / "site.ini"
    ini.write_text("[app:main]\nuse = egg:surveykit\nsurveykit.block_size = 20\n")
    env = {
        "SURVEYKIT_SECRET": "a-very-secret-value-" + "x" * 20,
        "SURVEYKIT_DATABASE_URL": "postgresql+psycopg://surveykit:hunter2pw@db.example/surveykit",
        "SURVEYKIT_ADMIN_PASSWORD": "",
    }
    result = invoke("-c", str(ini), "config", "--json", env=env)
    assert result.exit_code == 0, result.output
    assert "a-very-secret-value" not in result.output and "hunter2pw" not in result.output
    import json

    rows = {row["name"]: row for row in json.loads(result.output)["settings"]}
    from surveykit.config import SETTINGS

    assert set(rows) == {setting.name for setting in SETTINGS}
    assert rows["surveykit.secret"] == {
        "name": "surveykit.secret",
        "value": "***",
        "source": "environment (SURVEYKIT_SECRET)",
    }
    assert rows["sqlalchemy.url"]["value"] == "postgresql+psycopg://surveykit:***@db.example/surveykit"
    assert rows["surveykit.jwt_keys"]["value"] == "k1:***"
    assert rows["surveykit.block_size"] == {
        "name": "surveykit.block_size",
        "value": "20",
        "source": f"ini ({ini})",
    }
    assert rows["surveykit.sync_max_batch"]["source"] == "default"
    table = invoke("-c", str(ini), "config", env=env)
    assert "surveykit.block_size" in table.output and "hunter2pw" not in table.output


# ------------------------------------------------------------------------------------- failures


def assert_one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr


@pytest.mark.parametrize(
    "url", ["postgres://u@localhost/db", "postgresql://u@localhost/db", "mysql://u@h/db"]
)
def test_an_unsupported_database_url_is_one_line(url: str, tmp_path: Path) -> None:
    result = run("--database-url", url, "serve", SURVEYKIT_DATA_DIR=str(tmp_path))
    assert_one_line(result, "postgresql+psycopg://")


def test_an_unreachable_postgresql_is_one_line_and_traceback_shows_the_stack(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/surveykit"
    result = run("--database-url", url, "serve", "--port", "0", SURVEYKIT_DATA_DIR=str(tmp_path))
    assert_one_line(result, "cannot reach the database")
    assert "--traceback" in result.stderr
    full = run("--traceback", "--database-url", url, "db", "current")
    assert full.returncode == 1 and "Traceback" in full.stderr
    via_env = run("--database-url", url, "db", "current", SURVEYKIT_TRACEBACK="1")
    assert "Traceback" in via_env.stderr


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = str(taken.getsockname()[1])
        result = run("serve", "--port", port, SURVEYKIT_DATA_DIR=str(tmp_path))
    finally:
        taken.close()
    assert_one_line(result, "already in use")
