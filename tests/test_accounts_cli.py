"""``surveykit studies|users|devices|audit`` against a database the CLI migrated itself."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import webtest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from surveykit import make_app
from surveykit.accounts.models import AuthSession, Device, Grant, User
from surveykit.audit.models import AuditEvent
from surveykit.cli import cli
from surveykit.config import load_settings
from surveykit.studies.models import Country, Study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GOOD_PASSWORD = "a long enough password"


class CLI:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.url = url
        self.data_dir = data_dir
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Result:
        env = {"SURVEYKIT_DATA_DIR": str(self.data_dir), "SURVEYKIT_ENV": "test", "SURVEYKIT_PUBLIC_URL": ""}
        return self.runner.invoke(cli, ["--database-url", self.url, *args], input=input, env=env)

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self(*args, input=input)
        assert result.exit_code == 0, f"{args}: {result.output}"
        return result.output

    def fails(self, *args: str, input: str | None = None, code: int = 1) -> str:
        result = self(*args, input=input)
        assert result.exit_code == code, f"{args}: exit {result.exit_code}: {result.output}"
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert "Traceback" not in result.output
        return result.output


@pytest.fixture
def run(fresh_database: Callable[[], str], tmp_path: Path) -> CLI:
    runner = CLI(fresh_database(), tmp_path / "data")
    assert "database at revision" in runner.ok("db", "upgrade")
    return runner


@pytest.fixture
def db(run: CLI) -> Iterator[Session]:
    engine = create_engine(run.url)
    session = Session(engine)
    yield session
    session.close()
    engine.dispose()


def snapshot(db: Session) -> dict[str, Any]:
    """Everything a failed command must leave as it was."""
    db.rollback()
    return {
        model.__tablename__: db.scalar(select(func.count()).select_from(model))
        for model in (Study, Country, User, Grant, Device, AuthSession, AuditEvent)
    } | {
        "users": [
            (u.username, u.active, u.password_hash) for u in db.scalars(select(User).order_by(User.id))
        ],
        "devices": [(d.id, d.revoked_at) for d in db.scalars(select(Device).order_by(Device.id))],
    }


def audit_actions(db: Session) -> list[str]:
    db.rollback()
    return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def table(output: str) -> list[list[str]]:
    header, rule, *rows = output.strip().splitlines()
    assert set(rule) <= {"-", " "}
    return [re.split(r"\s{2,}", line.strip()) for line in [header, *rows]]


@contextmanager
def api_on(run: CLI, tmp_path: Path) -> Iterator[webtest.TestApp]:
    """The API application on the database the CLI wrote to (to check what a command printed)."""
    settings = load_settings(
        {},
        {
            "SURVEYKIT_ENV": "test",
            "SURVEYKIT_DATABASE_URL": run.url,
            "SURVEYKIT_DATA_DIR": str(tmp_path / "app-data"),
            "SURVEYKIT_SECRET": "cli-test-secret-" + "q" * 40,
        },
    )
    app = make_app(settings)
    engine: Engine = app.registry["db_engine"]
    try:
        yield webtest.TestApp(app)
    finally:
        engine.dispose()


def qr_options(png: Path, svg: Path) -> list[str]:
    """The server URL and both QR files, as `devices enrol` and `devices reenrol` take them."""
    return ["--server-url", "https://surveys.example.org", "--qr-png", str(png), "--qr-svg", str(svg)]


def seed(run: CLI) -> None:
    run.ok("studies", "add", "ocsea", "--name", "Online child sexual exploitation and abuse")
    run.ok("studies", "add-country", "ocsea", "KE", "--name", "Kenya", "--language", "en", "--language", "sw")
    run.ok("studies", "add-country", "ocsea", "TZ", "--name", "Tanzania")


# --- studies ----------------------------------------------------------------------------------


def test_studies_add_add_country_and_list(run: CLI, db: Session) -> None:
    assert run.ok("studies", "list").strip() == "no studies"
    assert "study ocsea created" in run.ok("studies", "add", "ocsea", "--name", "OCSEA")
    assert "ocsea: country KE (Kenya) added" in run.ok(
        "studies",
        "add-country",
        "ocsea",
        "KE",
        "--name",
        "Kenya",
        "--region",
        "East Africa",
        "--language",
        "sw",
    )
    run.ok("studies", "add", "pilot")
    assert table(run.ok("studies", "list")) == [
        ["study", "name", "countries"],
        ["ocsea", "OCSEA", "KE"],
        ["pilot", "pilot", "-"],
    ]
    kenya = db.scalar(select(Country).where(Country.code == "KE"))
    assert (kenya.region, kenya.languages) == ("East Africa", ["sw"])
    assert audit_actions(db) == ["study.create", "study.add_country", "study.create"]

    before = snapshot(db)
    assert "already exists" in run.fails("studies", "add", "ocsea")
    assert "must be" in run.fails("studies", "add", "Bad Slug")
    assert "no study" in run.fails("studies", "add-country", "nope", "KE", "--name", "Kenya")
    assert "already has a country KE" in run.fails("studies", "add-country", "ocsea", "KE", "--name", "Kenya")
    assert "two capital letters" in run.fails("studies", "add-country", "ocsea", "kenya", "--name", "Kenya")
    assert snapshot(db) == before


# --- users ------------------------------------------------------------------------------------


def test_users_add_prints_a_generated_password_once_that_logs_in(
    run: CLI, db: Session, tmp_path: Path
) -> None:
    seed(run)
    output = run.ok("users", "add", "amina")
    assert "user amina created" in output
    password = re.search(r"password \(shown once\): (\S+)", output).group(1)
    assert len(password) >= 12
    stored = db.scalar(select(User.password_hash).where(User.username == "amina"))
    assert stored.startswith("$argon2id$") and password not in stored
    assert password not in run.ok("users", "list")
    run.ok("users", "grant", "amina", "coordinator", "--study", "ocsea", "--country", "KE")

    # The printed password works against the API on the same database.
    with api_on(run, tmp_path) as testapp:
        tokens = testapp.post_json("/api/v1/auth/token", {"username": "amina", "password": password}).json
        me = testapp.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json
        assert me["grants"] == [{"role": "coordinator", "study": "ocsea", "countries": ["KE"]}]


def test_users_add_with_password_stdin(run: CLI, db: Session) -> None:
    output = run.ok("users", "add", "baraka", "--password-stdin", input=GOOD_PASSWORD + "\n")
    assert "user baraka created" in output
    assert "password" not in output.replace("user baraka created", "")
    from surveykit.accounts import passwords

    stored = db.scalar(select(User.password_hash).where(User.username == "baraka"))
    assert passwords.verify_password(stored, GOOD_PASSWORD)

    before = snapshot(db)
    assert "at least 12 characters" in run.fails(
        "users", "add", "shorty", "--password-stdin", input="short\n"
    )
    assert "already exists" in run.fails("users", "add", "baraka", "--password-stdin", input=GOOD_PASSWORD)
    assert "username must be" in run.fails("users", "add", "Not Valid")
    assert snapshot(db) == before
    assert audit_actions(db) == ["user.create"]


def test_users_grant_list_revoke_and_deactivate(run: CLI, db: Session) -> None:
    seed(run)
    run.ok("users", "add", "amina", "--password-stdin", input=GOOD_PASSWORD)
    run.ok("users", "add", "root", "--password-stdin", input=GOOD_PASSWORD)

    granted = run.ok("users", "grant", "amina", "coordinator", "--study", "ocsea", "--country", "KE")
    grant_id = re.search(r"granted #(\d+)", granted).group(1)
    assert "amina is coordinator in ocsea for KE" in granted
    assert "for *" in run.ok("users", "grant", "amina", "analyst", "--study", "ocsea")
    assert "root is admin in *" in run.ok("users", "grant", "root", "admin", "--all-studies")
    assert table(run.ok("users", "list")) == [
        ["username", "status", "grants"],
        ["amina", "active", f"#{grant_id} coordinator ocsea:KE; #{int(grant_id) + 1} analyst ocsea:*"],
        ["root", "active", f"#{int(grant_id) + 2} admin *:*"],
    ]

    before = snapshot(db)
    assert "has no country XX" in run.fails(
        "users", "grant", "amina", "fieldworker", "--study", "ocsea", "--country", "XX"
    )
    assert "no study 'nope'" in run.fails("users", "grant", "amina", "fieldworker", "--study", "nope")
    assert "only an admin grant" in run.fails("users", "grant", "amina", "coordinator", "--all-studies")
    assert "every country" in run.fails("users", "grant", "root", "admin", "--all-studies", "--country", "KE")
    assert "no user" in run.fails("users", "grant", "ghost", "analyst", "--study", "ocsea")
    assert "either --study" in run.fails("users", "grant", "amina", "analyst", code=2)
    assert "either --study" in run.fails(
        "users", "grant", "amina", "analyst", "--study", "ocsea", "--all-studies", code=2
    )
    assert "'boss' is not one of" in run.fails("users", "grant", "amina", "boss", "--study", "ocsea", code=2)
    assert "has no grant" in run.fails("users", "revoke", "root", grant_id)
    assert "no user" in run.fails("users", "deactivate", "ghost")
    assert snapshot(db) == before

    assert f"grant #{grant_id} removed from amina" in run.ok("users", "revoke", "amina", grant_id)
    assert "amina deactivated" in run.ok("users", "deactivate", "amina")
    rows = table(run.ok("users", "list"))
    assert rows[1] == ["amina", "deactivated", f"#{int(grant_id) + 1} analyst ocsea:*"]
    assert audit_actions(db)[-6:] == [
        "user.create",
        "grant.add",
        "grant.add",
        "grant.add",
        "grant.remove",
        "user.deactivate",
    ]
    db.rollback()
    grant_event = db.scalar(
        select(AuditEvent).where(AuditEvent.action == "grant.add").order_by(AuditEvent.id)
    )
    assert grant_event.target == "amina"
    assert grant_event.details == {
        "id": int(grant_id),
        "role": "coordinator",
        "study": "ocsea",
        "countries": ["KE"],
    }
    assert grant_event.actor.startswith("cli")


def test_deactivating_a_user_ends_their_sessions(run: CLI, db: Session) -> None:
    seed(run)
    run.ok("users", "add", "wanjiru", "--password-stdin", input=GOOD_PASSWORD)
    user = db.scalar(select(User).where(User.username == "wanjiru"))
    db.add(AuthSession(id="s-1", user_id=user.id))
    db.commit()
    run.ok("users", "deactivate", "wanjiru")
    db.rollback()
    session = db.get(AuthSession, "s-1")
    db.refresh(session)
    assert session.revoked_at is not None and session.revoked_reason == "user deactivated"


# --- devices ----------------------------------------------------------------------------------


def test_devices_enrol_list_and_revoke(run: CLI, db: Session, tmp_path: Path) -> None:
    seed(run)
    run.ok("users", "add", "wanjiru", "--password-stdin", input=GOOD_PASSWORD)
    run.ok("users", "grant", "wanjiru", "fieldworker", "--study", "ocsea", "--country", "KE")
    assert run.ok("devices", "list").strip() == "no devices"

    png, svg = tmp_path / "qr.png", tmp_path / "qr.svg"
    output = run.ok(
        "devices",
        "enrol",
        "wanjiru",
        "--label",
        "KE tablet 3",
        *qr_options(png, svg),
    )
    device_id = re.search(r"device (\S+) enrolled for wanjiru \(KE tablet 3\)", output).group(1)
    code = re.search(r"enrolment code: ([A-Z0-9]{5}-[A-Z0-9]{5})", output).group(1)
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert "<svg" in svg.read_text(encoding="utf-8")
    assert f"QR code written to {png.resolve()}" in output

    stored = db.get(Device, device_id)
    assert stored.enrolment_code_hash is not None and code not in stored.enrolment_code_hash
    rows = table(run.ok("devices", "list"))
    assert rows == [
        ["id", "user", "label", "status", "last seen"],
        [device_id, "wanjiru", "KE tablet 3", "pending", "never"],
    ]
    assert run.ok("devices", "list", "--user", "nobody").strip() == "no devices"

    before = snapshot(db)
    run.ok("users", "add", "only-analyst", "--password-stdin", input=GOOD_PASSWORD)
    after_add = snapshot(db)
    assert "no fieldworker grant" in run.fails("devices", "enrol", "only-analyst", "--label", "x")
    assert "no user" in run.fails("devices", "enrol", "ghost", "--label", "x")
    assert "no device" in run.fails("devices", "revoke", "not-a-device")
    assert snapshot(db) == after_add != before

    assert f"device {device_id} revoked" in run.ok("devices", "revoke", device_id)
    assert table(run.ok("devices", "list", "--user", "wanjiru"))[1][3] == "revoked"
    db.rollback()
    revoked = db.get(Device, device_id)
    db.refresh(revoked)
    assert revoked.revoked_at is not None and revoked.enrolment_code_hash is None
    assert [a for a in audit_actions(db) if a.startswith("device.")] == ["device.enrol", "device.revoke"]


def test_devices_reenrol_prints_a_code_for_the_same_device(run: CLI, db: Session, tmp_path: Path) -> None:
    seed(run)
    run.ok("users", "add", "wanjiru", "--password-stdin", input=GOOD_PASSWORD)
    run.ok("users", "grant", "wanjiru", "fieldworker", "--study", "ocsea", "--country", "KE")
    output = run.ok("devices", "enrol", "wanjiru", "--label", "KE tablet 3")
    device_id = re.search(r"device (\S+) enrolled", output).group(1)
    first = re.search(r"enrolment code: (\S+)", output).group(1)

    png, svg = tmp_path / "again.png", tmp_path / "again.svg"
    output = run.ok(
        "devices",
        "reenrol",
        device_id,
        *qr_options(png, svg),
    )
    assert f"device {device_id} re-enrolled for wanjiru (KE tablet 3)" in output
    code = re.search(r"enrolment code: ([A-Z0-9]{5}-[A-Z0-9]{5})  \(one use, expires", output).group(1)
    assert code != first
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert "<svg" in svg.read_text(encoding="utf-8")
    assert f"QR code written to {png.resolve()}" in output

    # The new code activates the same device over the API; the replaced one does not.
    with api_on(run, tmp_path) as testapp:
        refused = testapp.post_json("/api/v1/devices/activate", {"code": first}, status=401).json
        assert refused["code"] == "enrolment_refused"
        activated = testapp.post_json("/api/v1/devices/activate", {"code": code}).json
        assert activated["device_id"] == device_id
    assert table(run.ok("devices", "list"))[1][:4] == [device_id, "wanjiru", "KE tablet 3", "active"]

    before = snapshot(db)
    assert "no device" in run.fails("devices", "reenrol", "not-a-device")
    assert snapshot(db) == before
    run.ok("devices", "revoke", device_id)
    assert "stays revoked" in run.fails("devices", "reenrol", device_id)
    db.rollback()
    revoked = db.get(Device, device_id)
    db.refresh(revoked)
    assert revoked.enrolment_code_hash is None
    events = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "device.reenrol").order_by(AuditEvent.id)
    ).all()
    assert [(e.outcome, e.target, e.details) for e in events] == [
        ("success", device_id, {"owner": "wanjiru", "label": "KE tablet 3"}),
        ("refused", device_id, {"reason": "revoked"}),
    ]


# --- audit ------------------------------------------------------------------------------------


def test_audit_command_filters(run: CLI, db: Session) -> None:
    assert run.ok("audit").strip() == "no events"
    seed(run)
    run.ok("users", "add", "amina", "--password-stdin", input=GOOD_PASSWORD)
    run.ok("users", "grant", "amina", "analyst", "--study", "ocsea")

    rows = table(run.ok("audit"))
    assert rows[0] == ["at", "action", "outcome", "actor", "target", "details"]
    assert [row[1] for row in rows[1:]] == [
        "grant.add",
        "user.create",
        "study.add_country",
        "study.add_country",
        "study.create",
    ]
    assert [row[1] for row in table(run.ok("audit", "--action", "study.*"))[1:]] == [
        "study.add_country",
        "study.add_country",
        "study.create",
    ]
    assert [row[1] for row in table(run.ok("audit", "--action", "user.create"))[1:]] == ["user.create"]
    assert [row[1] for row in table(run.ok("audit", "--limit", "2"))[1:]] == ["grant.add", "user.create"]
    actor = table(run.ok("audit"))[1][3]
    assert len(table(run.ok("audit", "--actor", actor))) == 6
    assert run.ok("audit", "--actor", "someone-else").strip() == "no events"
    assert run.ok("audit", "--since", "2999-01-01").strip() == "no events"
    assert len(table(run.ok("audit", "--until", "2999-01-01T00:00:00+02:00"))) == 6
    assert run.ok("audit", "--until", "2000-01-01").strip() == "no events"

    before = snapshot(db)
    assert "Invalid value" in run.fails("audit", "--since", "yesterday", code=2)
    assert "Invalid value" in run.fails("audit", "--limit", "0", code=2)
    refused = run.fails("audit", "--since", "2026-01-02", "--until", "2026-01-02", code=2)
    assert "--until" in refused and "must be later than --since" in refused
    assert "must be later" in run.fails("audit", "--since", "2026-01-03", "--until", "2026-01-02", code=2)
    assert snapshot(db) == before


def test_commands_refuse_an_unmigrated_database(fresh_database: Callable[[], str], tmp_path: Path) -> None:
    run = CLI(fresh_database(), tmp_path)
    for args in (("studies", "list"), ("users", "list"), ("devices", "list"), ("audit",)):
        assert "db upgrade" in run.fails(*args)
