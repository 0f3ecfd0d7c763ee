"""Operating the service: the health probe, the access log, request ids, logged errors and the
logging set-up (in process, on the run's database)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from surveykit import health, logs, make_app, server
from surveykit.config import load_settings

# ------------------------------------------------------------------------------------------ health


def test_health_answers_200_when_the_database_is_at_head(testapp: Any, app: Any) -> None:
    answer = testapp.get("/api/v1/health", status=200)
    assert answer.json["status"] == "ok"
    assert answer.json["schema_revision"] == health.head_revision(app.registry)
    assert answer.headers["Cache-Control"] == "no-store"


def test_health_answers_503_with_the_reason_when_the_schema_is_behind(testapp: Any, dbsession: Any) -> None:
    dbsession.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    dbsession.flush()
    answer = testapp.get("/api/v1/health", status=503)
    assert answer.json["code"] == "service_unavailable"
    assert "schema is at 0001" in answer.json["message"] and "surveykit db upgrade" in answer.json["message"]


def test_health_answers_503_on_a_database_without_schema(fresh_database: Any, tmp_path: Path) -> None:
    import webtest

    settings = load_settings(
        {},
        {
            "SURVEYKIT_ENV": "test",
            "SURVEYKIT_DATABASE_URL": fresh_database(),
            "SURVEYKIT_DATA_DIR": str(tmp_path),
        },
    )
    app = make_app(settings)
    try:
        answer = webtest.TestApp(app).get("/api/v1/health", status=503)
        assert "no revision" in answer.json["message"]
    finally:
        app.registry["db_engine"].dispose()


def test_health_answers_503_when_the_database_does_not_answer(tmp_path: Path) -> None:
    import webtest

    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    settings = load_settings(
        {},
        {"SURVEYKIT_ENV": "test", "SURVEYKIT_DATABASE_URL": unreachable, "SURVEYKIT_DATA_DIR": str(tmp_path)},
    )
    app = make_app(settings)
    answer = webtest.TestApp(app).get("/api/v1/health", status=503)
    assert answer.json["message"].startswith("the database does not answer")


def test_an_api_request_while_the_database_does_not_answer_is_a_json_503_to_retry(tmp_path: Path) -> None:
    """The caller's identity is first asked for by pyramid_tm, above the exception views; a database
    that does not answer must still give the API's JSON error, and one a client knows to retry."""
    import webtest

    from surveykit.accounts.tokens import TokenSettings, issue_access_token
    from surveykit.db import utcnow

    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    settings = load_settings(
        {},
        {"SURVEYKIT_ENV": "test", "SURVEYKIT_DATABASE_URL": unreachable, "SURVEYKIT_DATA_DIR": str(tmp_path)},
    )
    app = make_app(settings)
    token, _ = issue_access_token(
        TokenSettings.from_settings(settings), user_id=1, session_id="s1", device_id=None, now=utcnow()
    )
    client = webtest.TestApp(app)
    bearer = {"Authorization": f"Bearer {token}"}
    for method, path in [
        ("GET", "/api/v1/instruments"),
        ("GET", "/api/v1/instruments/ra1-duty-bearers"),
        ("POST", "/api/v1/sync"),
        ("GET", "/api/v1/me"),
    ]:
        answer = client.request(path, method=method, headers=bearer, status=503)
        assert answer.content_type == "application/json", path
        assert answer.json["code"] == "service_unavailable", path
        assert answer.headers["Retry-After"] == "5", path
        assert answer.headers["X-Request-ID"] in answer.json["message"], path
    # Without a token nothing needs the database: the usual 401.
    assert client.get("/api/v1/instruments", status=401).json["code"] == "unauthenticated"


def test_health_needs_no_token_and_ignores_a_bad_one(testapp: Any) -> None:
    testapp.get("/api/v1/health", headers={"Authorization": "Bearer not-a-token"}, status=200)


# ------------------------------------------------------------------------------------- access log


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == logs.ACCESS_LOGGER]


def test_one_access_line_per_request_with_caller_and_request_id_never_the_token(
    testapp: Any, accounts: Any, caplog: pytest.LogCaptureFixture
) -> None:
    user = accounts.user("logged-admin", "admin", None, None)
    token = accounts.token(user)
    caplog.set_level(logging.INFO, logger=logs.ACCESS_LOGGER)
    answer = testapp.get(
        "/api/v1/me?secret=x", headers={"Authorization": f"Bearer {token}", "X-Request-ID": "tab-7"}
    )
    [record] = access_records(caplog)
    assert answer.headers["X-Request-ID"] == "tab-7"
    assert record.request_id == "tab-7"
    fields = record.access
    assert (fields["method"], fields["route"], fields["status"]) == ("GET", "me", 200)
    assert fields["user_id"] == user.id and fields["device_id"] is None
    assert fields["bytes"] == len(answer.body) and fields["duration_ms"] >= 0
    line = record.getMessage()
    assert line.startswith("GET me status=200") and f"user={user.id}" in line
    assert token not in line and "secret" not in line


def test_a_refused_request_is_logged_without_its_body(testapp: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=logs.ACCESS_LOGGER)
    body = {"username": "nobody", "password": "hunter2-hunter2"}
    testapp.post_json("/api/v1/auth/token", body, status=401)
    [record] = access_records(caplog)
    assert (record.access["route"], record.access["status"], record.access["user_id"]) == (
        "auth_token",
        401,
        None,
    )
    assert "hunter2" not in record.getMessage()


def test_a_request_id_that_is_not_sensible_is_replaced(testapp: Any) -> None:
    answer = testapp.get("/api/v1/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert answer.headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(answer.headers["X-Request-ID"]) == 32
    ids = {testapp.get("/api/v1/health").headers["X-Request-ID"] for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_an_unexpected_error_is_logged_with_its_request_id_and_stack(
    testapp: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(health, "database_revision", broken)
    caplog.set_level(logging.INFO)
    answer = testapp.get("/api/v1/health", headers={"X-Request-ID": "sync-failed-1"}, status=500)
    assert answer.json["code"] == "internal_error"
    assert "sync-failed-1" in answer.json["message"]
    [error] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert error.request_id == "sync-failed-1" and "GET /api/v1/health" in error.getMessage()
    assert error.exc_info is not None and "disk on fire" in str(error.exc_info[1])
    [access] = access_records(caplog)
    assert access.access["status"] == 500 and access.request_id == "sync-failed-1"


def test_json_lines_carry_the_access_fields_and_the_stack() -> None:
    formatter = logs.JsonFormatter()
    record = logging.getLogger(logs.ACCESS_LOGGER).makeRecord(
        logs.ACCESS_LOGGER,
        logging.INFO,
        __file__,
        1,
        "GET me status=200",
        (),
        None,
        extra={"access": {"method": "GET", "route": "me", "status": 200, "user_id": 3}},
    )
    entry = json.loads(formatter.format(record))
    assert entry["logger"] == logs.ACCESS_LOGGER and entry["level"] == "INFO"
    assert (entry["method"], entry["route"], entry["status"], entry["user_id"]) == ("GET", "me", 200, 3)
    assert entry["request_id"] == "-" and entry["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.getLogger("surveykit").makeRecord(
            "surveykit", logging.ERROR, __file__, 1, "x", (), sys.exc_info()
        )
    assert "ValueError: boom" in json.loads(formatter.format(failed))["exception"]


@pytest.fixture
def restored_logging() -> Any:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            logger.disabled = False
            logger.setLevel(levels.get(name, logging.NOTSET))


def test_the_ini_logging_sections_are_applied_and_json_switches_every_handler(
    tmp_path: Path, restored_logging: Any
) -> None:
    ini = tmp_path / "site.ini"
    ini.write_text(
        "[loggers]\nkeys = root, access\n[handlers]\nkeys = console\n[formatters]\nkeys = generic\n"
        "[logger_root]\nlevel = ERROR\nhandlers = console\n"
        "[logger_access]\nlevel = DEBUG\nhandlers =\nqualname = surveykit.access\n"
        "[handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nformatter = generic\n"
        "[formatter_generic]\nformat = %(request_id)s %(message)s\n"
    )
    logs.configure_logging(str(ini), "json")
    assert logging.getLogger().level == logging.ERROR
    assert logging.getLogger(logs.ACCESS_LOGGER).level == logging.DEBUG
    assert all(isinstance(handler.formatter, logs.JsonFormatter) for handler in logging.getLogger().handlers)


def test_without_logging_sections_surveykit_logs_info_and_others_warnings(
    tmp_path: Path, restored_logging: Any
) -> None:
    logs.configure_logging(None, "text")
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger("surveykit").getEffectiveLevel() == logging.INFO
    assert "%(request_id)s" in logging.getLogger().handlers[0].formatter._fmt
    assert not logging.getLogger("waitress.queue").isEnabledFor(logging.WARNING)
    assert logging.getLogger("waitress").isEnabledFor(logging.WARNING)


@pytest.mark.parametrize("ini", ["development.ini", "production.ini"])
def test_the_shipped_inis_keep_waitress_queue_warnings_out_of_the_log(
    ini: str, restored_logging: Any
) -> None:
    logs.configure_logging(str(Path(__file__).resolve().parent.parent / ini), "text")
    assert not logging.getLogger("waitress.queue").isEnabledFor(logging.WARNING)
    assert logging.getLogger("waitress.queue").isEnabledFor(logging.ERROR)
    assert logging.getLogger(logs.ACCESS_LOGGER).isEnabledFor(logging.INFO)


# ------------------------------------------------------------------------------- production store


def test_a_production_server_on_sqlite_warns_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(
        {},
        {
            "SURVEYKIT_ENV": "production",
            "SURVEYKIT_SECRET": "s" * 40,
            "SURVEYKIT_PUBLIC_URL": "https://surveys.example.org",
            "SURVEYKIT_DATA_DIR": str(tmp_path),
        },
    )
    lines: list[str] = []
    server.describe_store(settings, None, lines.append)  # type: ignore[arg-type]
    [warning] = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert "PRODUCTION ON SQLITE" in warning.getMessage()


def test_a_development_server_on_sqlite_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings({}, {"SURVEYKIT_DATA_DIR": str(tmp_path)})
    server.describe_store(settings, None, lambda line: None)  # type: ignore[arg-type]
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
