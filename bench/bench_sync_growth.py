"""Push and pull through the sync API as a study's database grows, beside a bare insert of the same size.

A benchmark that prints figures, not a test. On a throwaway PostgreSQL database prepared like
``bench_sync.py``'s (same study, tablets, records and clients), it measures, at each size in
``--sizes`` (records already stored; default 0, 100,000 and 1,000,000):

- surveykit push: ``POST /api/v1/sync``, batches of 25 new records, ``--clients`` tablets at once;
- surveykit pull: one client paging ``GET /api/v1/sync/changes`` from cursor 0 (so at 1,000,000 it
  reads the stored records, not only the fresh ones);
- the bare insert (``bench_sync.BareInsert``): the same records into one table
  (``uuid uuid primary key, record json``) on its own database, holding as many rows.

Between sizes the stored records are added directly in the database (``INSERT ... SELECT`` over
``generate_series``: pushing a million records through the API would take hours here), each as the
push path stores it: the interview, its revision, two quotes, the participant it registers and two
feed entries, with the same JSON text and its content hash. They go to countries the tablets do not
push to, since an interview number is unique per country and below 100,000. After each preload the
database is analysed and vacuumed, as autovacuum would have done while a study grew; during the
windows, ``harness.PlannerStatistics`` keeps the statistics as in ``bench_sync.py``.

It prints, per size: records/s, batch latency, CPU per record of the server process (app) and of
the PostgreSQL backends of its database (db), and the sizes of the tables and indexes; then the
cost at each size relative to the first (target: push CPU per record within 15%), and checks that
every acknowledged record is stored exactly once with the content sent.

    .venv/bin/python bench/bench_sync_growth.py                       # 0, 100k, 1M: about 20 minutes
    .venv/bin/python bench/bench_sync_growth.py --sizes 0,100000 --seconds 5
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_sync as bs
from harness import PlannerStatistics, ThrowawayDatabase

PRELOAD_PER_COUNTRY = 50_000  # interview numbers run to 99,999 per country
TARGET_FLAT = 0.15
TEMPLATE_PLACEHOLDERS = ("@@country@@", str(bs.RecordFactory.NUMBER), "@@quote-0@@", "@@quote-1@@")

# One statement per table, each reading the generated rows of one country from ``preload``.
PRELOAD_ROWS = """
CREATE UNLOGGED TABLE preload AS
SELECT n,
       md5(%(country)s || ':' || n)::uuid::text AS uuid,
       md5(%(country)s || ':q0:' || n)::uuid::text AS q0,
       md5(%(country)s || ':q1:' || n)::uuid::text AS q1,
       'RA1-' || %(country)s || '-' || CASE WHEN n < 10 THEN '0' || n ELSE n::text END || '-A' AS pid,
       %(seq)s::int + 2 * (n - %(first)s::int) - 1 AS seq
FROM generate_series(%(first)s::int + 1, %(first)s::int + %(count)s::int) AS n
"""
PRELOAD_TEXT = """
ALTER TABLE preload ADD COLUMN record text;
UPDATE preload SET record = replace(replace(replace(replace(replace(%(template)s,
    '@@country@@', %(country)s), '-' || %(country)s || '-987654321:',
    '-' || %(country)s || '-' || CASE WHEN n < 10 THEN '0' || n ELSE n::text END || ':'),
    '987654321', n::text),
    '@@quote-0@@', q0), '@@quote-1@@', q1);
ALTER TABLE preload ADD COLUMN hash text;
UPDATE preload SET hash = encode(sha256(convert_to(record, 'UTF8')), 'hex');
"""
PRELOAD_TABLES = """
INSERT INTO interviews (uuid, study_id, country_code, activity, interview_number, revision,
    content_hash, record, status, instrument_slug, instrument_version, interviewer_id, device_id,
    created_at, updated_at)
SELECT uuid, %(study)s, %(country)s, 'RA1', n, 1, hash, record::json, 'complete', %(slug)s, 1,
    %(user)s, NULL, now(), now() FROM preload;
INSERT INTO interview_revisions (interview_uuid, kind, revision, base_revision, content_hash, record,
    user_id, device_id, received_at)
SELECT uuid, 'accepted', 1, 0, hash, record::json, %(user)s, NULL, now() FROM preload;
INSERT INTO quotes (id, interview_uuid, study_id, country_code, revision, question_id, text,
    start_offset, end_offset, tags)
SELECT q.id, p.uuid, %(study)s, %(country)s, 1, q.question_id, q.text, q.start_offset, q.end_offset,
    '["capacity"]'::json
FROM preload p CROSS JOIN LATERAL (VALUES
    (p.q0, %(q0_question)s, %(q0_text)s, %(q0_start)s::int, %(q0_end)s::int),
    (p.q1, %(q1_question)s, %(q1_text)s, %(q1_start)s::int, %(q1_end)s::int)
) AS q(id, question_id, text, start_offset, end_offset);
INSERT INTO participants (study_id, activity, country_code, interview_number, letter, pid, agency,
    position, consent_given, consent_date, consent_recorded_how, status, created_at, updated_at,
    created_by, coordinator_fields, change_seq)
SELECT %(study)s, 'RA1', %(country)s, n, 'A', pid, 'Ministry of Information and Communication Technology',
    'Director of Cyber Security', true, DATE '2026-05-04', 'written_form', 'interviewed', now(), now(),
    %(username)s, '', seq + 1 FROM preload;
INSERT INTO change_log (study_id, seq, country_code, kind, key, at)
SELECT %(study)s, seq, %(country)s, 'interview', uuid, now() FROM preload
UNION ALL
SELECT %(study)s, seq + 1, %(country)s, 'participant', pid, now() FROM preload;
UPDATE study_change_counters SET value = %(seq)s::int + 2 * %(count)s::int WHERE study_id = %(study)s;
DROP TABLE preload;
"""
BARE_PRELOAD = """
INSERT INTO bare_records (uuid, record)
SELECT md5(%(country)s || ':bare:' || n)::uuid, replace(replace(%(template)s,
    '@@country@@', %(country)s), '987654321', n::text)::json
FROM generate_series(%(first)s::int + 1, %(first)s::int + %(count)s::int) AS n
"""
SIZES = """
SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid),
       coalesce((SELECT sum(pg_relation_size(i.indexrelid)) FROM pg_index i WHERE i.indrelid = c.oid), 0)
FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
WHERE s.nspname = 'public' AND c.relkind = 'r' AND c.relname = ANY(%s)
"""
# The push path's statements (as the server sends them) for one batch of fresh records, planned and
# run with EXPLAIN (ANALYZE, BUFFERS) in a transaction that is rolled back.
EXPLAINED = {
    "lock the batch's records": "SELECT * FROM interviews WHERE uuid = ANY(%(uuids)s) ORDER BY uuid "
    "FOR UPDATE",
    "their revision keys": "SELECT interview_uuid, base_revision, content_hash, kind, revision, id, "
    "resolved_at FROM interview_revisions WHERE interview_uuid = ANY(%(uuids)s) "
    "AND content_hash = ANY(%(hashes)s)",
    "taken interview numbers": "SELECT uuid FROM interviews WHERE (study_id, activity, country_code, "
    "interview_number) IN (SELECT study_id, activity, country_code, interview_number FROM interviews "
    "WHERE uuid = ANY(%(uuids)s))",
    "quote owners": "SELECT id, interview_uuid FROM quotes WHERE id = ANY(%(quotes)s)",
    "a revision appended": "INSERT INTO interview_revisions (interview_uuid, kind, revision, base_revision, "
    "content_hash, record, user_id, received_at) SELECT uuid, 'accepted', revision + 1, revision, "
    "md5(content_hash) || md5(uuid), record, interviewer_id, now() FROM interviews "
    "WHERE uuid = ANY(%(uuids)s)",
    "a feed page (cursor 0, 1,001 entries)": "SELECT * FROM change_log WHERE study_id = %(study)s "
    "AND seq > 0 AND (country_code = ANY(%(countries)s) OR country_code IS NULL) ORDER BY seq LIMIT 1001",
}
GROWING_TABLES = ["interviews", "interview_revisions", "quotes", "participants", "change_log"]


def statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";\n") if part.strip()]


def preload_template(factory: bs.RecordFactory) -> str:
    """The canonical record text with the country, number and quote ids left as placeholders."""
    return "".join(factory.pieces)


def country_codes(count: int) -> list[str]:
    """Countries for the preloaded records (never the tablets' KE and TZ)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXY"
    codes = [f"Q{a}" for a in letters] + [f"X{a}" for a in letters]
    return codes[:count]


class Growth:
    """The surveykit and bare-insert databases, grown to each size in turn."""

    def __init__(self, site: bs.SurveykitSite, sk_url: str, bare_url: str, countries: list[str]) -> None:
        self.site = site
        self.sk_url = sk_url
        self.bare_url = bare_url
        self.countries = countries
        self.stored = 0
        self.template = preload_template(site.factory)

    def grow_to(self, size: int) -> float:
        import psycopg

        started = time.monotonic()
        with psycopg.connect(self.sk_url, autocommit=True) as connection:
            study, slug = connection.execute(
                "SELECT s.id, %s FROM studies s WHERE s.slug = %s", (bs.SLUG, bs.STUDY)
            ).fetchone()
            user, username = connection.execute(
                "SELECT id, username FROM users WHERE username = %s", (self.site.devices[0].username,)
            ).fetchone()
            quotes = {}
            for i, (question, text, start, end) in enumerate(self.site.factory.quotes):
                quotes.update(
                    {f"q{i}_question": question, f"q{i}_text": text, f"q{i}_start": start, f"q{i}_end": end}
                )
            while self.stored < size:
                country = self.countries[self.stored // PRELOAD_PER_COUNTRY]
                first = self.stored % PRELOAD_PER_COUNTRY
                count = min(PRELOAD_PER_COUNTRY - first, size - self.stored)
                connection.execute(
                    "INSERT INTO study_change_counters (study_id, value) VALUES (%s, 0) "
                    "ON CONFLICT DO NOTHING",
                    (study,),
                )
                (seq,) = connection.execute(
                    "SELECT value FROM study_change_counters WHERE study_id = %s", (study,)
                ).fetchone()
                params = {
                    "country": country,
                    "count": count,
                    "first": first,
                    "seq": seq,
                    "template": self.template,
                    "study": study,
                    "slug": slug,
                    "user": user,
                    "username": username,
                    **quotes,
                }
                with connection.transaction():
                    for statement in statements(PRELOAD_ROWS + ";" + PRELOAD_TEXT + PRELOAD_TABLES):
                        connection.execute(statement, params)
                with psycopg.connect(self.bare_url, autocommit=True) as bare:
                    bare.execute(BARE_PRELOAD, params)
                self.stored += count
                print(
                    f"    preloaded {self.stored:,} records ({time.monotonic() - started:.0f} s)", flush=True
                )
            for url in (self.sk_url, self.bare_url):
                with psycopg.connect(url, autocommit=True) as vacuum:
                    vacuum.execute("VACUUM ANALYZE")
        return time.monotonic() - started

    def explain(self, acked: list[str]) -> list[list[str]]:
        """Execution time, buffers and constraint-trigger time of each push-path statement."""
        import psycopg

        lines = []
        with psycopg.connect(self.sk_url) as connection:
            uuids = acked[-bs.BATCH_SIZE :]
            study = connection.execute("SELECT id FROM studies WHERE slug = %s", (bs.STUDY,)).fetchone()[0]
            hashes = [
                row[0]
                for row in connection.execute(
                    "SELECT content_hash FROM interviews WHERE uuid = ANY(%s)", (uuids,)
                )
            ]
            quotes = [
                row[0]
                for row in connection.execute(
                    "SELECT id FROM quotes WHERE interview_uuid = ANY(%s)", (uuids,)
                )
            ]
            countries = [*bs.COUNTRIES, *self.countries]
            params = {
                "uuids": uuids,
                "hashes": hashes,
                "quotes": quotes,
                "study": study,
                "countries": countries,
            }
            for label, statement in EXPLAINED.items():
                plan = [
                    row[0] for row in connection.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params)
                ]
                buffers = next((line.strip() for line in plan if "Buffers:" in line), "")
                triggers = sum(
                    float(line.split("time=")[1].split()[0]) for line in plan if line.startswith("Trigger")
                )
                total = next(line.split(":")[1].strip() for line in plan if line.startswith("Execution Time"))
                lines.append(
                    [
                        label,
                        total,
                        f"{triggers:.2f} ms" if triggers else "-",
                        buffers.removeprefix("Buffers: "),
                    ]
                )
            connection.rollback()
        return lines

    def sizes(self) -> dict[str, tuple[int, int, int]]:
        import psycopg

        with psycopg.connect(self.sk_url) as connection:
            return {
                name: (total, heap, indexes)
                for name, total, heap, indexes in connection.execute(SIZES, (GROWING_TABLES,))
            }


def stored_acknowledged(url: str, acked: dict[str, str]) -> bs.Stored:
    """The acknowledged records as stored: copies (revisions) and content hash of each."""
    import psycopg

    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT i.uuid, i.content_hash, (SELECT count(*) FROM interview_revisions r "
            "WHERE r.interview_uuid = i.uuid) FROM interviews i WHERE i.uuid = ANY(%s)",
            (list(acked),),
        )
        return bs.stored_surveykit(rows)


def stored_bare_acknowledged(url: str, acked: dict[str, str]) -> bs.Stored:
    import psycopg

    stored: bs.Stored = {}
    with psycopg.connect(url) as connection:
        for record_uuid, text in connection.execute(
            "SELECT uuid, record::text FROM bare_records WHERE uuid = ANY(%s::uuid[])", (list(acked),)
        ):
            key = str(record_uuid)
            copies = stored.get(key, (0, ""))[0] + 1
            stored[key] = (copies, hashlib.sha256(text.encode("utf-8")).hexdigest())
    return stored


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="0,100000,1000000", help="stored records at each step (default 0,100000,1000000)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per scenario (default 10)")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured lead-in per scenario (default 3)"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent push clients (default 8)")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads (default 8)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="surveykit server processes on the database, clients spread over them in turn (default 1)",
    )
    parser.add_argument(
        "--max-records", type=int, default=20_000, help="per client and window (default 20000)"
    )
    parser.add_argument(
        "--bare-records",
        type=int,
        help="records the bare clients generate per window (default 12,000 per second)",
    )
    parser.add_argument("--postgres", default=bs.DEFAULT_POSTGRES_URL, metavar="ADMIN_URL")
    parser.add_argument(
        "--explain", action="store_true", help="print EXPLAIN ANALYZE figures of the push path at each size"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 on errors or a record not stored once")
    args = parser.parse_args(argv)
    try:
        args.size_list = sorted({int(part) for part in args.sizes.split(",") if part.strip()})
    except ValueError:
        parser.error("--sizes takes numbers such as 0,100000")
    if not args.size_list or args.size_list[0] < 0:
        parser.error("--sizes: at least one size, none negative")
    if args.size_list[-1] > PRELOAD_PER_COUNTRY * len(country_codes(50)):
        parser.error(f"--sizes: at most {PRELOAD_PER_COUNTRY * len(country_codes(50)):,}")
    if args.processes < 1:
        parser.error("--processes: at least 1")
    if args.bare_records is None:
        args.bare_records = int(12_000 * (args.warmup + args.seconds)) + 1_000
    args.client_counts = [args.clients]
    args.analyze = "auto"
    return args


def fmt_mb(size: int) -> str:
    return f"{size / 1048576:,.0f}"


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    env = bs.child_env()
    env["SURVEYKIT_ACCESS_TOKEN_SECONDS"] = "86400"
    env["SURVEYKIT_ENROLMENT_CODE_SECONDS"] = "3600"
    env["SURVEYKIT_BLOCK_SIZE"] = str(bs.BLOCK_SIZE)
    env["SURVEYKIT_MAX_UNUSED_NUMBERS"] = "100000"
    env["SURVEYKIT_ACTIVATION_RATE_LIMIT"] = env["SURVEYKIT_LOGIN_RATE_LIMIT"] = "100000"
    print(
        f"sizes {args.size_list}; {args.clients} push clients, batches of {bs.BATCH_SIZE}; "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s per scenario; {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}"
    )
    print("load average at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    # Small sizes (the smoke run) are spread over as few countries as the per-country cap allows.
    needed = -(-args.size_list[-1] // PRELOAD_PER_COUNTRY)
    countries = country_codes(max(1, needed))
    rows: list[tuple[int, str, bs.Row]] = []
    table_sizes: list[tuple[int, dict[str, tuple[int, int, int]]]] = []
    statistics = PlannerStatistics(args.postgres, enabled=True)
    print(f"  {statistics.mode()}")
    ok = True
    with (
        ThrowawayDatabase(args.postgres, "grow") as sk_db,
        ThrowawayDatabase(args.postgres, "bare") as bare_db,
    ):
        base = [bs.surveykit_command(), "--data-dir", str(workdir / "pg-data"), "--database-url", sk_db.url]
        site = bs.SurveykitSite("PostgreSQL", base, env, workdir, args.threads, args.processes)
        site.database = (args.postgres, sk_db.name)
        site.prepare(args.clients)
        bs.run_cli_batch(
            base,
            [
                (
                    [
                        "studies",
                        "add-country",
                        bs.STUDY,
                        code,
                        "--name",
                        f"Preload {code}",
                        "--language",
                        "en",
                    ],
                    None,
                )
                for code in countries
            ],
            env,
        )
        bare = bs.BareInsert(bare_db.libpq_url(), bs.CpuMeter(None, args.postgres, bare_db.name))
        growth = Growth(site, sk_db.libpq_url(), bare_db.libpq_url(), countries)
        statistics.add("surveykit", sk_db.url)
        statistics.add("bare", bare_db.url)
        site.start()
        offset = 1
        try:
            rate: float | None = None
            for size in args.size_list:
                if size > growth.stored:
                    statistics.stop()
                    seconds = growth.grow_to(size)
                    print(f"  {size:,} records stored ({seconds:.0f} s to preload, vacuum and analyse)")
                statistics.analyse_now("surveykit")
                statistics.analyse_now("bare")
                statistics.start()
                push = bs.Row("surveykit push", "push", args.clients, site.push(args.clients, args, rate))
                rate = max(rate or 0.0, push.rate * 2)
                bs.report_row(push)
                rows.append((size, "push", push))
                floor = bs.Row("bare insert", "insert", args.clients, bare.push(args.clients, args, offset))
                offset += args.clients * max(bs.BATCH_SIZE, args.bare_records // args.clients)
                bs.report_row(floor)
                rows.append((size, "bare", floor))
                pull = bs.Row("surveykit pull", "pull", 1, site.pull(args))
                bs.report_row(pull)
                rows.append((size, "pull", pull))
                table_sizes.append((size, growth.sizes()))
                if args.explain:
                    print(
                        f"  push-path statements at {size:,} stored records (EXPLAIN ANALYZE, rolled back):"
                    )
                    bs.print_table(
                        ["statement", "execution", "FK triggers", "buffers"],
                        growth.explain(list(site.acked)),
                        "lrrl",
                    )
        finally:
            statistics.stop()
            site.stop()
        print(f"  ANALYZE runs (database and tables): {statistics.summary()}")
        ok &= bs.check_stored(
            "surveykit (acknowledged pushes)", site.acked, stored_acknowledged(growth.sk_url, site.acked)
        )
        ok &= bs.check_stored(
            "bare insert", bare.acked, stored_bare_acknowledged(growth.bare_url, bare.acked)
        )
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print()
    report(rows, table_sizes)
    errors = sum(row.tally.errors for _, _, row in rows)
    if errors:
        print(f"\n{errors} record(s) or page(s) failed")
    return 1 if args.strict and (errors or not ok) else 0


def cpu(row: bs.Row) -> tuple[float | None, float | None]:
    n = row.tally.all_records
    app = row.tally.app_cpu * 1000 / n if n and row.tally.app_cpu is not None else None
    db = row.tally.db_cpu * 1000 / n if n and row.tally.db_cpu is not None else None
    return app, db


def report(rows: list[tuple[int, str, bs.Row]], table_sizes: list[tuple[int, dict[str, Any]]]) -> None:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = []
    for size, _kind, row in rows:
        app, db = cpu(row)
        total = (app or 0.0) + (db or 0.0) if db is not None else None
        lines.append(
            [
                f"{size:,}",
                row.system,
                f"{row.tally.records:,}",
                f"{row.rate:,.0f}",
                num(app),
                num(db),
                num(total),
            ]
        )
    bs.print_table(
        ["stored", "scenario", "records", "records/s", "app ms/rec", "db ms/rec", "app+db ms/rec"],
        lines,
        "llrrrrr",
    )
    print("(8 push clients unless said; pull: one client from cursor 0, records/s counts interview records)")
    print()
    size_lines = []
    for size, tables in table_sizes:
        for name in GROWING_TABLES:
            total, heap, indexes = tables.get(name, (0, 0, 0))
            size_lines.append(
                [f"{size:,}", name, fmt_mb(heap), fmt_mb(total - heap - indexes), fmt_mb(indexes)]
            )
    bs.print_table(["stored", "table", "heap MB", "TOAST MB", "indexes MB"], size_lines, "llrrr")
    print()
    first: dict[str, bs.Row] = {}
    ratio_lines = []
    for size, kind, row in rows:
        first.setdefault(kind, row)
        base = first[kind]
        app, db = cpu(row)
        app0, db0 = cpu(base)
        cost = (app or 0) + (db or 0)
        cost0 = (app0 or 0) + (db0 or 0)
        growth = cost / cost0 if cost0 else None
        rate = row.rate / base.rate if base.rate else None
        verdict = ""
        if kind == "push" and growth is not None and row is not base:
            verdict = "flat (within 15%)" if growth <= 1 + TARGET_FLAT else "NOT flat"
        ratio_lines.append(
            [
                f"{size:,}",
                kind,
                "-" if rate is None else f"{rate:.2f}",
                "-" if growth is None else f"{growth:.2f}",
                verdict,
            ]
        )
    bs.print_table(
        ["stored", "scenario", "records/s vs first size", "CPU per record vs first size", "target"],
        ratio_lines,
        "llrrl",
    )
    push_rows = {size: row for size, kind, row in rows if kind == "push"}
    bare_rows = {size: row for size, kind, row in rows if kind == "bare"}
    ratios = [
        f"{size:,}: {push_rows[size].rate / bare_rows[size].rate:.2f}"
        for size in push_rows
        if size in bare_rows and bare_rows[size].rate
    ]
    print(f"surveykit push / bare insert, same size: {'; '.join(ratios)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="surveykit-bench-growth-") as tmp:
        try:
            return benchmark(args, Path(tmp))
        except RuntimeError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
