"""How long the progress dashboard's summary and the registry's pages take on a large study.

Usage (from the project root, on an otherwise idle machine)::

    .venv/bin/python bench/bench_dashboard.py                        # SQLite in a temp folder
    .venv/bin/python bench/bench_dashboard.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres

The script migrates a throwaway database (a SQLite file, or a database created on the PostgreSQL
server of ``--postgres`` and dropped at the end) and writes rows straight into it with Core bulk
inserts, in the shape sync and the registry store them:

- ``--countries`` countries (20) with research activities RA1 to RA3, and ``--interviews`` interview
  records (50,000) spread over them, one participant each in the registry, records of about
  ``--record-chars`` characters (4,000), one accepted revision each; some drafts, some withdrawn
  participants, some planned interviews without a record yet;
- per country, open record conflicts and field conflicts, and ``--tablets`` tablets (3) with number
  blocks, some released;
- one more country holding ``--registry-participants`` planned participants (50,000) for the
  registry's pages.

Then it measures, after one untimed warm-up, the median of ``--rounds`` runs (5) of:

- ``study_progress()`` and its ``to_json()`` (what ``GET /api/v1/studies/{study}/progress`` does,
  without HTTP) for the first 2, 10 and 20 countries (``--sizes``), with the number of SQL
  statements each run sent: the same at every size, or the script fails;
- ``participant_page()`` of the registry country at page 1 and page 1,000 (pages of ``--page-size``,
  50; the keyset cursor of page 1,000 found beforehand), and a walk through every page.

Target (issue 16): the dashboard within 300 ms of server time for 20 countries and 50,000
interviews. The script prints the figures and whether the target is met; the exit status is 1 only
when the statement count differs between sizes (2 when the benchmark could not run).
"""

from __future__ import annotations

import argparse
import statistics
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DatabaseUnavailable, ThrowawayDatabase, analyse_seeded  # noqa: E402

STUDY = "bench"
ACTIVITIES = ("RA1", "RA2", "RA3")
REGISTRY_COUNTRY = "ZZ"
TARGET_MS = 300.0
BATCH = 1000


def country_codes(count: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXY"
    return [a + b for a in letters for b in letters][:count]


class Counter:
    """Counts the SQL statements sent through an engine while it is on."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.count += 1


def seed(engine: Any, args: argparse.Namespace, codes: list[str]) -> None:
    from sqlalchemy import insert
    from sqlalchemy.orm import Session
    from tqdm import tqdm

    from surveykit import migrate
    from surveykit.accounts.models import Device, User
    from surveykit.participants.ids import format_pid
    from surveykit.participants.models import NumberBlock, Participant
    from surveykit.studies import services as studies
    from surveykit.sync.models import FieldConflict, Interview, InterviewRevision

    migrate.upgrade(engine)
    now = datetime.now(UTC)
    with Session(engine) as session:
        study = studies.create_study(session, STUDY, "Benchmark study")
        for code in [*codes, REGISTRY_COUNTRY]:
            studies.add_country(session, study, code, f"Country {code}")
        for activity in ACTIVITIES:
            studies.add_activity(session, study, activity, f"Activity {activity}")
        user = User(username="bench-fieldworker", active=True)
        session.add(user)
        session.flush()
        study_id, user_id = study.id, user.id
        session.commit()

    padding = "x" * max(0, args.record_chars - 300)
    per_key = max(1, -(-args.interviews // (len(codes) * len(ACTIVITIES))))
    progress = tqdm(
        total=args.interviews + args.registry_participants, desc="seeding", unit="row", leave=False
    )
    with engine.begin() as connection:
        people: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        revisions: list[dict[str, Any]] = []

        def flush() -> None:
            if people:
                connection.execute(insert(Participant), people)
            if records:
                connection.execute(insert(Interview), records)
            if revisions:
                connection.execute(insert(InterviewRevision), revisions)
            progress.update(len(people))
            people.clear()
            records.clear()
            revisions.clear()

        made = 0
        interview_uuids: dict[str, list[str]] = {code: [] for code in codes}
        participant_ids: dict[str, list[int]] = {code: [] for code in codes}
        next_id = 1
        for code in codes:
            for activity in ACTIVITIES:
                for number in range(1, per_key + 1):
                    if made >= args.interviews:
                        break
                    made += 1
                    status = "withdrawn" if number % 40 == 0 else "interviewed"
                    people.append(
                        dict(
                            id=next_id,
                            study_id=study_id,
                            activity=activity,
                            country_code=code,
                            interview_number=number,
                            letter="A",
                            pid=format_pid(activity, code, number, "A"),
                            agency=f"Ministry {number % 37}",
                            position=None if number % 3 else f"Director {number % 11}",
                            status=status,
                            created_at=now,
                            updated_at=now,
                            created_by="bench",
                            coordinator_fields="",
                            change_seq=0,
                        )
                    )
                    participant_ids[code].append(next_id)
                    next_id += 1
                    record_uuid = str(uuid.uuid4())
                    interview_uuids[code].append(record_uuid)
                    record = {"study": STUDY, "country": code, "activity": activity, "notes": padding}
                    record_status = "draft" if number % 9 == 0 else "complete"
                    records.append(
                        dict(
                            uuid=record_uuid,
                            study_id=study_id,
                            country_code=code,
                            activity=activity,
                            interview_number=number,
                            revision=1,
                            content_hash="0" * 64,
                            record=record,
                            status=record_status,
                            instrument_slug="bench-ra1",
                            instrument_version=1,
                            interviewer_id=user_id,
                            device_id=None,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    revisions.append(
                        dict(
                            interview_uuid=record_uuid,
                            kind="accepted",
                            revision=1,
                            base_revision=0,
                            content_hash=uuid.uuid4().hex * 2,
                            record={"r": 1},
                            user_id=user_id,
                            received_at=now,
                        )
                    )
                    if len(people) >= BATCH:
                        flush()
                # Planned interviews without a record yet.
                for number in range(per_key + 1, per_key + 6):
                    people.append(
                        dict(
                            id=next_id,
                            study_id=study_id,
                            activity=activity,
                            country_code=code,
                            interview_number=number,
                            letter="A",
                            pid=format_pid(activity, code, number, "A"),
                            agency="Planned ministry",
                            position=None,
                            status="planned",
                            created_at=now,
                            updated_at=now,
                            created_by="bench",
                            coordinator_fields="",
                            change_seq=0,
                        )
                    )
                    next_id += 1
        for number in range(1, args.registry_participants + 1):
            activity = ACTIVITIES[(number - 1) * len(ACTIVITIES) // max(1, args.registry_participants)]
            people.append(
                dict(
                    id=next_id,
                    study_id=study_id,
                    activity=activity,
                    country_code=REGISTRY_COUNTRY,
                    interview_number=number,
                    letter="A",
                    pid=format_pid(activity, REGISTRY_COUNTRY, number, "A"),
                    agency=f"Agency {number % 97}",
                    position=None,
                    status="planned",
                    created_at=now,
                    updated_at=now,
                    created_by="bench",
                    coordinator_fields="",
                    change_seq=0,
                )
            )
            next_id += 1
            if len(people) >= BATCH:
                flush()
        flush()
        progress.close()

        devices, blocks, conflicts, field_conflicts = [], [], [], []
        for code in codes:
            for n in range(args.tablets):
                device_id = str(uuid.uuid4())
                devices.append(
                    dict(
                        id=device_id,
                        user_id=user_id,
                        label=f"{code} tablet {n + 1}",
                        scope=[{"study_id": study_id, "countries": [code]}],
                        enrolled_by="bench",
                        created_at=now,
                        activated_at=now,
                        last_seen_at=now - timedelta(hours=n),
                        revoked_at=now if n == args.tablets - 1 and n > 0 else None,
                    )
                )
                for k, released in enumerate((False, False, True)):
                    first = per_key + 10 + (n * 3 + k) * 10
                    blocks.append(
                        dict(
                            device_id=device_id,
                            study_id=study_id,
                            activity="RA1",
                            country_code=code,
                            first_number=first,
                            last_number=first + 9,
                            created_at=now,
                            released_at=now if released else None,
                        )
                    )
            for record_uuid in interview_uuids[code][:3]:
                conflicts.append(
                    dict(
                        interview_uuid=record_uuid,
                        kind="conflict",
                        revision=None,
                        base_revision=0,
                        content_hash=uuid.uuid4().hex * 2,
                        record={"r": 2},
                        user_id=user_id,
                        received_at=now,
                    )
                )
            for participant_id, record_uuid in zip(
                participant_ids[code][:2], interview_uuids[code][:2], strict=False
            ):
                field_conflicts.append(
                    dict(
                        participant_id=participant_id,
                        field="agency",
                        incoming_value="Old ministry",
                        base_value=None,
                        registry_value="New ministry",
                        interview_uuid=record_uuid,
                        revision=1,
                        user_id=user_id,
                        received_at=now,
                    )
                )
        connection.execute(insert(Device), devices)
        connection.execute(insert(NumberBlock), blocks)
        if conflicts:
            connection.execute(insert(InterviewRevision), conflicts)
        if field_conflicts:
            connection.execute(insert(FieldConflict), field_conflicts)
    analyse_seeded(engine)


def median_ms(rounds: int, action: Callable[[], object]) -> tuple[float, Any]:
    action()  # warm-up: caches, prepared statements
    times = []
    result = None
    for _ in range(rounds):
        started = time.perf_counter()
        result = action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def measure(url: str, args: argparse.Namespace, codes: list[str]) -> int:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from surveykit.participants import services as registry
    from surveykit.studies import services as studies
    from surveykit.studies.progress import study_progress

    engine = create_engine(url)
    started = time.perf_counter()
    seed(engine, args, codes)
    print(
        f"seeded in {time.perf_counter() - started:.1f} s: "
        f"{len(codes)} countries, {args.interviews:,} interviews"
    )
    counter = Counter(engine)
    counts: dict[int, int] = {}
    timings: dict[int, float] = {}
    with Session(engine) as session:
        for size in args.sizes:
            chosen = codes[:size]

            def dashboard(chosen: list[str] = chosen) -> dict[str, Any]:
                session.expire_all()
                return study_progress(session, STUDY, chosen).to_json()

            counter.count = 0
            body = dashboard()
            counts[size] = counter.count
            timings[size], body = median_ms(args.rounds, dashboard)
            records = sum(a["drafts"] + a["complete"] for c in body["countries"] for a in c["activities"])
            assert len(body["countries"]) == size, body
            print(
                f"study_progress  {size:>3} countries  {records:>7,} records  "
                f"median {timings[size]:7.1f} ms  {counts[size]} SQL statements"
            )

        study = studies.get_study(session, STUDY)
        size = args.page_size
        cursors: list[str | None] = [None]
        walk_started = time.perf_counter()
        pages = 0
        while True:
            page = registry.participant_page(session, study, REGISTRY_COUNTRY, after=cursors[-1], limit=size)
            pages += 1
            session.expunge_all()
            if page.next_after is None:
                break
            cursors.append(page.next_after)
        walk_s = time.perf_counter() - walk_started
        target_page = min(args.deep_page, len(cursors))
        for number in sorted({1, target_page}):
            cursor = cursors[number - 1]

            def fetch(cursor: str | None = cursor) -> int:
                session.expunge_all()
                return len(
                    registry.participant_page(
                        session, study, REGISTRY_COUNTRY, after=cursor, limit=size
                    ).participants
                )

            ms, rows = median_ms(args.rounds, fetch)
            print(f"registry page {number:>5} ({size} per page)  median {ms:7.2f} ms  {rows} rows")
        print(
            f"registry walk: {pages:,} pages of {size} "
            f"({args.registry_participants:,} participants) in {walk_s:.2f} s"
        )
    engine.dispose()

    same = len(set(counts.values())) == 1
    print(f"same statement count at every size: {'yes' if same else 'NO'} ({counts})")
    largest = max(args.sizes)
    verdict = "met" if timings[largest] <= TARGET_MS else "MISSED"
    print(
        f"target: dashboard <= {TARGET_MS:.0f} ms at {largest} countries / {args.interviews:,} interviews: "
        f"{timings[largest]:.1f} ms, {verdict}"
    )
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres", metavar="URL", help="admin URL of a PostgreSQL server (default: SQLite)"
    )
    parser.add_argument("--countries", type=int, default=20)
    parser.add_argument("--interviews", type=int, default=50_000)
    parser.add_argument("--record-chars", type=int, default=4_000)
    parser.add_argument("--tablets", type=int, default=3, help="per country")
    parser.add_argument("--registry-participants", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--deep-page", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="2,10,20", help="numbers of countries to summarise")
    args = parser.parse_args(argv)
    args.sizes = [int(size) for size in args.sizes.split(",") if size]
    if not args.sizes or max(args.sizes) > args.countries or min(args.sizes) < 1:
        parser.error("--sizes must be between 1 and --countries")
    codes = country_codes(args.countries)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"backend: {backend}; rounds: {args.rounds} (median, after one warm-up)")
    if args.postgres:
        try:
            with ThrowawayDatabase(args.postgres, "dashboard") as database:
                return measure(database.url, args, codes)
        except DatabaseUnavailable as exc:
            print(exc, file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as folder:
        return measure(f"sqlite:///{Path(folder) / 'dashboard.sqlite3'}", args, codes)


if __name__ == "__main__":
    sys.exit(main())
