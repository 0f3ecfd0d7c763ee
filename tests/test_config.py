"""Settings: defaults, .ini values, SURVEYKIT_* overrides, coercion errors and production safety."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from surveykit.cli import cli
from surveykit.config import (
    DEVELOPMENT_SECRET,
    PROJECT_ROOT,
    SETTINGS,
    ConfigurationError,
    load_settings,
    sqlite_url_for,
)

GOOD_SECRET = "p" * 32


def test_defaults() -> None:
    settings = load_settings({}, {})
    assert set(settings) >= {setting.name for setting in SETTINGS}
    assert settings["surveykit.environment"] == "development"
    assert settings["surveykit.data_dir"] == str(PROJECT_ROOT / "data")
    assert settings["surveykit.instruments_dir"] == str(PROJECT_ROOT / "instruments")
    assert settings["surveykit.max_body_bytes"] == 10 * 1024 * 1024
    assert settings["surveykit.sqlite_busy_timeout_ms"] == 10_000
    assert settings["surveykit.db_pool_size"] == 10
    assert settings["surveykit.secret"] == DEVELOPMENT_SECRET
    assert settings["surveykit.public_url"] == ""


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({}, {"SURVEYKIT_DATA_DIR": str(tmp_path)})
    assert settings["surveykit.data_dir"] == str(tmp_path.resolve())
    assert settings["sqlalchemy.url"] == f"sqlite:///{tmp_path.resolve() / 'surveykit.sqlite3'}"
    assert settings["sqlalchemy.url"] == sqlite_url_for(str(tmp_path.resolve()))
    # Without any data dir setting, the file sits in the project's data folder.
    assert (
        load_settings({}, {})["sqlalchemy.url"] == f"sqlite:///{PROJECT_ROOT / 'data' / 'surveykit.sqlite3'}"
    )


@pytest.mark.parametrize("url", ["", None])
def test_empty_database_url_means_the_embedded_database(tmp_path: Path, url: str | None) -> None:
    environ = {"SURVEYKIT_DATA_DIR": str(tmp_path)}
    if url is not None:
        environ["SURVEYKIT_DATABASE_URL"] = url
    settings = load_settings({"sqlalchemy.url": ""}, environ)
    assert settings["sqlalchemy.url"] == f"sqlite:///{tmp_path.resolve() / 'surveykit.sqlite3'}"


def test_data_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"surveykit.data_dir": "relative/data"}, {})
    assert settings["surveykit.data_dir"] == str(tmp_path.resolve() / "relative" / "data")
    assert settings["sqlalchemy.url"].startswith(f"sqlite:///{tmp_path.resolve()}/relative/data/")


def test_ini_value_is_used_and_coerced() -> None:
    settings = load_settings({"surveykit.max_body_bytes": "2048", "surveykit.environment": " Test "}, {})
    assert settings["surveykit.max_body_bytes"] == 2048
    assert settings["surveykit.environment"] == "test"


def test_environment_variable_overrides_ini_value() -> None:
    ini = {
        "surveykit.max_body_bytes": "2048",
        "sqlalchemy.url": "sqlite:////from/ini.sqlite3",
        "surveykit.public_url": "https://ini.example",
    }
    environ = {
        "SURVEYKIT_MAX_BODY_BYTES": "4096",
        "SURVEYKIT_DATABASE_URL": "postgresql+psycopg://db.example/surveykit",
        "SURVEYKIT_PUBLIC_URL": "https://env.example",
    }
    settings = load_settings(ini, environ)
    assert settings["surveykit.max_body_bytes"] == 4096
    assert settings["sqlalchemy.url"] == "postgresql+psycopg://db.example/surveykit"
    assert settings["surveykit.public_url"] == "https://env.example"


def test_empty_ini_value_falls_back_to_the_default() -> None:
    settings = load_settings({"surveykit.max_body_bytes": "", "surveykit.environment": None}, {})
    assert settings["surveykit.max_body_bytes"] == 10 * 1024 * 1024
    assert settings["surveykit.environment"] == "development"


def test_unknown_ini_keys_pass_through_and_input_is_not_changed() -> None:
    ini = {"pyramid.reload_templates": "false", "surveykit.max_body_bytes": "100"}
    settings = load_settings(ini, {})
    assert settings["pyramid.reload_templates"] == "false"
    assert ini == {"pyramid.reload_templates": "false", "surveykit.max_body_bytes": "100"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SURVEYKIT_MAX_BODY_BYTES", "lots"),
        ("SURVEYKIT_MAX_BODY_BYTES", "0"),
        ("SURVEYKIT_MAX_BODY_BYTES", "-5"),
        ("SURVEYKIT_MAX_BODY_BYTES", ""),
        ("SURVEYKIT_DB_POOL_SIZE", "1.5"),
        ("SURVEYKIT_SQLITE_BUSY_TIMEOUT_MS", "soon"),
        ("SURVEYKIT_ENV", "staging"),
    ],
)
def test_bad_environment_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({}, {variable: value})
    assert str(caught.value).startswith(f"environment variable {variable}: ")


def test_bad_ini_value_names_the_setting() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"surveykit.db_pool_size": "many"}, {})
    assert str(caught.value).startswith("setting surveykit.db_pool_size: ")


PUBLIC_URL = "https://surveykit.example.org"


def test_production_refuses_the_development_secret() -> None:
    with pytest.raises(ConfigurationError, match="development secret"):
        load_settings({}, {"SURVEYKIT_ENV": "production"})
    with pytest.raises(ConfigurationError, match="development secret"):
        load_settings({}, {"SURVEYKIT_ENV": "production", "SURVEYKIT_SECRET": DEVELOPMENT_SECRET})


def test_production_refuses_a_short_secret() -> None:
    with pytest.raises(ConfigurationError, match="at least 32 characters"):
        load_settings({}, {"SURVEYKIT_ENV": "production", "SURVEYKIT_SECRET": "s" * 31})


def test_production_accepts_a_long_secret() -> None:
    settings = load_settings(
        {},
        {"SURVEYKIT_ENV": "production", "SURVEYKIT_SECRET": GOOD_SECRET, "SURVEYKIT_PUBLIC_URL": PUBLIC_URL},
    )
    assert settings["surveykit.environment"] == "production"
    assert settings["surveykit.secret"] == GOOD_SECRET


@pytest.mark.parametrize("public_url", [None, "", "http://surveykit.example", "https://"])
def test_production_needs_an_https_public_url(public_url: str | None) -> None:
    """Enrolment QR codes carry the server's address: without a configured one they would carry
    whatever Host header a request came with."""
    environ = {"SURVEYKIT_ENV": "production", "SURVEYKIT_SECRET": GOOD_SECRET}
    if public_url is not None:
        environ["SURVEYKIT_PUBLIC_URL"] = public_url
    with pytest.raises(ConfigurationError, match="SURVEYKIT_PUBLIC_URL"):
        load_settings({}, environ)


@pytest.mark.parametrize("environment", ["development", "test"])
def test_other_environments_accept_the_development_secret(environment: str) -> None:
    assert load_settings({}, {"SURVEYKIT_ENV": environment})["surveykit.secret"] == DEVELOPMENT_SECRET


def test_production_ini_alone_does_not_start(tmp_path: Path) -> None:
    # production.ini names the environment but holds no secret: the environment must supply one.
    from pyramid.paster import get_appsettings

    ini = dict(get_appsettings(str(PROJECT_ROOT / "production.ini")))
    with pytest.raises(ConfigurationError, match="development secret"):
        load_settings(ini, {"SURVEYKIT_DATA_DIR": str(tmp_path)})
    settings = load_settings(
        ini,
        {
            "SURVEYKIT_DATA_DIR": str(tmp_path),
            "SURVEYKIT_SECRET": GOOD_SECRET,
            "SURVEYKIT_PUBLIC_URL": PUBLIC_URL,
        },
    )
    assert settings["surveykit.environment"] == "production"


def test_the_cli_reports_configuration_errors() -> None:
    result = CliRunner().invoke(
        cli, ["db", "current"], env={"SURVEYKIT_MAX_BODY_BYTES": "lots", "SURVEYKIT_DATABASE_URL": None}
    )
    assert result.exit_code == 1
    assert "configuration: environment variable SURVEYKIT_MAX_BODY_BYTES" in result.output
    assert "Traceback" not in result.output


def test_the_cli_data_dir_option_places_the_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "field-data"
    result = CliRunner().invoke(
        cli, ["--data-dir", str(data_dir), "db", "upgrade"], env={"SURVEYKIT_DATABASE_URL": None}
    )
    assert result.exit_code == 0, result.output
    assert (data_dir / "surveykit.sqlite3").is_file()
