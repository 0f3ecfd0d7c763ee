"""Every script in bench/ runs to the end with tiny settings on the suite's database backend.

The benchmarks print figures and are not run by CI otherwise, so a script that no longer matches
the code it drives (a renamed helper, a changed command) would only be found by the next person
who needs its figures. These runs check that each one still gets through set-up, load and its own
checks (for bench_sync and load_fault: everything acknowledged is stored exactly once); they assert
no speed. Kinto is left out of bench_sync with its own ``--skip-kinto`` option: it is installed from
PyPI into a separate virtual environment, which a test run must not need.

The backend is the suite's: a SQLite file when ``SURVEYKIT_TEST_DATABASE_URL`` is unset, else
throwaway databases created through that PostgreSQL URL (the scripts create and drop their own).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(
    path.name for path in BENCH.glob("*.py") if path.name not in ("harness.py", "load_fault_probes.py")
)
TIMEOUT_S = 300


def postgres_url() -> str | None:
    url = os.environ.get("SURVEYKIT_TEST_DATABASE_URL")
    return url if url and url.startswith("postgresql") else None


def tiny_run(script: str, work: Path) -> tuple[list[str], list[str]]:
    """The command line of a tiny run of ``script`` on the suite's backend, and lines its output
    must contain."""
    admin = postgres_url()
    if script == "bench_sync.py":
        common = ["--seconds", "0.5", "--warmup", "0.2", "--clients", "1,2", "--strict"]
        if admin:
            argv = [*common, "--backends", "postgresql", "--postgres", admin, "--skip-kinto"]
            argv += ["--bare-records", "100"]
            expected = [
                "surveykit PostgreSQL: ",
                "bare psycopg: ",
                "each stored exactly once, as sent",
                "planner statistics:",
                "ANALYZE runs",
                "Kinto skipped (--skip-kinto)",
            ]
        else:
            argv = [*common, "--backends", "sqlite"]
            expected = ["surveykit SQLite: ", "each stored exactly once, as sent"]
        return argv, [*expected, "settings: "]
    if script == "bench_sync_growth.py":
        # PostgreSQL only: the preload is SQL for PostgreSQL, and the growth it measures is its own.
        if not admin:
            return ["--help"], ["--sizes"]
        argv = ["--sizes", "0,300", "--seconds", "0.5", "--warmup", "0.2", "--clients", "2"]
        argv += ["--bare-records", "100", "--postgres", admin, "--explain", "--strict"]
        expected = [
            "preloaded 300 records",
            "surveykit (acknowledged pushes): ",
            "bare insert: ",
            "each stored exactly once, as sent",
            "push-path statements at 300 stored records",
            "CPU per record vs first size",
        ]
        return argv, expected
    if script == "bench_instrument_get.py":
        argv = ["--seconds", "0.3", "--warmup", "0", "--rounds", "1", "--processes", "0"]
        argv += ["--concurrency", "2", "--threads", "2"]
        return argv + (["--postgres", admin] if admin else []), ["api_304 / static"]
    if script == "bench_auth.py":
        argv = ["--rounds", "1", "--seconds", "0.05"]
        backend = "PostgreSQL" if admin else "SQLite"
        return argv + (["--postgres", admin] if admin else []), [f"in-process, {backend}"]
    if script == "bench_export.py":
        argv = ["--participants", "20", "--questions", "4", "--rounds", "1", "--warmup", "0"]
        argv += ["--memory-sizes", "", "--backends", "postgresql" if admin else "sqlite"]
        return argv + (["--postgres", admin] if admin else []), ["ceiling / export"]
    if script == "bench_analysis_exports.py":
        argv = ["--smoke", *(["--postgres", admin] if admin else [])]
        backend = "postgresql" if admin else "sqlite"
        return argv, [
            f"{backend}: one country, 4 long-text questions",
            "CSV rows = Answers rows = 80",
            ".qdpx 60 selections = 20 quotes + 40 codings (refi_read (caps lifted))",
            "checks: every size's CSV matches its Answers sheet",
        ]
    if script == "load_fault.py":
        argv = ["--tablets", "2", "--seconds", "3", "--no-kill", "--no-hostile", "--think", "0.2", "0.4"]
        if admin:
            argv += ["--admin-url", admin]
        else:
            # Two app processes on one SQLite file, as on one PostgreSQL database.
            argv += ["--database-url", f"sqlite:///{work / 'load-fault.sqlite3'}"]
        return argv, ["PASS: wall time"]
    if script == "bench_login_flood.py":
        # Embedded SQLite only, whatever the suite's backend: the stall it measures is SQLite's write lock.
        argv = ["--seconds", "0.5", "--flooders", "2", "--threads", "2", "--warmup-logins", "3"]
        return argv, ["throttled    flood", "unthrottled  flood"]
    if script == "bench_cli_startup.py":
        return ["--runs", "1"], ["surveykit --help", "surveykit --version"]
    if script == "bench_dashboard.py":
        argv = [
            "--countries",
            "3",
            "--interviews",
            "90",
            "--registry-participants",
            "120",
            "--page-size",
            "10",
        ]
        argv += ["--deep-page", "5", "--rounds", "1", "--sizes", "1,2,3", "--tablets", "2"]
        expected = ["same statement count at every size: yes", "registry page     5", "target: dashboard"]
        return argv + (["--postgres", admin] if admin else []), expected
    if script == "bench_json_body.py":
        return ["--records", "3", "--repeat", "2"], ["orjson + counts (now)"]
    if script == "bench_console_pages.py":
        argv = [
            "--countries",
            "3",
            "--interviews",
            "60",
            "--registry",
            "120",
            "--deep-page",
            "2",
            "--rounds",
            "1",
        ]
        return argv + (["--postgres", admin] if admin else []), [
            "statements per dashboard: the same for every number of countries",
            "registry page 2 / page 1",
        ]
    if script == "bench_field_app.py":
        argv = ["--interviews", "12", "--sync", "4", "--keystrokes", "4", "--cpu", "1"]
        return argv + (["--postgres", admin] if admin else []), ["keystroke to local save", "4 created"]
    if script == "bench_studio.py":
        # In-process, no database: the same run on either backend.
        return ["--sizes", "2x3", "--rounds", "1"], [
            "YAML 1.2 + lines ms",
            "XLSForm round trip: every instrument reads back to the same content hash",
        ]
    raise AssertionError(f"bench/{script} has no tiny run here: add one")


def test_every_bench_script_has_a_tiny_run(tmp_path: Path) -> None:
    assert "bench_sync.py" in SCRIPTS and "load_fault.py" in SCRIPTS
    for script in SCRIPTS:
        tiny_run(script, tmp_path)


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_runs_to_the_end(script: str, tmp_path: Path) -> None:
    argv, expected = tiny_run(script, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURVEYKIT_")}
    env["PYTHONUNBUFFERED"] = "1"
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *argv],
        cwd=BENCH.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"bench/{script} exited {done.returncode}:\n{output[-6000:]}"
    for line in expected:
        assert line in output, f"bench/{script}: {line!r} not in its output:\n{output[-6000:]}"
    assert "Traceback" not in output, output[-6000:]
    assert "failed or answered unexpectedly" not in output, output[-6000:]
