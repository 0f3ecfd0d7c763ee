"""``--json`` on the commands that list or hand out something: one JSON document on standard output
that a script can parse, holding what the table shows (and the enrolment code)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import webtest
from instrument_samples import RA1_FILE, RA1_SLUG
from test_accounts_cli import CLI, GOOD_PASSWORD

from surveykit import make_app
from surveykit.config import load_settings


@pytest.fixture
def run(fresh_database: Any, tmp_path: Path) -> CLI:
    runner = CLI(fresh_database(), tmp_path / "data")
    runner.ok("db", "upgrade")
    runner.ok("studies", "add", "ocsea", "--name", "OCSEA")
    runner.ok("studies", "add-country", "ocsea", "KE", "--name", "Kenya", "--language", "sw")
    runner.ok("studies", "add-activity", "ocsea", "RA1", "--name", "Duty bearers")
    runner.ok("users", "add", "wanjiru", "--password-stdin", input=GOOD_PASSWORD + "\n")
    runner.ok("users", "grant", "wanjiru", "fieldworker", "--study", "ocsea", "--country", "KE")
    return runner


def parsed(run: CLI, *args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_devices_enrol_gives_the_code_as_json_and_it_activates_the_tablet(run: CLI, tmp_path: Path) -> None:
    qr = tmp_path / "tablet.png"
    enrolled = parsed(run, "devices", "enrol", "wanjiru", "--label", "KE tablet 3", "--qr-png", str(qr))
    assert set(enrolled) == {"device", "enrolment_code", "enrolment_expires_at", "qr_payload", "qr_files"}
    assert enrolled["device"]["user"] == "wanjiru" and enrolled["device"]["label"] == "KE tablet 3"
    assert enrolled["device"]["status"] == "pending"
    assert enrolled["qr_files"] == {"png": str(qr.resolve())} and qr.is_file()
    assert enrolled["enrolment_code"] in enrolled["qr_payload"]

    # The code a script read is the one the server takes.
    settings = load_settings({}, {"SURVEYKIT_DATABASE_URL": run.url, "SURVEYKIT_ENV": "test"})
    app = webtest.TestApp(make_app(settings), extra_environ={"HTTP_HOST": "surveykit.test"})
    activated = app.post_json("/api/v1/devices/activate", {"code": enrolled["enrolment_code"]})
    assert activated.json["device_id"] == enrolled["device"]["id"]

    [device] = parsed(run, "devices", "list")["devices"]
    assert (device["id"], device["status"]) == (enrolled["device"]["id"], "active")
    again = parsed(run, "devices", "reenrol", device["id"])
    assert again["device"]["id"] == device["id"] and again["enrolment_code"] != enrolled["enrolment_code"]


def test_the_list_commands_print_json(run: CLI) -> None:
    [user] = parsed(run, "users", "list")["users"]
    assert (user["username"], user["active"]) == ("wanjiru", True)
    assert [(g["role"], g["study"], g["countries"]) for g in user["grants"]] == [
        ("fieldworker", "ocsea", ["KE"])
    ]

    [study] = parsed(run, "studies", "list")["studies"]
    assert (study["slug"], study["countries"], study["activities"]) == ("ocsea", ["KE"], ["RA1"])

    sheet = Path(run.data_dir).parent / "sample.csv"
    sheet.write_text("id,agency,position\nRA1-KE-03-A,Ministry of ICT,\n")
    run.ok("participants", "import", str(sheet), "--study", "ocsea", "--country", "KE", "--activity", "RA1")
    [person] = parsed(run, "participants", "list", "--study", "ocsea", "--country", "KE")["participants"]
    assert (person["pid"], person["agency"], person["position"], person["status"]) == (
        "RA1-KE-03-A",
        "Ministry of ICT",
        None,
        "planned",
    )

    run.ok("instruments", "publish", str(RA1_FILE))
    [instrument] = parsed(run, "instruments", "list")["instruments"]
    assert (instrument["slug"], instrument["current_version"]) == (RA1_SLUG, 1)

    events = parsed(run, "audit", "--action", "participant.import")["events"]
    assert [(e["action"], e["target"], e["details"]["known_ids"]) for e in events] == [
        ("participant.import", "ocsea/KE/RA1", 1)
    ]
