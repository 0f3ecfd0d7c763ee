"""How fast, and in how much memory, a country's analysis exports are written beside its workbook.

Usage (from the project root, on an otherwise idle machine)::

    .venv/bin/python bench/bench_analysis_exports.py                     # SQLite, 5,000 and 50,000
    .venv/bin/python bench/bench_analysis_exports.py --postgres          # the local PostgreSQL
    .venv/bin/python bench/bench_analysis_exports.py --sizes 5000 --postgres postgresql+psycopg://...

For each size of ``--sizes`` (participants) the script creates a throwaway database (a SQLite file
in a temp folder, or with ``--postgres`` a database on that PostgreSQL server, dropped at the end),
migrates it and seeds one country as ``bench_export.py`` does (Core bulk inserts in the shape sync
stores them; ``--questions`` long-text questions, answers of 50 to 1,500 characters), plus what the
analysis exports carry: a codebook of six codes, one quote per interview (a passage of one of its
answers, with offsets and a tag) and ``--codings`` codings per interview on other answers.

Then each export is written once, each in a fresh process of its own that does nothing else, so
the process's peak resident set (``VmHWM``, as ``bench_export.py`` measures it) is that export's:

- ``workbook``: ``exports.services.write_workbook`` (the consolidated .xlsx, with its Codes sheet);
- ``csv``: ``exports.csv_export.write_csv`` (the long CSV for statistics);
- ``sps`` / ``do``: ``exports.stats_syntax.syntax_file`` (the SPSS and Stata syntax that read it);
- ``qdpx``: ``analysis.exchange.write_project_qdpx`` (streamed in batches of interviews).

It prints, per size: seconds, rows (sources for the .qdpx) per second, file size, peak RSS and its
growth over the process's baseline after imports, and the ratios of seconds and peak to the
workbook's in the same run. It checks as it goes: the CSV has one row per answer row of the
workbook's Answers sheet; the workbook's Codes sheet has every coding; the .qdpx has one selection
per quote and coding (re-read with ``refi_read.read_qdpx`` up to ``--reread-max`` participants with
its upload caps lifted, above that by counting the selections of ``project.qde`` with iterparse).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench_export import (  # noqa: E402 - the folder of this script is on sys.path
    COUNTRY,
    DEFAULT_PG,
    STUDY,
    Texts,
    create_database,
    drop_database,
    instrument,
    interview_record,
    interview_row,
    open_session,
    participant_row,
    peak_rss_kib,
)
from harness import analyse_seeded  # noqa: E402 - the folder of this script is on sys.path

KINDS = ("workbook", "csv", "sps", "do", "qdpx")
CODE_NAMES = (("Capacity", None), ("Training", 0), ("Budget", 0), ("Laws", None), ("Gaps", 3), ("Plans", 3))
QUOTE_CHARS = 60
CODING_CHARS = 40


# ------------------------------------------------------------------------------------------ data


def seed(url: str, participants: int, questions: int, codings: int, texts: Texts) -> dict[str, int]:
    """One country of ``participants`` interviews, each with one quote and ``codings`` codings."""
    from sqlalchemy import create_engine, insert
    from sqlalchemy.orm import Session
    from tqdm import tqdm

    from surveykit import migrate
    from surveykit.accounts.models import User
    from surveykit.analysis.models import Code, Coding
    from surveykit.instruments import services as instruments
    from surveykit.participants.models import Participant
    from surveykit.studies import services as studies
    from surveykit.sync.models import Interview

    engine = create_engine(url)
    migrate.upgrade(engine)
    definition = instruments.validate_definition(instrument(questions))
    qids = [q["id"] for _, q in instruments.iter_questions(definition)]
    codings = min(codings, len(qids) - 1)
    start = datetime(2020, 5, 4, 9, 0, tzinfo=UTC)
    now = datetime.now(UTC)
    with Session(engine) as session:
        study = studies.create_study(session, STUDY, "Benchmark study")
        studies.add_country(session, study, COUNTRY, "Kenya")
        studies.add_activity(session, study, "RA1", "Duty bearers")
        instruments.publish(session, definition, "bench")
        user = User(username="bench-coder", active=True)
        session.add(user)
        session.flush()
        code_ids: list[int] = []
        for name, parent in CODE_NAMES:
            code = Code(
                guid=str(uuid.uuid4()),
                study_id=study.id,
                parent_id=None if parent is None else code_ids[parent],
                name=name,
                definition=f"Passages about {name.lower()}",
                created_by="bench",
            )
            session.add(code)
            session.flush()
            code_ids.append(code.id)
        study_id, user_id = study.id, user.id
        session.commit()
    batch = 250
    with (
        engine.begin() as connection,
        tqdm(total=participants, desc="seeding", unit="interview", file=sys.stderr, disable=None) as bar,
    ):
        for first in range(1, participants + 1, batch):
            people, interviews, coded = [], [], []
            for number in range(first, min(first + batch, participants + 1)):
                agency = f"Ministry {number % 37} of {texts()[:40]}"
                position = None if number % 4 == 0 else f"Director {number % 11}"
                started = start + timedelta(days=number % 90, hours=number % 7)
                answers = {qid: texts() for qid in qids}
                interview_uuid = str(uuid.uuid4())
                quoted = qids[number % len(qids)]
                quote_end = min(QUOTE_CHARS, len(answers[quoted]))
                quote = {
                    "id": str(uuid.uuid4()),
                    "question_id": quoted,
                    "participant": "A",
                    "start": 0,
                    "end": quote_end,
                    "text": answers[quoted][:quote_end],
                    "tags": ["bench"],
                }
                record = interview_record(number, agency, position, started, answers, [quote])
                people.append(participant_row(study_id, number, agency, position, now))
                interviews.append(interview_row(study_id, number, record, user_id, now, interview_uuid))
                for index in range(1, codings + 1):
                    qid = qids[(number + index) % len(qids)]
                    end = min(CODING_CHARS, len(answers[qid]))
                    coded.append(
                        dict(
                            guid=str(uuid.uuid4()),
                            study_id=study_id,
                            country_code=COUNTRY,
                            code_id=code_ids[(number + index) % len(code_ids)],
                            interview_uuid=interview_uuid,
                            question_id=qid,
                            quote_id=None,
                            start_offset=0,
                            end_offset=end,
                            text=answers[qid][:end],
                            memo="",
                            coder_id=user_id,
                            coder="bench-coder",
                            anchor="current",
                            anchored_revision=1,
                            created_at=now,
                            updated_at=now,
                        )
                    )
            connection.execute(insert(Participant), people)
            connection.execute(insert(Interview), interviews)
            if coded:
                connection.execute(insert(Coding), coded)
            bar.update(len(people))
    analyse_seeded(engine)
    engine.dispose()
    return {"quotes": participants, "codings": participants * codings}


# --------------------------------------------------------------------------------------- exports


def write_export(kind: str, session: Any, out: Path) -> dict[str, Any]:
    """Write one export of the bench country to ``out``; what it counted."""
    from surveykit.analysis import exchange
    from surveykit.exports import csv_export, services, stats_syntax

    if kind == "qdpx":
        with out.open("w+b") as target:
            stats = exchange.write_project_qdpx(
                session, exchange.resolve_scope(session, STUDY, COUNTRY), target
            )
        return {"units": stats.sources, "selections": stats.selections}
    scope = services.resolve_scope(session, STUDY, COUNTRY)
    if kind == "workbook":
        result = services.write_workbook(session, scope, str(out), "bench")
        return {"units": result.total.participants, "coded": result.coded_passages}
    if kind == "csv":
        with out.open("wb") as target:
            return {"units": csv_export.write_csv(session, scope, target).rows}
    text, _ = stats_syntax.syntax_file(session, scope, kind)
    out.write_text(text, encoding="utf-8")
    return {"units": len(stats_syntax.load_variables(session, scope))}


UNITS = {"workbook": "answer rows", "csv": "rows", "sps": "variables", "do": "variables", "qdpx": "sources"}


def child(kind: str, url: str, out: str) -> None:
    """Write one export in this (fresh) process and print its figures and peak RSS as JSON."""
    from sqlalchemy import text

    from surveykit.analysis import exchange, refi_write  # noqa: F401 - imports count in the baseline
    from surveykit.exports import csv_export, services, stats_syntax  # noqa: F401

    engine, session = open_session(url)
    try:
        session.execute(text("SELECT 1"))
        session.rollback()
        baseline = peak_rss_kib()
        began = time.perf_counter()
        figures = write_export(kind, session, Path(out))
        seconds = time.perf_counter() - began
    finally:
        session.close()
        engine.dispose()
    figures.update(
        seconds=seconds, baseline_kib=baseline, peak_kib=peak_rss_kib(), bytes=Path(out).stat().st_size
    )
    print(json.dumps(figures))


def measure(kind: str, url: str, out: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--child-url", url, "--child-out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{kind} export failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------- checks


def answers_sheet_rows(path: Path) -> int:
    """Data rows of the workbook's Answers sheet (rows whose ID cell is a participant ID)."""
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True)
    try:
        rows = book["Answers"].iter_rows(min_col=1, max_col=1, values_only=True)
        return sum(1 for (value,) in rows if isinstance(value, str) and value.startswith("RA1-"))
    finally:
        book.close()


def csv_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1  # the header


def qdpx_selections(path: Path, reread: bool) -> tuple[int, str]:
    """The selections of the written .qdpx, and how they were counted."""
    if reread:
        from surveykit.analysis import refi_read

        caps = refi_read.MAX_MEMBERS, refi_read.MAX_MEMBER_BYTES, refi_read.MAX_TOTAL_BYTES
        # An upload's caps are for the web; this file is ours and only read back to be counted.
        refi_read.MAX_MEMBERS = refi_read.MAX_MEMBER_BYTES = refi_read.MAX_TOTAL_BYTES = 1 << 40
        try:
            project = refi_read.read_qdpx(path.read_bytes())
        finally:
            refi_read.MAX_MEMBERS, refi_read.MAX_MEMBER_BYTES, refi_read.MAX_TOTAL_BYTES = caps
        return sum(len(source.selections) for source in project.sources), "refi_read (caps lifted)"
    from xml.etree.ElementTree import iterparse

    from surveykit.analysis.refi_model import PROJECT_NAMESPACE
    from surveykit.analysis.refi_write import PROJECT_FILE

    tag = f"{{{PROJECT_NAMESPACE}}}PlainTextSelection"
    count = 0
    with zipfile.ZipFile(path) as archive, archive.open(PROJECT_FILE) as document:
        for _, element in iterparse(document):
            if element.tag == tag:
                count += 1
            element.clear()
    return count, "iterparse of project.qde"


def qdpx_members(path: Path) -> int:
    with zipfile.ZipFile(path) as archive:
        return len(archive.infolist())


# ------------------------------------------------------------------------------------------- main


def run_size(
    size: int, args: argparse.Namespace, backend: str, work: Path, texts: Texts
) -> tuple[dict[str, Any], list[str]]:
    url = create_database(backend, args.postgres or DEFAULT_PG, work)
    try:
        began = time.perf_counter()
        seeded = seed(url, size, args.questions, args.codings, texts)
        print(f"{backend}: seeded {size:,} participants in {time.perf_counter() - began:.0f} s", flush=True)
        figures: dict[str, Any] = {}
        outs: dict[str, Path] = {}
        for kind in KINDS:
            outs[kind] = work / f"{size}-{uuid.uuid4().hex[:6]}.{'xlsx' if kind == 'workbook' else kind}"
            figures[kind] = measure(kind, url, outs[kind])
            done = figures[kind]
            print(f"  {kind:<9}{done['seconds']:8.2f} s  peak {done['peak_kib'] / 1024:8.1f} MiB", flush=True)
    finally:
        drop_database(url, args.postgres or DEFAULT_PG)
    problems: list[str] = []
    answers, rows = answers_sheet_rows(outs["workbook"]), csv_rows(outs["csv"])
    figures["workbook"]["units"] = answers
    if answers != rows or rows != figures["csv"]["units"]:
        problems.append(f"{size}: the CSV has {rows} rows, the Answers sheet {answers}")
    if figures["workbook"]["coded"] != seeded["codings"]:
        problems.append(f"{size}: the Codes sheet has {figures['workbook']['coded']} of {seeded['codings']}")
    expected = seeded["codings"] + seeded["quotes"]
    selections, how = qdpx_selections(outs["qdpx"], size <= args.reread_max)
    if not selections == figures["qdpx"]["selections"] == expected:
        problems.append(f"{size}: the .qdpx has {selections} selections, {expected} quotes and codings")
    members = qdpx_members(outs["qdpx"])
    coded = figures["workbook"]["coded"]
    print(
        f"  checked: CSV rows = Answers rows = {rows:,}; Codes sheet {coded:,} codings; "
        f".qdpx {selections:,} selections = {seeded['quotes']:,} quotes + {seeded['codings']:,} codings "
        f"({how}); {members:,} archive members",
        flush=True,
    )
    for path in outs.values():
        path.unlink(missing_ok=True)
    return figures, problems


def print_table(backend: str, args: argparse.Namespace, results: dict[int, dict[str, Any]]) -> None:
    print(
        f"\n{backend}: one country, {args.questions} long-text questions (50-1,500 characters), one quote "
        f"and {args.codings} codings per interview; each export once, in a fresh process"
    )
    header = (
        f"{'participants':>12} {'export':<9}{'seconds':>9}{'per second':>12} {'unit':<13}{'file MiB':>9}"
        f"{'peak MiB':>9}{'growth MiB':>11}{'s / xlsx':>9}{'peak / xlsx':>12}"
    )
    print(header)
    print("-" * len(header))
    for size, figures in results.items():
        book = figures["workbook"]
        for kind in KINDS:
            done = figures[kind]
            growth = (done["peak_kib"] - done["baseline_kib"]) / 1024
            print(
                f"{size:>12,} {kind:<9}{done['seconds']:9.2f}{done['units'] / done['seconds']:12,.0f} "
                f"{UNITS[kind]:<13}{done['bytes'] / 2**20:9.1f}{done['peak_kib'] / 1024:9.1f}{growth:11.1f}"
                f"{done['seconds'] / book['seconds']:9.2f}{done['peak_kib'] / book['peak_kib']:12.2f}"
            )
    sizes = sorted(results)
    if len(sizes) >= 2:
        low, high = results[sizes[0]], results[sizes[-1]]
        flat = ", ".join(f"{kind} {high[kind]['peak_kib'] / low[kind]['peak_kib']:.2f}" for kind in KINDS)
        print(f"peak at {sizes[-1]:,} / peak at {sizes[0]:,}: {flat} (flat: <= 1.5)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,50000", help="participants, comma-separated")
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--codings", type=int, default=2, help="codings per interview")
    parser.add_argument(
        "--postgres", nargs="?", const=DEFAULT_PG, help="run on PostgreSQL (admin URL; default: local)"
    )
    parser.add_argument(
        "--reread-max",
        type=int,
        default=5000,
        help="re-read the .qdpx with refi_read up to this many participants (slow: schema validation)",
    )
    parser.add_argument("--smoke", action="store_true", help="a tiny run: 20 participants, 4 questions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--child-url", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.child_url, args.child_out)
        return 0
    if args.smoke:
        args.sizes, args.questions = "20", 4
    backend = "postgresql" if args.postgres else "sqlite"
    sizes = [int(n) for n in args.sizes.split(",") if n]
    texts = Texts(args.seed, 50, 1500)
    work = Path(tempfile.mkdtemp(prefix="bench-analysis-exports-"))
    results: dict[int, dict[str, Any]] = {}
    problems: list[str] = []
    try:
        for size in sizes:
            results[size], found = run_size(size, args, backend, work, texts)
            problems += found
    finally:
        for path in work.iterdir():
            path.unlink(missing_ok=True)
        work.rmdir()
    print_table(backend, args, results)
    for problem in problems:
        print(f"CHECK FAILED: {problem}")
    if problems:
        return 1
    print("checks: every size's CSV matches its Answers sheet and its .qdpx has every quote and coding")
    return 0


if __name__ == "__main__":
    sys.exit(main())
