"""``surveykit sync push-file``: a field app backup pushed at the command line on behalf of the device
that made it, decided exactly as that tablet's own push would be (docs/field-app.md, docs/sync.md)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session
from test_participants_cli import CLI, seed, table

from surveykit.accounts.models import Device, User
from surveykit.analysis import codebook
from surveykit.analysis.models import Coding
from surveykit.audit.models import AuditEvent
from surveykit.db import utcnow
from surveykit.participants import services as participants
from surveykit.participants.models import Participant
from surveykit.studies import services as studies
from surveykit.sync.models import Interview, InterviewRevision

RA1 = Path(__file__).resolve().parents[1] / "instruments" / "ra1-duty-bearers.yaml"


@pytest.fixture
def run(fresh_database: Callable[[], str], tmp_path: Path) -> CLI:
    runner = CLI(fresh_database(), tmp_path / "data")
    runner.ok("db", "upgrade")
    seed(runner)
    runner.ok("instruments", "publish", str(RA1))
    runner.ok("users", "add", "wanjiru")
    runner.ok("users", "grant", "wanjiru", "fieldworker", "--study", "ocsea", "--country", "KE")
    return runner


@pytest.fixture
def db(run: CLI) -> Iterator[Session]:
    engine = create_engine(run.url)
    session = Session(engine)
    yield session
    session.close()
    engine.dispose()


def enrolled_device(run: CLI, db: Session) -> tuple[str, int]:
    """A tablet of wanjiru's, and the first number of a block it reserved."""
    device_id = json.loads(run.ok("devices", "enrol", "wanjiru", "--label", "KE tablet", "--json"))["device"][
        "id"
    ]
    study = studies.get_study(db, "ocsea")
    block = participants.reserve_block(db, device_id, study, "KE", "RA1", 5)
    db.commit()
    return device_id, block.first_number


def record(number: int, letters: str = "AB", notes: str = "Second official joined late.") -> dict[str, Any]:
    return {
        "study": "ocsea",
        "country": "KE",
        "activity": "RA1",
        "interview_number": number,
        "participants": [
            {
                "letter": letter,
                "agency": "Ministry of ICT",
                "position": None,
                "consent_given": True,
                "consent_date": "2026-05-04",
                "consent_recorded_how": "verbal_audio",
            }
            for letter in letters
        ],
        "instrument": {"slug": "ra1-duty-bearers", "version": 1},
        "language": "en",
        "mode": "in_person",
        "started_at": "2026-05-04T09:30:00+03:00",
        "ended_at": "2026-05-04T10:45:00+03:00",
        "status": "complete",
        "answers": {"interview_language": "English", "gov_capacity": "There is no focal point yet."},
        "quotes": [
            {
                "id": str(uuid.uuid4()),
                "question_id": "gov_capacity",
                "text": "no focal point",
                "start": 9,
                "end": 23,
                "tags": ["capacity"],
            }
        ],
        "notes": notes,
    }


def backup_file(tmp_path: Path, device_id: str, changes: list[dict[str, Any]]) -> Path:
    path = tmp_path / f"surveykit-backup-{device_id}-20260505T101500.json"
    path.write_text(json.dumps({"changes": changes}), encoding="utf-8")
    return path


def counts(db: Session) -> tuple[int, int, int]:
    db.rollback()
    return (
        db.scalar(select(func.count()).select_from(Interview)),
        db.scalar(select(func.count()).select_from(InterviewRevision)),
        db.scalar(select(func.count()).select_from(Participant)),
    )


def test_a_backup_creates_its_records_once_however_often_it_is_pushed(
    run: CLI, db: Session, tmp_path: Path
) -> None:
    device_id, first = enrolled_device(run, db)
    changes = [
        {"uuid": str(uuid.uuid4()), "base_revision": 0, "record": record(first)},
        {"uuid": str(uuid.uuid4()), "base_revision": 0, "record": record(first + 1, "A")},
    ]
    path = backup_file(tmp_path, device_id, changes)

    rows = table(run.ok("sync", "push-file", str(path), "--device", device_id).rsplit("\n", 2)[0])
    assert [row[2] for row in rows[1:]] == ["created", "created"]
    assert counts(db) == (2, 2, 3)
    stored = db.scalar(select(Interview).where(Interview.uuid == changes[0]["uuid"]))
    assert stored.device_id == device_id

    again = json.loads(run.ok("sync", "push-file", str(path), "--device", device_id, "--json"))
    assert again["counts"] == {"created": 0, "updated": 0, "unchanged": 2, "conflict": 0, "rejected": 0}
    assert [r["revision"] for r in again["results"]] == [1, 1]
    assert counts(db) == (2, 2, 3)
    batches = db.scalars(select(AuditEvent).where(AuditEvent.action == "sync.batch")).all()
    assert [(e.device_id, e.details["via"]) for e in batches] == [(device_id, "push-file")] * 2


def test_a_revoked_tablets_backup_is_accepted_under_its_own_blocks(
    run: CLI, db: Session, tmp_path: Path
) -> None:
    device_id, first = enrolled_device(run, db)
    run.ok("devices", "revoke", device_id)
    db.rollback()
    assert db.get(Device, device_id).revoked_at is not None
    path = backup_file(
        tmp_path, device_id, [{"uuid": str(uuid.uuid4()), "base_revision": 0, "record": record(first)}]
    )
    out = run.ok("sync", "push-file", str(path), "--device", device_id)
    assert "1 created" in out
    assert counts(db) == (1, 1, 2)


def test_what_the_device_could_not_push_is_rejected_and_nothing_stored(
    run: CLI, db: Session, tmp_path: Path
) -> None:
    device_id, first = enrolled_device(run, db)
    outside = {"uuid": str(uuid.uuid4()), "base_revision": 0, "record": record(first + 40)}
    bad = record(first)
    bad["mode"] = "carrier_pigeon"
    invalid = {"uuid": str(uuid.uuid4()), "base_revision": 0, "record": bad}
    result = json.loads(
        run.ok(
            "sync",
            "push-file",
            str(backup_file(tmp_path, device_id, [outside, invalid])),
            "--device",
            device_id,
            "--json",
        )
    )
    assert [(r["result"], r["code"]) for r in result["results"]] == [
        ("rejected", "interview_number_refused"),
        ("rejected", "record_invalid"),
    ]
    assert any(e["path"] == "changes[1].record.mode" for e in result["results"][1]["errors"])
    assert counts(db) == (0, 0, 0)


def test_files_that_are_not_backups_and_unknown_devices_are_refused(
    run: CLI, db: Session, tmp_path: Path
) -> None:
    device_id, _ = enrolled_device(run, db)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json", encoding="utf-8")
    assert "is not a JSON sync batch" in run.fails("sync", "push-file", str(garbage), "--device", device_id)
    wrong_shape = tmp_path / "shape.json"
    wrong_shape.write_text(json.dumps({"records": []}), encoding="utf-8")
    assert "is not a sync batch" in run.fails("sync", "push-file", str(wrong_shape), "--device", device_id)
    empty = backup_file(tmp_path, device_id, [])
    assert "no device 'nope'" in run.fails("sync", "push-file", str(empty), "--device", "nope")
    assert counts(db) == (0, 0, 0)


def test_a_backup_that_moves_coded_passages_audits_the_reanchoring(
    run: CLI, db: Session, tmp_path: Path
) -> None:
    device_id, first = enrolled_device(run, db)
    interview_uuid = str(uuid.uuid4())
    original = record(first)
    path = backup_file(
        tmp_path, device_id, [{"uuid": interview_uuid, "base_revision": 0, "record": original}]
    )
    run.ok("sync", "push-file", str(path), "--device", device_id)
    study = studies.get_study(db, "ocsea")
    code, _ = codebook.create_code(db, study, "tests", name="Capacity")
    answer = original["answers"]["gov_capacity"]
    start = answer.index("focal point")
    db.add(
        Coding(
            guid=str(uuid.uuid4()),
            study_id=study.id,
            country_code="KE",
            code_id=code.id,
            interview_uuid=interview_uuid,
            question_id="gov_capacity",
            start_offset=start,
            end_offset=start + len("focal point"),
            text="focal point",
            coder_id=db.scalar(select(User.id).where(User.username == "wanjiru")),
            coder="wanjiru",
            anchor="current",
            anchored_revision=1,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
    )
    db.commit()
    answers = {**original["answers"], "gov_capacity": "A focal point was named."}
    revised = {**original, "answers": answers, "quotes": []}
    path = backup_file(tmp_path, device_id, [{"uuid": interview_uuid, "base_revision": 1, "record": revised}])
    assert "1 updated" in run.ok("sync", "push-file", str(path), "--device", device_id)
    db.rollback()
    coding = db.scalars(select(Coding)).one()
    assert (coding.anchor, coding.start_offset, coding.anchored_revision) == ("moved", 2, 2)
    [event] = db.scalars(select(AuditEvent).where(AuditEvent.action == "coding.reanchored")).all()
    assert event.device_id == device_id
    assert {key: event.details[key] for key in ("moved", "flagged", "interviews", "via")} == {
        "moved": 1,
        "flagged": 1,
        "interviews": [interview_uuid],
        "via": "push-file",
    }
