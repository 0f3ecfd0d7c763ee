"""Export jobs (docs/export-jobs.md): queue, progress, the same file as the synchronous download,
owners only, claims that never run a job twice, recovery after a process stops, and expiry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import webtest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from support_db import TEST_SECRET, Accounts, settings_for
from test_e2e_serve import child_env, fetch, login, serving
from test_export_support import ExportWorld, kenya, load, summary

from surveykit import migrate
from surveykit.accounts import services as account_services
from surveykit.accounts.models import Grant
from surveykit.audit.models import AuditEvent
from surveykit.db import begin_write, make_engine, make_session_factory
from surveykit.exports import cli as export_cli
from surveykit.exports import jobs, services
from surveykit.exports.models import ExportJob
from surveykit.exports.worker import ExportWorker

KE_JOBS = "/api/v1/exports/exp/KE.xlsx/jobs"
ALL_JOBS = "/api/v1/exports/exp/ALL.xlsx/jobs"
FIXED = datetime(2026, 12, 6, 9, 30, 12, tzinfo=UTC)
PASSWORD = "jobs-password-" + "q" * 12


@pytest.fixture
def world(dbsession: Session, accounts: Any) -> ExportWorld:
    world = ExportWorld(dbsession, accounts)
    kenya(world)
    return world


@pytest.fixture
def factory(connection: Any) -> Any:
    """Sessions of the job functions, on the test's connection (their commits release savepoints)."""
    return make_session_factory(connection, join_transaction_mode="create_savepoint")


@pytest.fixture
def config(tmp_path: Path) -> jobs.JobSettings:
    return jobs.JobSettings(files_dir=tmp_path / "export-jobs", expiry_seconds=3600, stale_seconds=60)


@pytest.fixture
def job_files(testapp: webtest.TestApp, config: jobs.JobSettings) -> Iterator[None]:
    """The app's jobs folder is the test's (its data dir is shared by the whole run)."""
    settings = testapp.app.registry.settings
    before = settings["surveykit.data_dir"]
    settings["surveykit.data_dir"] = str(config.files_dir.parent)
    yield
    settings["surveykit.data_dir"] = before


def analyst(accounts: Any, username: str = "jobs-analyst") -> tuple[Any, dict[str, str]]:
    user = accounts.user(username, "analyst", "exp", ["KE"])
    return user, {"Authorization": f"Bearer {accounts.token(user)}"}


def run_one(factory: Any, config: jobs.JobSettings, worker: jobs.WorkerName | None = None) -> tuple[str, str]:
    worker = worker or jobs.WorkerName.of_this_process()
    job_id = jobs.claim_next(factory, worker)
    assert job_id is not None
    return job_id, jobs.run_job(factory, job_id, worker, config, snapshot=False)


def events(dbsession: Session, action: str) -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def test_a_job_is_queued_run_and_its_file_is_the_synchronous_download_byte_for_byte(
    testapp: webtest.TestApp,
    dbsession: Session,
    accounts: Any,
    world: ExportWorld,
    factory: Any,
    config: jobs.JobSettings,
    job_files: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "utcnow", lambda: FIXED)
    _, headers = analyst(accounts)
    started = testapp.post(KE_JOBS, headers=headers, status=202)
    job = started.json
    assert started.headers["Location"].endswith(f"/api/v1/export-jobs/{job['id']}")
    assert (job["state"], job["country"], job["format"], job["file"]) == ("queued", "KE", "xlsx", None)
    assert job["progress"] == {"step": "queued", "done": 0, "total": None, "percent": 0}
    assert job["links"] == {"self": f"/api/v1/export-jobs/{job['id']}"}
    assert len(job["id"]) == 36
    (created,) = events(dbsession, "export_job.created")
    assert (created.actor, created.target, created.details["job"]) == ("jobs-analyst", "exp/KE", job["id"])

    assert run_one(factory, config) == (job["id"], "done")
    shown = testapp.get(f"/api/v1/export-jobs/{job['id']}", headers=headers).json
    assert shown["state"] == "done" and shown["attempts"] == 1 and shown["error"] is None
    assert shown["progress"] == {"step": "done", "done": 9, "total": 9, "percent": 100}
    assert shown["links"]["file"] == f"/api/v1/export-jobs/{job['id']}/file"

    from_job = testapp.get(shown["links"]["file"], headers=headers)
    direct = testapp.get("/api/v1/exports/exp/KE.xlsx", headers=headers)
    assert from_job.body == direct.body
    for name in ("ETag", "Content-Disposition", "Content-Type", "Cache-Control"):
        assert from_job.headers[name] == direct.headers[name]
    assert shown["file"] == {
        "name": direct.headers["Content-Disposition"].split('"')[1],
        "size": len(direct.body),
        "etag": direct.headers["ETag"].strip('"'),
    }
    assert summary(load(from_job.body))["Generated by"] == "jobs-analyst"
    downloads = [e for e in events(dbsession, "export.download") if e.details.get("job")]
    assert [(e.details["etag"], e.details["not_modified"]) for e in downloads] == [
        (shown["file"]["etag"], False)
    ]
    (finished,) = events(dbsession, "export_job.finished")
    assert finished.details["job"] == job["id"] and finished.details["interviews"] == 9
    again = testapp.get(
        shown["links"]["file"], headers={**headers, "If-None-Match": from_job.headers["ETag"]}
    )
    assert again.status_int == 304 and again.body == b""


def test_two_files_written_at_one_moment_are_the_same_bytes(
    dbsession: Session, world: ExportWorld, tmp_path: Path
) -> None:
    scope = services.resolve_scope(dbsession, "exp", "KE")
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    services.write_workbook(dbsession, scope, str(first), "someone", generated_at=FIXED)
    time.sleep(2.1)  # zip entry times step by two seconds
    services.write_workbook(dbsession, scope, str(second), "someone", generated_at=FIXED)
    assert first.read_bytes() == second.read_bytes()


def test_progress_is_written_to_the_row_at_most_every_half_second(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, world: ExportWorld, factory: Any
) -> None:
    _, headers = analyst(accounts)
    job_id = testapp.post(KE_JOBS, headers=headers, status=202).json["id"]
    worker = jobs.WorkerName.of_this_process()
    assert jobs.claim_next(factory, worker) == job_id
    now = [0.0]
    recorder = jobs.ProgressRecorder(factory, job_id, worker, clock=lambda: now[0])
    recorder.step(jobs.STEP_WRITING, 9)
    now[0] += 0.6
    recorder(3)
    progress = testapp.get(f"/api/v1/export-jobs/{job_id}", headers=headers).json
    assert progress["state"] == "running"
    assert progress["progress"] == {"step": "writing interviews", "done": 3, "total": 9, "percent": 33}
    now[0] += 0.1
    recorder(2)  # within half a second of the last write: not written
    assert testapp.get(f"/api/v1/export-jobs/{job_id}", headers=headers).json["progress"]["done"] == 3
    recorder(4)  # the last interview: written at once, with the step after it
    progress = testapp.get(f"/api/v1/export-jobs/{job_id}", headers=headers).json["progress"]
    assert progress == {"step": "finishing the workbook", "done": 9, "total": 9, "percent": 99}
    assert recorder.writes == 3


def test_the_command_line_bar_shows_the_steps_a_job_reports() -> None:
    bar = export_cli._progress(3, quiet=False)
    with bar as advance:
        advance(2)
        assert (bar.done, bar.step) == (2, jobs.STEP_WRITING)
        advance(1)
        assert (bar.done, bar.step) == (3, jobs.STEP_FINISHING)
    with export_cli._progress(3, quiet=True) as nothing:
        assert nothing is None


def test_a_file_before_the_job_is_done_is_a_409_and_a_failed_job_says_why(
    testapp: webtest.TestApp,
    dbsession: Session,
    accounts: Any,
    world: ExportWorld,
    factory: Any,
    config: jobs.JobSettings,
    job_files: None,
) -> None:
    _, headers = analyst(accounts)
    job_id = testapp.post(KE_JOBS + "?activity=RA1", headers=headers, status=202).json["id"]
    refused = testapp.get(f"/api/v1/export-jobs/{job_id}/file", headers=headers, status=409)
    assert refused.json["code"] == "conflict" and "queued" in refused.json["message"]
    assert refused.json["details"][0]["location"] == "path"

    worker = jobs.WorkerName.of_this_process()
    assert jobs.claim_next(factory, worker) == job_id
    with factory() as session:
        session.execute(update(ExportJob).where(ExportJob.id == job_id).values(activity="RA7"))
        session.commit()
    assert jobs.run_job(factory, job_id, worker, config, snapshot=False) == "failed"
    shown = testapp.get(f"/api/v1/export-jobs/{job_id}", headers=headers).json
    assert shown["state"] == "failed" and shown["error"].startswith("the scope is gone:")
    refused = testapp.get(f"/api/v1/export-jobs/{job_id}/file", headers=headers, status=409)
    assert refused.json["message"].startswith("the export job failed: the scope is gone")
    (failed,) = events(dbsession, "export_job.failed")
    assert (failed.outcome, failed.details["job"]) == ("failure", job_id)
    assert not list(config.files_dir.iterdir())


def test_only_the_owner_sees_a_job_and_the_owner_needs_the_grant(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, world: ExportWorld
) -> None:
    owner, headers = analyst(accounts)
    job_id = testapp.post(KE_JOBS, headers=headers, status=202).json["id"]
    for other in (accounts.headers("analyst", "exp", ["KE"]), accounts.headers("admin")):
        for method, url in (
            ("GET", f"/api/v1/export-jobs/{job_id}"),
            ("GET", f"/api/v1/export-jobs/{job_id}/file"),
            ("DELETE", f"/api/v1/export-jobs/{job_id}"),
        ):
            response = testapp.request(url, method=method, headers=other, status=404)
            assert response.json["code"] == "not_found" and response.json["details"][0]["path"] == "job"
    testapp.get(f"/api/v1/export-jobs/{job_id}", status=401)
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        assert (
            testapp.get(f"/api/v1/export-jobs/{bad}", headers=headers, status=404).json["code"] == "not_found"
        )
    # Losing the grant closes the owner's own job too.
    (grant,) = dbsession.scalars(select(Grant).where(Grant.user_id == owner.id))
    account_services.remove_grant(dbsession, owner, grant.id)
    dbsession.flush()
    assert (
        testapp.get(f"/api/v1/export-jobs/{job_id}", headers=headers, status=403).json["code"] == "forbidden"
    )


def test_jobs_are_refused_outside_the_callers_scope(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, world: ExportWorld
) -> None:
    _, headers = analyst(accounts)
    assert (
        testapp.post("/api/v1/exports/exp/TZ.xlsx/jobs", headers=headers, status=403).json["code"]
        == "forbidden"
    )
    testapp.post(ALL_JOBS, headers=headers, status=403)
    testapp.post(KE_JOBS, headers=accounts.headers("fieldworker", "exp", ["KE"]), status=403)
    testapp.post(KE_JOBS, status=401)
    assert dbsession.scalar(select(ExportJob.id)) is None
    study_wide = testapp.post(ALL_JOBS, headers=accounts.headers("analyst", "exp", None), status=202).json
    assert study_wide["country"] == "ALL"


def test_bad_inputs_are_json_errors_and_change_nothing(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, world: ExportWorld
) -> None:
    _, headers = analyst(accounts)
    unknown = testapp.post(KE_JOBS + "?format=csv", headers=headers, status=422).json
    assert unknown["code"] == "invalid_input" and unknown["details"][0]["location"] == "querystring"
    bad = testapp.post(KE_JOBS + "?activity=RA0", headers=headers, status=422).json
    assert bad["details"][0]["path"] == "activity"
    missing = testapp.post(KE_JOBS + "?activity=RA9", headers=headers, status=404).json
    assert missing["code"] == "activity_not_found"
    admin = accounts.headers("admin")
    assert testapp.post("/api/v1/exports/nope/KE.xlsx/jobs", headers=admin, status=404).json["code"] == (
        "study_not_found"
    )
    assert testapp.post("/api/v1/exports/exp/ZZ.xlsx/jobs", headers=admin, status=404).json["code"] == (
        "country_not_found"
    )
    assert testapp.get(KE_JOBS, headers=headers, status=405).json["code"] == "method_not_allowed"
    assert dbsession.scalar(select(ExportJob.id)) is None


def test_deleting_a_job_removes_it_and_its_file_and_stops_a_running_one(
    testapp: webtest.TestApp,
    dbsession: Session,
    accounts: Any,
    world: ExportWorld,
    factory: Any,
    config: jobs.JobSettings,
    job_files: None,
) -> None:
    _, headers = analyst(accounts)
    job_id = testapp.post(KE_JOBS, headers=headers, status=202).json["id"]
    assert run_one(factory, config)[1] == "done"
    assert (config.files_dir / f"{job_id}.xlsx").exists()
    testapp.delete(f"/api/v1/export-jobs/{job_id}", headers=headers, status=204)
    assert not (config.files_dir / f"{job_id}.xlsx").exists()
    testapp.get(f"/api/v1/export-jobs/{job_id}", headers=headers, status=404)

    running = testapp.post(KE_JOBS, headers=headers, status=202).json["id"]
    worker = jobs.WorkerName.of_this_process()
    assert jobs.claim_next(factory, worker) == running
    recorder = jobs.ProgressRecorder(factory, running, worker)
    testapp.delete(f"/api/v1/export-jobs/{running}", headers=headers, status=204)
    with pytest.raises(jobs.JobLost):
        recorder.step(jobs.STEP_WRITING, 9)
    assert jobs.run_job(factory, running, worker, config, snapshot=False) == "lost"
    assert [e.details["state"] for e in events(dbsession, "export_job.deleted")] == ["done", "running"]


def test_expired_jobs_and_their_files_are_swept(
    testapp: webtest.TestApp,
    dbsession: Session,
    accounts: Any,
    world: ExportWorld,
    factory: Any,
    config: jobs.JobSettings,
    job_files: None,
) -> None:
    _, headers = analyst(accounts)
    job_id = testapp.post(KE_JOBS, headers=headers, status=202).json["id"]
    run_one(factory, config)
    dbsession.expire_all()
    job = dbsession.get(ExportJob, job_id)
    assert job.expires_at - job.finished_at == timedelta(seconds=3600)
    assert jobs.sweep_expired(factory, config, now=job.finished_at + timedelta(seconds=3599)) == 0
    assert (config.files_dir / f"{job_id}.xlsx").exists()
    with factory() as session:
        session.execute(update(ExportJob).where(ExportJob.id == job_id).values(expires_at=datetime.now(UTC)))
        session.commit()
    # Past its expiry a job is gone for its owner at once, before any sweep.
    testapp.get(f"/api/v1/export-jobs/{job_id}/file", headers=headers, status=404)
    assert jobs.sweep_expired(factory, config) == 1
    assert not (config.files_dir / f"{job_id}.xlsx").exists()
    dbsession.expire_all()
    assert dbsession.get(ExportJob, job_id) is None


def test_a_job_whose_process_stopped_is_queued_again_then_failed_after_its_attempts(
    testapp: webtest.TestApp,
    dbsession: Session,
    accounts: Any,
    world: ExportWorld,
    factory: Any,
    config: jobs.JobSettings,
    job_files: None,
) -> None:
    _, headers = analyst(accounts)
    job_id = testapp.post(KE_JOBS, headers=headers, status=202).json["id"]
    me = jobs.WorkerName.of_this_process()
    elsewhere = jobs.WorkerName("another-host", 4242, "abc")
    assert jobs.claim_next(factory, elsewhere) == job_id
    # Fresh heartbeat on another machine: alive as far as anyone here can tell.
    assert jobs.recover(factory, me, config) == []
    later = datetime.now(UTC) + timedelta(seconds=61)
    assert jobs.recover(factory, me, config, now=later) == [job_id]
    shown = testapp.get(f"/api/v1/export-jobs/{job_id}", headers=headers).json
    assert shown["state"] == "queued" and "another-host:4242:abc" in shown["error"]

    # A process of this machine that is no longer there is taken back without waiting.
    dead = jobs.WorkerName(me.host, _dead_pid(), "old")
    assert jobs.claim_next(factory, dead) == job_id
    assert jobs.recover(factory, me, config) == [job_id]
    assert jobs.claim_next(factory, elsewhere) == job_id
    assert jobs.recover(factory, me, config, now=later) == [job_id]
    shown = testapp.get(f"/api/v1/export-jobs/{job_id}", headers=headers).json
    assert shown["state"] == "failed" and shown["attempts"] == 3
    assert "stopped 3 times" in shown["error"]
    assert jobs.claim_next(factory, me) is None
    (failed,) = events(dbsession, "export_job.failed")
    assert failed.details["worker"] == "another-host:4242:abc"


def test_the_heartbeat_is_kept_only_for_the_jobs_a_thread_is_working_on(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, world: ExportWorld, factory: Any
) -> None:
    _, headers = analyst(accounts)
    working, abandoned = (testapp.post(KE_JOBS, headers=headers, status=202).json["id"] for _ in range(2))
    me = jobs.WorkerName.of_this_process()
    assert {jobs.claim_next(factory, me), jobs.claim_next(factory, me)} == {working, abandoned}
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    with factory() as session:
        session.execute(update(ExportJob).values(heartbeat_at=long_ago))
        session.commit()
    assert jobs.beat(factory, me, {working}) == 1
    assert jobs.beat(factory, jobs.WorkerName(me.host, me.pid, "other"), {working, abandoned}) == 0
    dbsession.expire_all()
    assert dbsession.get(ExportJob, working).heartbeat_at > long_ago
    assert dbsession.get(ExportJob, abandoned).heartbeat_at == long_ago


def test_an_orderly_stop_queues_the_processs_jobs_again_without_counting_an_attempt(
    testapp: webtest.TestApp, dbsession: Session, accounts: Any, world: ExportWorld, factory: Any
) -> None:
    _, headers = analyst(accounts)
    mine, theirs = (testapp.post(KE_JOBS, headers=headers, status=202).json["id"] for _ in range(2))
    me, other = jobs.WorkerName.of_this_process(), jobs.WorkerName("another-host", 7, "t")
    assert jobs.claim_next(factory, me) == mine
    assert jobs.claim_next(factory, other) == theirs
    assert jobs.release(factory, me) == 1
    dbsession.expire_all()
    released, untouched = dbsession.get(ExportJob, mine), dbsession.get(ExportJob, theirs)
    assert (released.state, released.attempts, released.worker_id) == ("queued", 0, None)
    assert (untouched.state, untouched.worker_id) == ("running", other.id)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ------------------------------------------------------------------ real databases, real processes


@pytest.fixture
def committed(fresh_database: Callable[[], str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A migrated database of its own whose sessions commit, with Kenya's interviews and an analyst."""
    settings = settings_for(fresh_database(), tmp_path / "data")
    engine = make_engine(settings)
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        accounts = Accounts(session, settings)
        kenya(ExportWorld(session, accounts))
        owner = accounts.user("restart-analyst", "analyst", "exp", ["KE"], password=PASSWORD)
        scope = services.resolve_scope(session, "exp", "KE")
        session.commit()
        ids = {"owner_id": owner.id, "scope": scope}
    yield {"settings": settings, "engine": engine, "factory": factory, **ids}
    engine.dispose()


def _queue(committed: dict[str, Any], count: int = 1) -> list[str]:
    with committed["factory"]() as session:
        made = [
            jobs.new_job(session, committed["owner_id"], "restart-analyst", committed["scope"]).id
            for _ in range(count)
        ]
        session.commit()
    return made


def test_concurrent_claims_never_take_one_job_twice(committed: dict[str, Any]) -> None:
    factory = committed["factory"]
    queued = set(_queue(committed, 12))
    claims: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def claimer(number: int) -> None:
        worker = jobs.WorkerName("host", 1000 + number, "t")
        try:
            start.wait()
            while (job_id := jobs.claim_next(factory, worker)) is not None:
                claims.append((job_id, worker.id))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(job_id for job_id, _ in claims) == sorted(queued)
    with factory() as session:
        rows = session.execute(select(ExportJob.id, ExportJob.worker_id, ExportJob.attempts)).all()
    assert {(job_id, worker, 1) for job_id, worker in claims} == set(map(tuple, rows))


def test_a_claim_skips_the_job_another_session_is_claiming(committed: dict[str, Any]) -> None:
    factory = committed["factory"]
    first, second = _queue(committed, 2)
    holder = factory()
    begin_write(holder)
    held = holder.scalar(
        select(ExportJob.id)
        .where(ExportJob.state == "queued")
        .order_by(ExportJob.created_at, ExportJob.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    assert held == first
    holder.execute(update(ExportJob).where(ExportJob.id == held).values(state="running", worker_id="h:1:x"))
    result: list[str | None] = []
    other = threading.Thread(
        target=lambda: result.append(jobs.claim_next(factory, jobs.WorkerName("o", 2, "y")))
    )
    other.start()
    # PostgreSQL skips the locked row at once; SQLite queues for the write lock until the commit.
    other.join(0.5)
    holder.commit()
    holder.close()
    other.join(30)
    assert result == [second]


WORKER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from surveykit.config import load_settings
    from surveykit.db import make_engine
    from surveykit.exports import jobs, services
    from surveykit.exports.worker import ExportWorker

    real_write = services.write_workbook

    def stalls_after_one_interview(*args, progress, **kw):
        def report(count):
            progress(count)
            print("writing", flush=True)
            time.sleep(3600)
        return real_write(*args, progress=report, **kw)

    services.write_workbook = stalls_after_one_interview
    settings = load_settings({})
    worker = ExportWorker(make_engine(settings), jobs.JobSettings.from_settings(settings), 1)
    worker.start()
    print("started", flush=True)
    time.sleep(3600)
    """
)


def test_a_job_survives_the_kill_of_the_process_running_it(committed: dict[str, Any], tmp_path: Path) -> None:
    settings, factory = committed["settings"], committed["factory"]
    (job_id,) = _queue(committed)
    environ = {
        **os.environ,
        "SURVEYKIT_ENV": "test",
        "SURVEYKIT_DATABASE_URL": settings["sqlalchemy.url"],
        "SURVEYKIT_DATA_DIR": settings["surveykit.data_dir"],
        "SURVEYKIT_SECRET": TEST_SECRET,
    }
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(2)]
        assert lines == ["started", "writing"], process.stderr.read() if process.poll() is not None else lines
        with factory() as session:
            job = session.get(ExportJob, job_id)
            assert (job.state, job.worker_id.split(":")[1]) == ("running", str(process.pid))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    config = jobs.JobSettings.from_settings(settings)
    assert (config.files_dir / f"{job_id}.partial").exists()

    # The next start on this machine takes the job back at once and runs it to the end.
    restarted = ExportWorker(committed["engine"], config, 1)
    restarted.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with factory() as session:
                job = session.get(ExportJob, job_id)
            if job.state in ("done", "failed"):
                break
            time.sleep(0.2)
    finally:
        restarted.stop()
    assert (job.state, job.attempts, job.worker_id, job.error) == ("done", 2, restarted.name.id, None)
    assert not (config.files_dir / f"{job_id}.partial").exists()
    book = load((config.files_dir / job.file_path).read_bytes())
    assert summary(book)["Generated by"] == "restart-analyst"


def test_surveykit_serve_runs_a_job_it_was_given(committed: dict[str, Any], tmp_path: Path) -> None:
    settings = committed["settings"]
    env = child_env(SURVEYKIT_DATA_DIR=settings["surveykit.data_dir"], SURVEYKIT_ENV="test")
    with serving(["--database-url", settings["sqlalchemy.url"]], env, tmp_path / "serve.log") as server:
        token = login(server, "restart-analyst", PASSWORD)
        started = fetch(server, "/api/v1/exports/exp/KE.xlsx/jobs", token=token, body={})
        assert started.status == 202, started.body
        location = urlsplit(started.headers["Location"]).path
        assert location == started.json()["links"]["self"]
        deadline = time.monotonic() + 60
        while (job := fetch(server, location, token=token).json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["state"] == "done", job
        workbook = fetch(server, job["links"]["file"], token=token)
        direct = fetch(server, "/api/v1/exports/exp/KE.xlsx", token=token)
    assert workbook.status == 200 and workbook.headers["ETag"] == direct.headers["ETag"]
    assert summary(load(workbook.body))["Methods sentence"] == summary(load(direct.body))["Methods sentence"]


def test_a_job_keeps_the_language_asked_for_and_refuses_one_not_offered(
    testapp: webtest.TestApp,
    dbsession: Session,
    accounts: Any,
    world: ExportWorld,
    factory: Any,
    config: jobs.JobSettings,
    job_files: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "utcnow", lambda: FIXED)
    _, headers = analyst(accounts)
    refused = testapp.post(f"{KE_JOBS}?lang=zz", headers=headers, status=422).json
    assert [(e["location"], e["path"]) for e in refused["details"]] == [("querystring", "lang")]
    assert dbsession.scalars(select(ExportJob)).all() == []
    job = testapp.post(f"{KE_JOBS}?lang=en", headers=headers, status=202).json
    assert job["lang"] == "en"
    assert run_one(factory, config) == (job["id"], "done")
    from_job = testapp.get(f"/api/v1/export-jobs/{job['id']}/file", headers=headers)
    direct = testapp.get("/api/v1/exports/exp/KE.xlsx?lang=en", headers=headers)
    assert from_job.body == direct.body and from_job.headers["ETag"] == direct.headers["ETag"]
