"""What authentication and authorisation cost on the instrument GET.

A benchmark that prints figures, not a test. Two WSGI applications are built in one process on the
same database: the real one, called with a fieldworker's bearer token (signature check, session,
account and device revocation checks, grants, ACL), and one built with authorisation off (a policy
that allows everything, installable only from Python), called without a token. Both serve
GET /api/v1/instruments/ra1-duty-bearers on the 200 and the 304 path. Rounds alternate between the
two apps so drift on a shared machine hits both alike; the figure is the median over rounds.

    .venv/bin/python bench/bench_auth.py                # embedded SQLite in a temporary folder
    .venv/bin/python bench/bench_auth.py --postgres     # a throwaway PostgreSQL database

Target: authenticated rate >= 0.8 x the rate with authorisation off, on both paths.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from webob import Request

from surveykit import make_app, migrate
from surveykit.accounts import services as accounts
from surveykit.accounts.policy import AllowEveryonePolicy
from surveykit.accounts.tokens import TokenSettings
from surveykit.config import load_settings
from surveykit.db import make_engine, make_session_factory
from surveykit.instruments import services as instruments
from surveykit.studies import services as studies

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RA1 = PROJECT_ROOT / "instruments" / "ra1-duty-bearers.yaml"
PATH = "/api/v1/instruments/ra1-duty-bearers"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TARGET = 0.8


def prepare(settings: dict[str, Any]) -> tuple[Any, str]:
    engine = make_engine(settings)
    migrate.upgrade(engine)
    session = make_session_factory(engine)()
    policy = accounts.AccountPolicy.from_settings(settings)
    with session.begin():
        instruments.publish_file(session, RA1, "bench")
        study = studies.create_study(session, "bench", "Benchmark study")
        studies.add_country(session, study, "KE", "Kenya")
        user = accounts.create_user(session, "bench-fieldworker", None, policy)
        accounts.add_grant(session, user, "fieldworker", "bench", ["KE"], "bench")
        pair = accounts.start_session(session, user, TokenSettings.from_settings(settings), policy)
    session.close()
    return engine, pair.access_token


def call(app: Any, headers: dict[str, str]) -> int:
    request = Request.blank(PATH, headers=headers)
    response = request.get_response(app)
    if response.status_code not in (200, 304):
        raise RuntimeError(f"unexpected {response.status_code}: {response.body[:200]!r}")
    return response.status_code


def rate(app: Any, headers: dict[str, str], seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        call(app, headers)
        done += 1
    return done / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES, help="PostgreSQL server URL")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per round and app")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="surveykit-bench-auth-")
    admin_engine = None
    database_url = ""
    if args.postgres:
        name = f"surveykit_bench_{uuid.uuid4().hex[:10]}"
        admin_engine = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        database_url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    environ = {
        "SURVEYKIT_DATA_DIR": tmp.name,
        "SURVEYKIT_DATABASE_URL": database_url,
        "SURVEYKIT_ENV": "test",
    }
    settings = load_settings({}, environ)
    try:
        engine, token = prepare(settings)
        secured = make_app({**settings, "surveykit.engine": engine})
        open_policy = AllowEveryonePolicy(TokenSettings.from_settings(settings))
        unsecured = make_app(
            {**settings, "surveykit.engine": engine, "surveykit.security_policy": open_policy}
        )
        bearer = {"Authorization": f"Bearer {token}"}
        etag = Request.blank(PATH, headers=bearer).get_response(secured).headers["ETag"]

        rows = []
        for label, extra in (("200", {}), ("304", {"If-None-Match": etag})):
            for app, headers in ((secured, {**bearer, **extra}), (unsecured, extra)):
                expected = 304 if extra else 200
                if call(app, headers) != expected:
                    raise RuntimeError(f"the {label} path answered another status")
                rate(app, headers, 0.3)  # warm-up
            secured_rates, open_rates = [], []
            for _ in range(args.rounds):
                secured_rates.append(rate(secured, {**bearer, **extra}, args.seconds))
                open_rates.append(rate(unsecured, extra, args.seconds))
            rows.append((label, statistics.median(secured_rates), statistics.median(open_rates)))
        engine.dispose()
    finally:
        if admin_engine is not None:
            with admin_engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin_engine.dispose()
        tmp.cleanup()

    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\nGET {PATH} in-process, {backend}, median of {args.rounds} rounds x {args.seconds:g} s\n")
    print(f"{'path':<6}{'authenticated req/s':>22}{'authorisation off req/s':>26}{'ratio':>8}  target")
    for label, secured_rate, open_rate in rows:
        ratio = secured_rate / open_rate
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        print(f"{label:<6}{secured_rate:>22.0f}{open_rate:>26.0f}{ratio:>8.2f}  >= {TARGET} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
