"""The export worker of one app process: a few threads that build queued export jobs.

``surveykit serve`` (and ``pserve``) start it once the database is ready (``start_worker``). Each
of its ``surveykit.export_workers`` threads claims a queued job, builds it and claims the next;
one more thread beats the heartbeat of the jobs this process runs, takes back the jobs of
processes that stopped (``jobs.recover``) and deletes expired jobs. A new job wakes the threads
once its transaction has committed; without that, they look every few seconds. All threads are
daemons: a stopping process does not wait for a workbook, its jobs are queued again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy.engine import Engine

from surveykit.config import is_sqlite
from surveykit.db import make_session_factory
from surveykit.exports import jobs

log = logging.getLogger(__name__)

# How often the housekeeping thread deletes expired jobs.
SWEEP_SECONDS = 300.0


class ExportWorker:
    def __init__(self, engine: Engine, config: jobs.JobSettings, threads: int) -> None:
        self.factory = make_session_factory(engine)
        self.config = config
        self.threads = threads
        self.snapshot = not is_sqlite(str(engine.url))
        self.name = jobs.WorkerName.of_this_process()
        # A quarter of the staleness limit, so a heartbeat is never close to looking stale.
        self.poll_seconds = max(0.5, min(5.0, config.stale_seconds / 4))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # The jobs this process's threads are working on, whose heartbeat it keeps.
        self._active: set[str] = set()
        self._active_lock = threading.Lock()
        self._last_sweep = 0.0

    def start(self) -> None:
        """Take back what a stopped process left running, then start the threads."""
        recovered = jobs.recover(self.factory, self.name, self.config)
        if recovered:
            log.warning("export jobs taken back from stopped processes: %s", ", ".join(recovered))
        for number in range(self.threads):
            self._spawn(self._work, f"export-job-{number + 1}")
        self._spawn(self._housekeep, "export-jobs-heartbeat")

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming and queue this process's running jobs again for another process."""
        self._stop.set()
        self._wake.set()
        try:
            jobs.release(self.factory, self.name)
        except Exception:  # noqa: BLE001 - on the way out; the heartbeat lets others recover them
            log.exception("export jobs: could not queue this process's jobs again")

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = jobs.claim_next(self.factory, self.name)
                if job_id is not None:
                    with self._active_lock:
                        self._active.add(job_id)
                    try:
                        state = jobs.run_job(
                            self.factory, job_id, self.name, self.config, snapshot=self.snapshot
                        )
                    finally:
                        with self._active_lock:
                            self._active.discard(job_id)
                    log.info("export job %s: %s", job_id, state)
                    continue
            except Exception:  # noqa: BLE001 - a worker thread outlives one failure
                log.exception("export jobs: a claim or run failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _housekeep(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                with self._active_lock:
                    active = set(self._active)
                jobs.beat(self.factory, self.name, active)
                if jobs.recover(self.factory, self.name, self.config):
                    self._wake.set()
                if time.monotonic() - self._last_sweep >= SWEEP_SECONDS:
                    self._last_sweep = time.monotonic()
                    jobs.sweep_expired(self.factory, self.config)
            except Exception:  # noqa: BLE001
                log.exception("export jobs: housekeeping failed")


def start_worker(registry: Any) -> ExportWorker:
    """Start this process's export worker on the application's engine; kept in the registry so a
    new job can wake it."""
    settings = registry.settings
    worker = ExportWorker(
        registry["db_engine"], jobs.JobSettings.from_settings(settings), settings["surveykit.export_workers"]
    )
    worker.start()
    registry["export_worker"] = worker
    return worker
