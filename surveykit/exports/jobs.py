"""Export jobs: the workbook of a large scope, built outside the request that asked for it.

A job is a row of ``export_jobs`` (``surveykit.exports.models``). The request only queues it; a
worker (``surveykit.exports.worker``) claims it, builds the file with ``services.write_workbook``
(the same function as the synchronous download, so the same data gives the same bytes) and keeps
the row's progress and heartbeat current. Every step here runs in its own short transaction, on
sessions of its own, never on a request's.

Claiming is safe between threads and processes on one database: on PostgreSQL the queued row is
locked ``FOR UPDATE SKIP LOCKED``, on SQLite the claim queues for the write lock, and in both the
state moves only by a conditional UPDATE (``state = 'queued'``). A worker writes to its job only
while the row still names it (``worker_id``) as running it; a job that was cancelled or taken over
in the meantime (``JobLost``) stops at its next progress report.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from surveykit.audit import services as audit
from surveykit.db import begin_write, utcnow
from surveykit.exports import services
from surveykit.exports.models import ExportJob
from surveykit.studies import services as studies

log = logging.getLogger(__name__)

JOBS_FOLDER = "export-jobs"
# Starts of one job (each ended by its process stopping) before it is failed instead of retried.
MAX_ATTEMPTS = 3
# The row is updated at most this often while the workbook is written.
PROGRESS_SECONDS = 0.5

STEP_QUEUED = "queued"
STEP_STARTING = "starting"
STEP_COUNTING = "counting interviews"
STEP_WRITING = "writing interviews"
STEP_FINISHING = "finishing the workbook"
STEP_DONE = "done"
STEP_FAILED = "failed"

SessionFactory = sessionmaker[Session] | Callable[[], Session]


class JobLost(RuntimeError):
    """The job's row no longer names this worker as running it (cancelled, or taken over)."""


@dataclass(frozen=True)
class JobSettings:
    files_dir: Path
    expiry_seconds: int
    stale_seconds: int
    max_attempts: int = MAX_ATTEMPTS

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> JobSettings:
        return cls(
            files_dir=Path(settings["surveykit.data_dir"]) / JOBS_FOLDER,
            expiry_seconds=settings["surveykit.export_job_expiry_seconds"],
            stale_seconds=settings["surveykit.export_job_stale_seconds"],
        )


@dataclass(frozen=True)
class WorkerName:
    """``host:pid:token``: where the process runs, which process, and which start of it."""

    host: str
    pid: int
    token: str

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"

    @classmethod
    def of_this_process(cls) -> WorkerName:
        return cls(socket.gethostname()[:80], os.getpid(), uuid.uuid4().hex[:12])

    @classmethod
    def parse(cls, worker_id: str) -> WorkerName | None:
        parts = worker_id.rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2])


# ------------------------------------------------------------------------------------- requests


def new_job(session: Session, owner_id: int, owner: str, scope: services.Scope) -> ExportJob:
    """Queue the workbook of ``scope`` for ``owner`` (in the caller's transaction)."""
    job = ExportJob(
        id=str(uuid.uuid4()),
        owner_id=owner_id,
        owner=owner,
        study_id=scope.study_id,
        study_slug=scope.study_slug,
        country=scope.label,
        activity=scope.activity,
        language=scope.language,
        format="xlsx",
        state="queued",
        step=STEP_QUEUED,
        done=0,
        attempts=0,
        created_at=utcnow(),
    )
    session.add(job)
    session.flush()
    return job


def owned_job(session: Session, job_id: str, user_id: int, now: datetime | None = None) -> ExportJob | None:
    """The job ``job_id`` if ``user_id`` started it and it has not expired; None otherwise (a job
    of someone else is not told apart from one that does not exist)."""
    try:
        uuid.UUID(job_id)
    except ValueError:
        return None
    job = session.get(ExportJob, job_id)
    if job is None or job.owner_id != user_id or is_expired(job, now or utcnow()):
        return None
    return job


def is_expired(job: ExportJob, now: datetime) -> bool:
    return job.expires_at is not None and job.expires_at <= now


def job_target(job: ExportJob) -> str:
    return f"{job.study_slug}/{job.country}" + (f"/{job.activity}" if job.activity else "")


def percent(job: ExportJob) -> int:
    if job.state == "done":
        return 100
    if not job.total:
        return 0
    # Never 100 before the file is there: the last interview is followed by the workbook's end.
    return min(99, job.done * 100 // job.total)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None


def job_json(job: ExportJob, job_path: str, file_path: str) -> dict[str, Any]:
    """What ``GET /api/v1/export-jobs/{id}`` answers (``job_path``/``file_path``: its links)."""
    done = job.state == "done"
    return {
        "id": job.id,
        "state": job.state,
        "format": job.format,
        "study": job.study_slug,
        "country": job.country,
        "activity": job.activity,
        "lang": job.language,
        "progress": {
            "step": job.step,
            "done": job.done,
            "total": job.total,
            "percent": percent(job),
        },
        "error": job.error,
        "attempts": job.attempts,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "expires_at": _iso(job.expires_at),
        "file": {"name": job.file_name, "size": job.file_size, "etag": job.etag} if done else None,
        "links": {"self": job_path, **({"file": file_path} if done else {})},
    }


def result_path(job: ExportJob, config: JobSettings) -> Path | None:
    return config.files_dir / job.file_path if job.file_path else None


def remove_job(session: Session, job: ExportJob, config: JobSettings) -> None:
    """Delete the job and its file (in the caller's transaction). A worker still running it stops
    at its next progress report and removes its partial file itself."""
    path = result_path(job, config)
    session.delete(job)
    session.flush()
    if path is not None:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------- workers


def claim_next(factory: SessionFactory, worker: WorkerName, now: datetime | None = None) -> str | None:
    """Take the oldest queued job for ``worker``: its id, or None when the queue is empty."""
    now = now or utcnow()
    with factory() as session:
        begin_write(session)
        job_id = session.scalar(
            select(ExportJob.id)
            .where(ExportJob.state == "queued")
            .order_by(ExportJob.created_at, ExportJob.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if job_id is None:
            session.rollback()
            return None
        claimed = session.execute(
            update(ExportJob)
            .where(ExportJob.id == job_id, ExportJob.state == "queued")
            .values(
                state="running",
                step=STEP_STARTING,
                worker_id=worker.id,
                started_at=now,
                heartbeat_at=now,
                attempts=ExportJob.attempts + 1,
                done=0,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
    return job_id if claimed == 1 else None


def _update_running(factory: SessionFactory, job_id: str, worker: WorkerName, **values: Any) -> bool:
    """Change the job while ``worker`` still runs it; False when it no longer does."""
    with factory() as session:
        begin_write(session)
        changed = session.execute(
            update(ExportJob)
            .where(ExportJob.id == job_id, ExportJob.worker_id == worker.id, ExportJob.state == "running")
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
    return changed == 1


class ProgressRecorder:
    """``write_workbook``'s progress callback for a job: counts interviews and writes the count
    to the row at most every ``PROGRESS_SECONDS`` (the heartbeat with it), and at once when the
    last interview is written. Raises ``JobLost`` when the row no longer names this worker."""

    def __init__(
        self,
        factory: SessionFactory,
        job_id: str,
        worker: WorkerName,
        clock: Callable[[], float] = time.monotonic,
        interval: float = PROGRESS_SECONDS,
    ) -> None:
        self.factory = factory
        self.job_id = job_id
        self.worker = worker
        self.clock = clock
        self.interval = interval
        self.done = 0
        self.total = 0
        self.last = clock()
        self.writes = 0

    def step(self, step: str, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self._write(step)

    def __call__(self, count: int) -> None:
        self.done += count
        if self.done == self.total:
            self._write(STEP_FINISHING)
        elif self.clock() - self.last >= self.interval:
            self._write(STEP_WRITING)

    def _write(self, step: str) -> None:
        self.last = self.clock()
        self.writes += 1
        # A retried pass (services.ScopeChanged) counts its interviews again.
        done = min(self.done, self.total)
        if not _update_running(
            self.factory,
            self.job_id,
            self.worker,
            step=step,
            done=done,
            total=self.total,
            heartbeat_at=utcnow(),
        ):
            raise JobLost(self.job_id)


def run_job(
    factory: SessionFactory,
    job_id: str,
    worker: WorkerName,
    config: JobSettings,
    *,
    snapshot: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Build the file of a job ``worker`` has claimed. Returns the state it ended in (``done`` or
    ``failed``), or ``lost`` when it was cancelled or taken over while running.

    ``snapshot``: read everything in one REPEATABLE READ transaction (PostgreSQL), as the command
    line export does; a SQLite read transaction is a snapshot already.
    """
    with factory() as session:
        job = session.get(ExportJob, job_id)
        if job is None or job.state != "running" or job.worker_id != worker.id:
            return "lost"
        study, country, activity, owner = job.study_slug, job.country, job.activity, job.owner
        language = job.language
        started = job.started_at or utcnow()
    config.files_dir.mkdir(parents=True, exist_ok=True)
    partial = config.files_dir / f"{job_id}.partial"
    final = config.files_dir / f"{job_id}.xlsx"
    recorder = ProgressRecorder(factory, job_id, worker, clock)
    try:
        with factory() as reader:
            if snapshot:
                reader.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            recorder.step(STEP_COUNTING)
            scope = services.resolve_scope(reader, study, country, activity, language)
            recorder.step(STEP_WRITING, services.count_interviews(reader, scope))
            result = services.write_workbook(reader, scope, str(partial), owner, progress=recorder)
            # It only read: ending it with a commit or a rollback is the same here, but a commit
            # keeps what the recorder wrote when both share one connection (the tests' savepoints).
            reader.commit()
    except JobLost:
        partial.unlink(missing_ok=True)
        return "lost"
    except (studies.StudyNotFound, studies.CountryNotFound, studies.ActivityNotFound) as exc:
        partial.unlink(missing_ok=True)
        return _fail(factory, job_id, worker, config, f"the scope is gone: {exc}")
    except Exception as exc:
        partial.unlink(missing_ok=True)
        log.exception("export job %s failed", job_id)
        return _fail(
            factory, job_id, worker, config, f"the export failed ({type(exc).__name__}); see the server log"
        )
    os.replace(partial, final)
    now = utcnow()
    finished = _update_running(
        factory,
        job_id,
        worker,
        state="done",
        step=STEP_DONE,
        error=None,
        done=recorder.total,
        file_path=final.name,
        file_size=final.stat().st_size,
        etag=result.content_hash,
        file_name=services.file_name(result.scope, result),
        finished_at=now,
        heartbeat_at=now,
        expires_at=now + timedelta(seconds=config.expiry_seconds),
    )
    if not finished:
        final.unlink(missing_ok=True)
        return "lost"
    with factory() as session:
        audit.record(
            session,
            "export_job.finished",
            actor=owner,
            target=result.scope.target,
            details={
                "job": job_id,
                "etag": result.content_hash,
                "interviews": result.total.interviews,
                "participants": result.total.participants,
                "seconds": round((now - started).total_seconds(), 1),
            },
        )
        session.commit()
    return "done"


def _fail(factory: SessionFactory, job_id: str, worker: WorkerName, config: JobSettings, message: str) -> str:
    now = utcnow()
    failed = _update_running(
        factory,
        job_id,
        worker,
        state="failed",
        step=STEP_FAILED,
        error=message,
        finished_at=now,
        expires_at=now + timedelta(seconds=config.expiry_seconds),
    )
    if not failed:
        return "lost"
    with factory() as session:
        job = session.get(ExportJob, job_id)
        if job is not None:
            audit.record(
                session,
                "export_job.failed",
                actor=job.owner,
                outcome="failure",
                target=job_target(job),
                details={"job": job_id, "error": message},
            )
            session.commit()
    return "failed"


def beat(factory: SessionFactory, worker: WorkerName, job_ids: Collection[str]) -> int:
    """Refresh the heartbeat of the jobs ``worker`` is running now; how many. Only jobs a thread
    is really working on: one whose thread ended without finishing it goes stale and is taken back."""
    if not job_ids:
        return 0
    with factory() as session:
        begin_write(session)
        count = session.execute(
            update(ExportJob)
            .where(
                ExportJob.id.in_(list(job_ids)),
                ExportJob.worker_id == worker.id,
                ExportJob.state == "running",
            )
            .values(heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
    return count


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_gone(job: ExportJob, me: WorkerName, cutoff: datetime) -> bool:
    """Whether the process named in a running job has stopped: its heartbeat is older than
    ``cutoff``, or it ran on this machine and its process is no longer there (or is an earlier
    process that had this one's pid)."""
    if job.heartbeat_at is None or job.heartbeat_at < cutoff:
        return True
    other = WorkerName.parse(job.worker_id or "")
    if other is None or other.host != me.host or other.id == me.id:
        return False
    return other.pid == me.pid or not _pid_alive(other.pid)


def recover(
    factory: SessionFactory, me: WorkerName, config: JobSettings, now: datetime | None = None
) -> list[str]:
    """Take back the running jobs whose process has stopped: queued again, or failed with the
    reason once they have been started ``config.max_attempts`` times. Returns their ids."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=config.stale_seconds)
    recovered = []
    with factory() as session:
        begin_write(session)
        running = session.scalars(
            select(ExportJob).where(ExportJob.state == "running").with_for_update(skip_locked=True)
        ).all()
        for job in running:
            if not process_gone(job, me, cutoff):
                continue
            recovered.append(job.id)
            gone = job.worker_id
            if job.attempts < config.max_attempts:
                log.warning("export job %s: its process %s stopped; queued again", job.id, gone)
                job.state, job.step, job.done, job.worker_id = "queued", STEP_QUEUED, 0, None
                job.error = f"started again: the process running it ({gone}) stopped"
                continue
            log.warning(
                "export job %s: its process %s stopped, attempt %d; failed", job.id, gone, job.attempts
            )
            job.state, job.step, job.finished_at = "failed", STEP_FAILED, now
            job.expires_at = now + timedelta(seconds=config.expiry_seconds)
            job.error = (
                f"the server process running this export stopped {job.attempts} times (a restart or a "
                "crash); it was not started again. Start a new export job."
            )
            audit.record(
                session,
                "export_job.failed",
                actor=job.owner,
                outcome="failure",
                target=job_target(job),
                details={"job": job.id, "error": job.error, "worker": gone},
            )
        session.commit()
    for job_id in recovered:
        (config.files_dir / f"{job_id}.partial").unlink(missing_ok=True)
    return recovered


def release(factory: SessionFactory, me: WorkerName) -> int:
    """On an orderly stop: queue again the jobs this process is running (not counted as attempts)."""
    with factory() as session:
        begin_write(session)
        count = session.execute(
            update(ExportJob)
            .where(ExportJob.worker_id == me.id, ExportJob.state == "running")
            .values(state="queued", step=STEP_QUEUED, done=0, worker_id=None, attempts=ExportJob.attempts - 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
    return count


def sweep_expired(factory: SessionFactory, config: JobSettings, now: datetime | None = None) -> int:
    """Delete the jobs past their expiry and their files; how many."""
    now = now or utcnow()
    with factory() as session:
        begin_write(session)
        expired = session.execute(
            select(ExportJob.id, ExportJob.file_path).where(ExportJob.expires_at <= now)
        ).all()
        if expired:
            session.execute(
                delete(ExportJob)
                .where(ExportJob.id.in_([job_id for job_id, _ in expired]))
                .execution_options(synchronize_session=False)
            )
        session.commit()
    for _, name in expired:
        if name:
            (config.files_dir / name).unlink(missing_ok=True)
    return len(expired)
