"""The coordinators' console pages as rendered: the progress dashboard and the registry's pages.

A benchmark that prints figures, not a test. A study of ``--countries`` countries with
``--interviews`` synced interviews spread over them (one registry participant each, a tablet with a
number block in each country, an open conflict in each), and one more country holding a registry of
``--registry`` participants. Pages are requested in-process through the whole application (sign-in
cookie, security policy, view, template) and timed from request to rendered response: that is the
server's time, without the network. Every SQL statement the page runs is counted.

- The dashboard, signed in as people whose grants cover 1, 5 and all of the countries: the statement
  count must be the same for all three (it must not grow with the number of countries); target
  <= 300 ms for all the countries.
- The registry: page 1 and page ``--deep-page`` (50 participants a page, keyset paging: the deep page
  must cost about what the first does).

    .venv/bin/python bench/bench_console_pages.py                 # embedded SQLite, temporary folder
    .venv/bin/python bench/bench_console_pages.py --postgres      # a throwaway PostgreSQL database
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid as uuid_module
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert
from webob import Request

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from surveykit import make_app, migrate  # noqa: E402
from surveykit.accounts import browser  # noqa: E402
from surveykit.accounts import services as accounts  # noqa: E402
from surveykit.accounts.models import Device  # noqa: E402
from surveykit.accounts.tokens import TokenSettings  # noqa: E402
from surveykit.config import load_settings  # noqa: E402
from surveykit.db import make_engine, make_session_factory, utcnow  # noqa: E402
from surveykit.participants import ids  # noqa: E402
from surveykit.participants.models import InterviewNumberCounter, NumberBlock, Participant  # noqa: E402
from surveykit.studies import services as studies  # noqa: E402
from surveykit.sync.models import Interview, InterviewRevision  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
STUDY = "bench"
REGISTRY_COUNTRY = "RG"
PAGE_SIZE = 50  # surveykit.console.registry.REGISTRY_PAGE
TARGET_MS = 300.0
CHUNK = 5_000


def country_codes(count: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    codes = [a + b for a in "KLMNPQSTVW" for b in letters]
    return codes[:count]


def chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def load(settings: dict[str, Any], countries: list[str], interviews: int, registry: int) -> dict[str, Any]:
    """The study, its data and the people whose pages are measured; their cookies."""
    engine = make_engine(settings)
    migrate.upgrade(engine)
    session = make_session_factory(engine)()
    policy = accounts.AccountPolicy.from_settings(settings)
    tokens = TokenSettings.from_settings(settings)
    with session.begin():
        study = studies.create_study(session, STUDY, "Benchmark study")
        for code in [*countries, REGISTRY_COUNTRY]:
            studies.add_country(session, study, code, f"Country {code}")
        studies.add_activity(session, study, "RA1", "Duty bearers")
        owner = accounts.create_user(session, "bench-walker", None, policy)
        accounts.add_grant(session, owner, "fieldworker", STUDY, None, "bench")
        people = {}
        for size in sorted({1, min(5, len(countries)), len(countries)}):
            user = accounts.create_user(session, f"bench-coord-{size}", None, policy)
            accounts.add_grant(session, user, "coordinator", STUDY, countries[:size], "bench")
            people[size] = user
        registrar = accounts.create_user(session, "bench-registrar", None, policy)
        accounts.add_grant(session, registrar, "coordinator", STUDY, [REGISTRY_COUNTRY], "bench")
        session.flush()
        now = utcnow()
        per_country = [
            interviews // len(countries) + (1 if i < interviews % len(countries) else 0)
            for i in range(len(countries))
        ]
        interview_rows, participant_rows, revision_rows = [], [], []
        for code, count in zip(countries, per_country, strict=True):
            for number in range(1, count + 1):
                uuid = str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, f"bench/{code}/{number}"))
                interview_rows.append(
                    {
                        "uuid": uuid,
                        "study_id": study.id,
                        "country_code": code,
                        "activity": "RA1",
                        "interview_number": number,
                        "revision": 1,
                        "content_hash": "0" * 64,
                        "record": {},
                        "status": "complete" if number % 3 else "draft",
                        "instrument_slug": "bench",
                        "instrument_version": 1,
                        "interviewer_id": owner.id,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                participant_rows.append(_participant(study.id, code, number, "interviewed", now))
                if number == 1:  # an open conflict per country
                    revision_rows.append(
                        {
                            "interview_uuid": uuid,
                            "kind": "conflict",
                            "revision": None,
                            "base_revision": 0,
                            "content_hash": "1" * 64,
                            "record": {},
                            "user_id": owner.id,
                            "received_at": now,
                        }
                    )
            # Planned interviews not synced yet.
            for number in range(count + 1, count + 1 + max(1, count // 10)):
                participant_rows.append(_participant(study.id, code, number, "planned", now))
        for number in range(1, registry + 1):
            participant_rows.append(_participant(study.id, REGISTRY_COUNTRY, number, "planned", now))
        for rows, table in (
            (interview_rows, Interview.__table__),
            (participant_rows, Participant.__table__),
            (revision_rows, InterviewRevision.__table__),
        ):
            for chunk in chunks(rows):
                session.execute(insert(table), chunk)
        counters = {}
        for row in participant_rows:
            key = (row["country_code"], row["activity"])
            counters[key] = max(counters.get(key, 0), row["interview_number"])
        for (code, activity), last in counters.items():
            session.execute(
                insert(InterviewNumberCounter).values(
                    study_id=study.id, activity=activity, country_code=code, next_number=last + 1
                )
            )
        for code in countries:
            device = Device(
                id=f"00000000-0000-4000-8000-0000000000{countries.index(code):02d}",
                user_id=owner.id,
                label=f"{code} tablet",
                scope=[{"study_id": study.id, "countries": [code]}],
                enrolled_by="bench",
                created_at=now,
                activated_at=now,
                last_seen_at=now,
            )
            session.add(device)
            session.flush()
            first = ids.allocate_interview_numbers(session, study.id, "RA1", code, 10).start
            session.add(
                NumberBlock(
                    device_id=device.id,
                    study_id=study.id,
                    activity="RA1",
                    country_code=code,
                    first_number=first,
                    last_number=first + 9,
                    created_at=now,
                )
            )
        cookies = {size: _cookie(session, tokens, policy, settings, user) for size, user in people.items()}
        cookies["registry"] = _cookie(session, tokens, policy, settings, registrar)
    session.close()
    return {"engine": engine, "cookies": cookies}


def _participant(study_id: int, code: str, number: int, status: str, now: Any) -> dict[str, Any]:
    return {
        "study_id": study_id,
        "activity": "RA1",
        "country_code": code,
        "interview_number": number,
        "letter": "A",
        "pid": ids.format_pid("RA1", code, number, "A"),
        "agency": f"Ministry number {number % 97}",
        "position": None,
        "status": status,
        "created_at": now,
        "updated_at": now,
        "created_by": "bench",
        "coordinator_fields": "",
        "change_seq": 0,
    }


def _cookie(session: Any, tokens: TokenSettings, policy: Any, settings: dict[str, Any], user: Any) -> str:
    pair = accounts.start_session(session, user, tokens, policy)
    value, _ = browser.issue_cookie_value(
        tokens,
        user_id=user.id,
        session_id=pair.session_id,
        now=utcnow(),
        lifetime_seconds=settings["surveykit.refresh_token_seconds"],
    )
    return f"{browser.COOKIE_NAME}={value}"


class StatementCounter:
    def __init__(self, engine: Any) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.count += 1

    @contextmanager
    def counting(self) -> Iterator[list[int]]:
        found = [0]
        start = self.count
        yield found
        found[0] = self.count - start


def render(app: Any, path: str, cookie: str, expect: str) -> float:
    """Seconds from request to rendered page."""
    request = Request.blank(path, headers={"Cookie": cookie, "Accept": "text/html"})
    started = time.perf_counter()
    response = request.get_response(app)
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or expect not in response.text:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:300]!r}")
    return elapsed


def measure(
    app: Any, counter: StatementCounter, path: str, cookie: str, expect: str, rounds: int
) -> tuple[float, int]:
    """(median milliseconds, SQL statements per request)."""
    render(app, path, cookie, expect)  # warm-up: templates compiled, caches filled
    with counter.counting() as statements:
        render(app, path, cookie, expect)
    times = [render(app, path, cookie, expect) for _ in range(rounds)]
    return statistics.median(times) * 1000, statements[0]


def page_and_service_ms(
    app: Any, engine: Any, cookie: str, countries: list[str], rounds: int
) -> tuple[float, float]:
    """The dashboard page and its service alone (``studies.progress.study_progress``, in a session of
    its own as a request has), in alternating rounds so that a busy machine slows both alike: what
    the page adds (sign-in, view, template) is the difference."""
    from sqlalchemy.orm import Session

    from surveykit.studies.progress import study_progress

    path = f"/console/studies/{STUDY}/progress"
    pages, services = [], []
    for _ in range(rounds):
        pages.append(render(app, path, cookie, "Fieldwork progress"))
        with Session(bind=engine) as session:
            started = time.perf_counter()
            study_progress(session, STUDY, countries)
            services.append(time.perf_counter() - started)
    return statistics.median(pages) * 1000, statistics.median(services) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES, help="PostgreSQL server URL")
    parser.add_argument("--countries", type=int, default=20)
    parser.add_argument("--interviews", type=int, default=50_000)
    parser.add_argument("--registry", type=int, default=50_000, help="participants of the registry country")
    parser.add_argument("--deep-page", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    countries = country_codes(args.countries)
    deep_page = min(args.deep_page, max(1, args.registry // PAGE_SIZE))

    tmp = tempfile.TemporaryDirectory(prefix="surveykit-bench-console-")
    database = harness.ThrowawayDatabase(args.postgres, "console") if args.postgres else None
    try:
        url = database.__enter__().url if database else ""
        settings = load_settings(
            {}, {"SURVEYKIT_DATA_DIR": tmp.name, "SURVEYKIT_DATABASE_URL": url, "SURVEYKIT_ENV": "test"}
        )
        started = time.perf_counter()
        loaded = load(settings, countries, args.interviews, args.registry)
        engine = loaded["engine"]
        if args.postgres:
            # As an operator does after a bulk load (autovacuum would, a little later).
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("ANALYZE")
        print(f"loaded in {time.perf_counter() - started:.1f} s")
        app = make_app({**settings, "surveykit.engine": engine})
        counter = StatementCounter(engine)
        dashboard = []
        for size in sorted(key for key in loaded["cookies"] if isinstance(key, int)):
            ms, statements = measure(
                app,
                counter,
                f"/console/studies/{STUDY}/progress",
                loaded["cookies"][size],
                "Fieldwork progress",
                args.rounds,
            )
            dashboard.append((size, ms, statements))
        page_ms, service_ms = page_and_service_ms(
            app, engine, loaded["cookies"][len(countries)], countries, args.rounds
        )
        registry_path = f"/console/studies/{STUDY}/countries/{REGISTRY_COUNTRY}/participants"
        after = ids.format_pid("RA1", REGISTRY_COUNTRY, (deep_page - 1) * PAGE_SIZE, "A")
        first = measure(app, counter, registry_path, loaded["cookies"]["registry"], "RA1-RG-", args.rounds)
        deep_path = f"{registry_path}?after={after}" if deep_page > 1 else registry_path
        deep = measure(app, counter, deep_path, loaded["cookies"]["registry"], "RA1-RG-", args.rounds)
        engine.dispose()
    finally:
        if database is not None:
            database.__exit__(None, None, None)
        tmp.cleanup()

    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"\nconsole pages in-process, {backend}: {args.countries} countries, {args.interviews} interviews; "
        f"a registry of {args.registry}; median of {args.rounds}\n"
    )
    print(f"{'dashboard, countries covered':<32}{'ms':>10}{'SQL statements':>17}")
    for size, ms, statements in dashboard:
        print(f"{size:<32}{ms:>10.1f}{statements:>17}")
    same = len({statements for _, _, statements in dashboard}) == 1
    full_ms = dashboard[-1][1]
    growth = "the same for every number of countries" if same else "GROW with the countries: FAIL"
    verdict = "PASS" if full_ms <= TARGET_MS else "FAIL"
    print(f"statements per dashboard: {growth}")
    print(
        f"{args.countries} countries again, page and service alternating: page {page_ms:.1f} ms, "
        f"the progress service alone {service_ms:.1f} ms"
    )
    print(
        f"dashboard for {args.countries} countries: {full_ms:.1f} ms, target <= {TARGET_MS:.0f} ms: {verdict}"
    )
    print(f"\n{'registry page':<32}{'ms':>10}{'SQL statements':>17}")
    print(f"{'1':<32}{first[0]:>10.1f}{first[1]:>17}")
    print(f"{deep_page:<32}{deep[0]:>10.1f}{deep[1]:>17}")
    print(f"registry page {deep_page} / page 1: {deep[0] / first[0]:.2f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
