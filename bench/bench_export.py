"""How fast a country's consolidated workbook is written, against openpyxl writing the same cells.

Usage (from the project root, on an otherwise idle machine)::

    .venv/bin/python bench/bench_export.py                      # SQLite and PostgreSQL, 5,000 participants
    .venv/bin/python bench/bench_export.py --backends sqlite --rounds 1 --memory-sizes 5000

For each backend the script creates a throwaway database (a SQLite file in a temp folder, or a
database on the PostgreSQL server of ``--postgres``), migrates it, and seeds one country: an
instrument of ``--questions`` long-text questions in six sections and ``--participants`` interviews
of one participant each, every question answered with 50 to 1,500 characters of text. Rows are
inserted with Core bulk inserts in exactly the shape sync stores them (the export reads only the
registry and the interviews table, so the revision history is not seeded).

Then, after ``--warmup`` untimed rounds (default 1: a process's first run of each kind pays for
memory pages it has not touched yet), per round, in the same process:

- ``export``: ``surveykit.exports.services.write_workbook`` end to end (stream from the database,
  lay out, write the .xlsx);
- ``ceiling``: the identical cell matrix (recorded once from an export, held in memory) written
  with openpyxl's write-only mode, the same cells (values, types, styles, widths, panes, filters)
  handed to the sheet writer ready-made: the most this library can do for this workbook;
- ``ceiling, plain append``: the same values passed to ``ws.append`` as plain Python values
  (openpyxl's usual path; no styles);
- ``read only``: the two streams merged and every record's JSON parsed, nothing written.

It prints medians per backend: seconds, data rows per second over all sheets, and the ratio
ceiling / export (target >= 0.9). Peak memory is measured in a separate process per measurement
(``resource.getrusage`` peak RSS of a process that only runs the export) for each size of
``--memory-sizes`` (default 5,000 and 50,000 participants; 50,000 takes a while and a few GB of
disk), on ``--memory-backends``; target: the peak at 50,000 within 1.5x of the peak at 5,000.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness import analyse_seeded  # noqa: E402 - this folder is on sys.path

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
STUDY, COUNTRY, SLUG = "bench", "KE", "bench-ra1"
SECTIONS = ("awareness", "capacity", "budget", "laws", "enforcement", "challenges")
WORDS = (
    "ministry police training budget law grooming live streaming providers data preservation hotline "
    "children parents teachers awareness cooperation referral evidence equipment skills SIM cards "
    "national action plan council regulator unit investigation prosecution partners NGOs survivors "
    "capacity guidelines focal point cases reporting online exploitation abuse platform content"
).split()


# ------------------------------------------------------------------------------------------ data


def instrument(questions: int) -> dict[str, Any]:
    per = -(-questions // len(SECTIONS))
    sections, made = [], 0
    for section in SECTIONS:
        qs = []
        for _ in range(per):
            if made == questions:
                break
            made += 1
            qs.append(
                {"id": f"q{made:03d}", "type": "long_text", "prompt": f"Question {made} about {section}?"}
            )
        if qs:
            sections.append({"id": section, "title": section.title(), "questions": qs})
    return {
        "slug": SLUG,
        "study": STUDY,
        "title": "Benchmark schedule",
        "activity": "RA1",
        "default_language": "en",
        "languages": ["en"],
        "sections": sections,
    }


class Texts:
    """Answer texts of 50 to 1,500 characters cut from one long random text (fast and varied)."""

    def __init__(self, seed: int, min_chars: int, max_chars: int) -> None:
        rng = random.Random(seed)
        self.blob = " ".join(rng.choice(WORDS) for _ in range(400_000))
        self.rng = rng
        self.min_chars, self.max_chars = min_chars, max_chars

    def __call__(self) -> str:
        length = self.rng.randint(self.min_chars, self.max_chars)
        start = self.rng.randrange(0, len(self.blob) - length)
        return self.blob[start : start + length].strip() or "answer"


def create_database(backend: str, admin_url: str, folder: Path) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if backend == "sqlite":
        return f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:8]}.sqlite3'}"
    name = f"bench_export_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str, admin_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if url.startswith("sqlite"):
        Path(make_url(url).database).unlink(missing_ok=True)
        return
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


def interview_record(
    number: int,
    agency: str,
    position: str | None,
    started: datetime,
    answers: dict[str, str],
    quotes: list[dict[str, Any]],
) -> dict[str, Any]:
    """A complete RA1 interview record of the benchmark study, one participant (A)."""
    return {
        "study": STUDY,
        "country": COUNTRY,
        "activity": "RA1",
        "interview_number": number,
        "participants": [{"letter": "A", "agency": agency, "position": position, "consent_given": True}],
        "instrument": {"slug": SLUG, "version": 1},
        "language": "en",
        "mode": ("in_person", "virtual", "phone")[number % 3],
        "started_at": started.isoformat(),
        "ended_at": (started + timedelta(hours=1)).isoformat(),
        "status": "complete",
        "answers": answers,
        "quotes": quotes,
    }


def participant_row(
    study_id: int, number: int, agency: str, position: str | None, now: datetime
) -> dict[str, Any]:
    """The registry row of participant A of an interview, as a push registers it."""
    from surveykit.participants.ids import format_pid

    return dict(
        study_id=study_id,
        activity="RA1",
        country_code=COUNTRY,
        interview_number=number,
        letter="A",
        pid=format_pid("RA1", COUNTRY, number, "A"),
        agency=agency,
        position=position,
        consent_given=True,
        status="interviewed",
        created_at=now,
        updated_at=now,
        created_by="bench",
        change_seq=0,
    )


def interview_row(
    study_id: int, number: int, record: dict[str, Any], user_id: int, now: datetime, interview_uuid: str
) -> dict[str, Any]:
    """The stored row of an interview record at revision 1."""
    from surveykit.sync.validation import content_hash

    return dict(
        uuid=interview_uuid,
        study_id=study_id,
        country_code=COUNTRY,
        activity="RA1",
        interview_number=number,
        revision=1,
        content_hash=content_hash(record),
        record=record,
        status="complete",
        instrument_slug=SLUG,
        instrument_version=1,
        interviewer_id=user_id,
        device_id=None,
        created_at=now,
        updated_at=now,
    )


def seed(
    url: str, participants: int, questions: int, min_chars: int, max_chars: int, seed_value: int
) -> None:
    from sqlalchemy import create_engine, insert
    from sqlalchemy.orm import Session

    from surveykit import migrate
    from surveykit.accounts.models import User
    from surveykit.instruments import services as instruments
    from surveykit.participants.models import Participant
    from surveykit.studies import services as studies
    from surveykit.sync.models import Interview

    engine = create_engine(url)
    migrate.upgrade(engine)
    texts = Texts(seed_value, min_chars, max_chars)
    definition = instruments.validate_definition(instrument(questions))
    qids = [q["id"] for _, q in instruments.iter_questions(definition)]
    start = datetime(2020, 5, 4, 9, 0, tzinfo=UTC)
    with Session(engine) as session:
        study = studies.create_study(session, STUDY, "Benchmark study")
        studies.add_country(session, study, COUNTRY, "Kenya")
        studies.add_activity(session, study, "RA1", "Duty bearers")
        instruments.publish(session, definition, "bench")
        user = User(username="bench-interviewer", active=True)
        session.add(user)
        session.flush()
        study_id, user_id = study.id, user.id
        session.commit()
    batch = 250
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for first in range(1, participants + 1, batch):
            people, interviews = [], []
            for number in range(first, min(first + batch, participants + 1)):
                agency = f"Ministry {number % 37} of {texts()[:40]}"
                position = None if number % 4 == 0 else f"Director {number % 11}"
                started = start + timedelta(days=number % 90, hours=number % 7)
                quote = {
                    "id": str(uuid.uuid4()),
                    "question_id": qids[number % len(qids)],
                    "text": texts()[:120],
                }
                answers = {qid: texts() for qid in qids}
                record = interview_record(number, agency, position, started, answers, [quote])
                people.append(participant_row(study_id, number, agency, position, now))
                interviews.append(interview_row(study_id, number, record, user_id, now, str(uuid.uuid4())))
            connection.execute(insert(Participant), people)
            connection.execute(insert(Interview), interviews)
    analyse_seeded(engine)
    engine.dispose()


# --------------------------------------------------------------------------------------- running


def open_session(url: str) -> tuple[Any, Any]:
    from sqlalchemy.orm import Session

    from surveykit.config import load_settings
    from surveykit.db import make_engine

    settings = load_settings({}, {"SURVEYKIT_DATABASE_URL": url, "SURVEYKIT_DATA_DIR": tempfile.gettempdir()})
    engine = make_engine(settings)
    return engine, Session(engine)


def run_export(url: str, out: Path) -> tuple[float, Any]:
    from surveykit.exports import services

    engine, session = open_session(url)
    try:
        scope = services.resolve_scope(session, STUDY, COUNTRY)
        began = time.perf_counter()
        result = services.write_workbook(session, scope, str(out), "bench")
        return time.perf_counter() - began, result
    finally:
        session.close()
        engine.dispose()


def run_read_only(url: str) -> float:
    from surveykit.exports import services

    engine, session = open_session(url)
    try:
        scope = services.resolve_scope(session, STUDY, COUNTRY)
        began = time.perf_counter()
        pairs = services.rows_in_order(session, scope, with_record=True)
        count = sum(len(row.record["answers"]) for row, _ in pairs)
        assert count > 0
        return time.perf_counter() - began
    finally:
        session.close()
        engine.dispose()


class Matrix:
    """Every sheet of one export as it was handed to the writer: layout, header rows and rows."""

    def __init__(self) -> None:
        self.sheets: list[dict[str, Any]] = []

    @property
    def rows(self) -> int:
        return sum(len(sheet["rows"]) for sheet in self.sheets)


def record_matrix(url: str, out: Path) -> Matrix:
    from surveykit.exports import workbook

    matrix = Matrix()
    original_init, original_append = workbook.SheetWriter.__init__, workbook.SheetWriter.append

    def init(self: Any, book: Any, title: str, columns: Any, header_rows: Any, *args: Any) -> None:
        original_init(self, book, title, columns, header_rows, *args)
        self._recorded = {
            "title": title,
            "columns": list(columns),
            "header_rows": self.header_rows,
            "freeze_columns": self.freeze_columns,
            "autofilter": self.autofilter,
            "rows": [],
        }
        matrix.sheets.append(self._recorded)

    def append(self: Any, values: Any) -> None:
        self._recorded["rows"].append(list(values))
        original_append(self, values)

    workbook.SheetWriter.__init__, workbook.SheetWriter.append = init, append
    try:
        run_export(url, out)
    finally:
        workbook.SheetWriter.__init__, workbook.SheetWriter.append = original_init, original_append
    return matrix


def write_ceiling(matrix: Matrix, out: Path) -> float:
    """The recorded cells, ready-made, through openpyxl's write-only sheet writer."""
    from datetime import date

    from openpyxl.cell import Cell
    from openpyxl.utils import get_column_letter

    from surveykit.exports import workbook as safe

    began = time.perf_counter()
    book = safe.WorkbookWriter()  # only for its workbook and its style definitions
    wb, styles = book.workbook, book._styles
    sheets = []
    for sheet in matrix.sheets:
        ws = wb.create_sheet(sheet["title"])
        for index, column in enumerate(sheet["columns"], 1):
            ws.column_dimensions[get_column_letter(index)].width = (
                column.width or safe.DEFAULT_WIDTHS[column.kind]
            )
        if sheet["header_rows"]:
            ws.freeze_panes = (
                f"{get_column_letter(sheet['freeze_columns'] + 1)}{len(sheet['header_rows']) + 1}"
            )
        ws._values_to_row = safe._cells_to_row
        sheets.append((ws, sheet))
    for ws, sheet in sheets:
        cells: dict[tuple[int, str], Cell] = {}
        kinds = [c.kind if c.kind in (safe.TEXT, safe.LONG) else safe.TEXT for c in sheet["columns"]]

        def cell(
            index: int, style: str, value: Any, data_type: str, cells: dict = cells, ws: Any = ws
        ) -> Cell:
            found = cells.get((index, style))
            if found is None:
                found = cells[(index, style)] = Cell(ws, row=1, column=index + 1)
                found._style = styles[style]
            found._value = value
            found.data_type = data_type
            return found

        for header in sheet["header_rows"]:
            ws.append([None if v is None else cell(i, "header", v, "s") for i, v in enumerate(header)])
        for values in sheet["rows"]:
            row = []
            for index, value in enumerate(values):
                if value is None or value == "":
                    row.append(None)
                elif isinstance(value, str):
                    row.append(cell(index, kinds[index], value, "s"))
                elif isinstance(value, datetime):
                    row.append(cell(index, "datetime", value, "d"))
                elif isinstance(value, date):
                    row.append(cell(index, safe.DATE, value, "d"))
                else:
                    row.append(cell(index, safe.NUMBER, value, "n"))
            ws.append(row)
        if sheet["autofilter"] and sheet["header_rows"]:
            last = get_column_letter(max(1, len(sheet["columns"])))
            top = len(sheet["header_rows"])
            ws.auto_filter.ref = f"A{top}:{last}{top + len(sheet['rows'])}"
    wb.save(str(out))
    return time.perf_counter() - began


def write_plain(matrix: Matrix, out: Path) -> float:
    """The same values through ``ws.append`` as plain Python values (openpyxl's usual path)."""
    from openpyxl import Workbook

    began = time.perf_counter()
    wb = Workbook(write_only=True)
    for sheet in matrix.sheets:
        ws = wb.create_sheet(sheet["title"])
        for header in sheet["header_rows"]:
            ws.append(header)
        for values in sheet["rows"]:
            ws.append(values)
    wb.save(str(out))
    return time.perf_counter() - began


# ---------------------------------------------------------------------------------------- memory


def peak_rss_kib() -> int:
    """The process's peak resident set size so far, in KiB.

    Linux's ``ru_maxrss`` survives ``execve`` (a child started by this script would report the
    parent's peak), so ``VmHWM`` of the process's own memory map is read where it exists.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_memory(url: str, out: str) -> None:
    """Run one export in this (fresh) process and print its peak RSS as JSON."""
    from sqlalchemy import text

    from surveykit.exports import services  # noqa: F401 - imports count in the baseline

    engine, session = open_session(url)
    session.execute(text("SELECT 1"))
    session.close()
    engine.dispose()
    baseline = peak_rss_kib()
    seconds, result = run_export(url, Path(out))
    peak = peak_rss_kib()
    print(
        json.dumps(
            {
                "baseline_kib": baseline,
                "peak_kib": peak,
                "seconds": seconds,
                "participants": result.total.participants,
                "bytes": Path(out).stat().st_size,
            }
        )
    )


def measure_memory(url: str, folder: Path) -> dict[str, Any]:
    out = folder / f"memory-{uuid.uuid4().hex[:6]}.xlsx"
    completed = subprocess.run(
        [sys.executable, __file__, "--child-memory", url, "--child-out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    out.unlink(missing_ok=True)
    if completed.returncode != 0:
        raise RuntimeError(f"memory child failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- main


def measure_speed(backend: str, url: str, rounds: int, warmup: int, work: Path) -> dict[str, Any]:
    print(f"\n{backend}: recording the cell matrix", flush=True)
    matrix = record_matrix(url, work / "record.xlsx")
    # The recorded matrix is millions of objects a real export process does not have: keep the
    # garbage collector from walking them on every full collection during the timed runs.
    gc.collect()
    gc.freeze()
    runs: dict[str, Callable[[], object]] = {
        "export": lambda: run_export(url, work / "export.xlsx"),
        "ceiling": lambda: write_ceiling(matrix, work / "ceiling.xlsx"),
        "plain": lambda: write_plain(matrix, work / "plain.xlsx"),
        "read": lambda: run_read_only(url),
    }
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    for number in range(1, warmup + 1):
        # The first run of each kind pays for memory and temporary-file pages the process has not
        # touched yet (on a virtual machine, often more than a quarter of the time): not timed.
        print(f"{backend}, warm-up {number} (not counted):", flush=True)
        for name, run in runs.items():
            timed(LABELS[name], run)
    for number in range(1, rounds + 1):
        print(f"{backend}, round {number}:", flush=True)
        for name, run in runs.items():
            wall, cpu = timed(LABELS[name], run)
            walls[name].append(wall)
            cpus[name].append(cpu)
    gc.unfreeze()
    return {
        "rows": matrix.rows,
        "bytes": (work / "export.xlsx").stat().st_size,
        "wall": {name: statistics.median(values) for name, values in walls.items()},
        "cpu": {name: statistics.median(values) for name, values in cpus.items()},
        "ratios": [c / e for c, e in zip(walls["ceiling"], walls["export"], strict=True)],
    }


LABELS = {
    "export": "export (end to end)",
    "ceiling": "ceiling (same cells)",
    "plain": "ceiling (plain append)",
    "read": "read only (no writing)",
}


def timed(label: str, action: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of this process (the CPU figure ignores other load on the machine,
    but leaves out the PostgreSQL server's own work)."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"  {label:<26} {wall:8.2f} s wall {cpu:8.2f} s CPU", flush=True)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=5000)
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--min-chars", type=int, default=50)
    parser.add_argument("--max-chars", type=int, default=1500)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL of the PostgreSQL server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before the timed ones")
    parser.add_argument("--memory-sizes", default="5000,50000", help="participants; empty: no memory runs")
    parser.add_argument("--memory-backends", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child-memory", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_memory:
        child_memory(args.child_memory, args.child_out)
        return 0

    backends = [b for b in args.backends.split(",") if b]
    memory_sizes = [int(n) for n in args.memory_sizes.split(",") if n]
    memory_backends = [b for b in args.memory_backends.split(",") if b]
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    created: list[str] = []
    speed: dict[str, dict[str, Any]] = {}
    memory: dict[tuple[str, int], dict[str, Any]] = {}
    seeded: dict[tuple[str, int], str] = {}

    def database(backend: str, participants: int) -> str:
        key = (backend, participants)
        if key not in seeded:
            url = create_database(backend, args.postgres, work)
            created.append(url)
            began = time.perf_counter()
            seed(url, participants, args.questions, args.min_chars, args.max_chars, args.seed)
            print(
                f"seeded {backend} with {participants:,} participants in {time.perf_counter() - began:.0f} s"
            )
            seeded[key] = url
        return seeded[key]

    try:
        for backend in backends:
            speed[backend] = measure_speed(
                backend, database(backend, args.participants), args.rounds, args.warmup, work
            )
        for backend in memory_backends:
            for size in memory_sizes:
                url = database(backend, size)
                print(f"{backend}: peak memory of one export of {size:,} participants", flush=True)
                memory[(backend, size)] = measure_memory(url, work)
    finally:
        for url in created:
            drop_database(url, args.postgres)
        for path in work.iterdir():
            path.unlink(missing_ok=True)
        work.rmdir()

    print(
        f"\nExport of {args.participants:,} participants x {args.questions} questions "
        f"({args.min_chars}-{args.max_chars} characters per answer), medians of {args.rounds} round(s) "
        f"after {args.warmup} warm-up round(s)"
    )
    ratio_head = "ceiling/this"
    header = (
        f"{'backend':<11}{'what':<24}{'wall s':>8}{'rows/s':>9}{ratio_head:>13}{'CPU s':>8}{ratio_head:>13}"
    )
    print(header)
    print("-" * len(header))
    for backend, figures in speed.items():
        wall, cpu = figures["wall"], figures["cpu"]
        for name, label in LABELS.items():
            print(
                f"{backend:<11}{label:<24}{wall[name]:8.2f}{figures['rows'] / wall[name]:9,.0f}"
                f"{wall['ceiling'] / wall[name]:13.3f}{cpu[name]:8.2f}{cpu['ceiling'] / cpu[name]:13.3f}"
            )
        ratio = wall["ceiling"] / wall["export"]
        verdict = "meets" if ratio >= 0.9 else "MISSES"
        rounds = ", ".join(f"{r:.3f}" for r in figures["ratios"])
        print(
            f"{backend:<11}{figures['rows']:,} rows in all sheets, file {figures['bytes'] / 2**20:.0f} MiB; "
            f"ceiling / export {ratio:.3f} ({verdict} >= 0.9; per round: {rounds}); "
            f"read only / export {wall['read'] / wall['export']:.3f}"
        )
    if memory:
        print(f"\n{'backend':<11}{'participants':>13}{'peak RSS MiB':>14}{'after imports':>15}{'seconds':>9}")
        for (backend, size), figures in sorted(memory.items()):
            print(
                f"{backend:<11}{size:>13,}{figures['peak_kib'] / 1024:14.1f}"
                f"{figures['baseline_kib'] / 1024:15.1f}{figures['seconds']:9.1f}"
            )
        for backend in memory_backends:
            sizes = sorted(size for b, size in memory if b == backend)
            if len(sizes) >= 2:
                low, high = memory[(backend, sizes[0])], memory[(backend, sizes[-1])]
                growth = high["peak_kib"] / low["peak_kib"]
                verdict = "meets" if growth <= 1.5 else "MISSES"
                print(f"{backend}: peak at {sizes[-1]:,} / at {sizes[0]:,} = {growth:.2f} ({verdict} <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
