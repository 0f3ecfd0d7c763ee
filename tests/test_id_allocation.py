"""Anonymised IDs (``RA1-KE-04-B``) and interview-number allocation: format, sequence, no reuse,
group letters, device blocks, and allocation racing from several OS processes."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from surveykit import migrate
from surveykit.accounts import services as accounts
from surveykit.config import load_settings
from surveykit.db import make_engine, make_session_factory
from surveykit.participants import ids, services
from surveykit.participants.models import InterviewNumberCounter, NumberBlock, Participant
from surveykit.studies import services as studies
from surveykit.studies.models import Study

# ------------------------------------------------------------------------------------------ format


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        (("RA1", "KE", 4, "B"), "RA1-KE-04-B"),
        (("RA1", "KE", 1, "A"), "RA1-KE-01-A"),
        (("RA9", "CA", 99, "Z"), "RA9-CA-99-Z"),
        (("RA2", "TZ", 100, "A"), "RA2-TZ-100-A"),
        (("RA1", "KE", 999, "C"), "RA1-KE-999-C"),
        (("RA1", "KE", 1234, "A"), "RA1-KE-1234-A"),
    ],
)
def test_ids_are_formatted_and_parsed_back(parts: tuple[str, str, int, str], text: str) -> None:
    assert ids.format_pid(*parts) == text
    parsed = ids.parse_pid(text)
    assert (parsed.activity, parsed.country, parsed.interview_number, parsed.letter) == parts
    assert str(parsed) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "RA1-KE-4-B",  # one digit
        "RA1-KE-004-B",  # extra zero
        "RA1-KE-00-A",  # zero is not an interview number
        "RA1-KE-000-A",
        "RA0-KE-01-A",  # activities run 1 to 9
        "RA10-KE-01-A",
        "ra1-KE-01-A",
        "RA1-ke-01-A",
        "RA1-KEN-01-A",
        "RA1-K-01-A",
        "RA1-KE-01-b",
        "RA1-KE-01-AB",
        "RA1-KE-01",
        "RA1-KE-01-",
        "RA1_KE_01_A",
        " RA1-KE-01-A",
        "RA1-KE-01-A ",
        "RA1-KE-01-A\n",  # a regex's $ would accept the newline
        "RA1-KE-0\u0664-A",  # an Arabic-Indic digit four
        "RA1-KE-\uff10\uff14-A",  # full-width digits
        "RA1-KE-1234567890-A",  # beyond any number the database holds
    ],
)
def test_malformed_ids_are_refused(text: str) -> None:
    with pytest.raises(ids.InvalidParticipantId):
        ids.parse_pid(text)


def test_letters_run_a_to_z() -> None:
    assert [ids.letter_for(i) for i in (0, 1, 2, 25)] == ["A", "B", "C", "Z"]
    with pytest.raises(ValueError):
        ids.letter_for(26)


def test_ids_sort_by_activity_country_number_and_letter() -> None:
    texts = ["RA1-KE-10-A", "RA1-KE-02-B", "RA1-KE-100-A", "RA1-KE-02-A", "RA1-KE-09-A"]
    ordered = [str(pid) for pid in sorted(ids.parse_pid(text) for text in texts)]
    assert ordered == ["RA1-KE-02-A", "RA1-KE-02-B", "RA1-KE-09-A", "RA1-KE-10-A", "RA1-KE-100-A"]


# -------------------------------------------------------------------------------------- allocation


@pytest.fixture
def study(dbsession: Session) -> Study:
    study = studies.create_study(dbsession, "alloc", "Allocation study")
    for code in ("KE", "TZ"):
        studies.add_country(dbsession, study, code, f"Country {code}")
    for code in ("RA1", "RA2"):
        studies.add_activity(dbsession, study, code, f"Activity {code}")
    return study


def person(agency: str = "Ministry of ICT", position: str | None = None) -> services.NewParticipant:
    return services.NewParticipant(agency, position)


def test_numbers_count_up_per_activity_and_country(dbsession: Session, study: Study) -> None:
    assert list(ids.allocate_interview_numbers(dbsession, study.id, "RA1", "KE")) == [1]
    assert list(ids.allocate_interview_numbers(dbsession, study.id, "RA1", "KE", 3)) == [2, 3, 4]
    assert list(ids.allocate_interview_numbers(dbsession, study.id, "RA1", "TZ")) == [1]
    assert list(ids.allocate_interview_numbers(dbsession, study.id, "RA2", "KE")) == [1]
    assert list(ids.allocate_interview_numbers(dbsession, study.id, "RA1", "KE")) == [5]
    with pytest.raises(ValueError):
        ids.allocate_interview_numbers(dbsession, study.id, "RA1", "KE", 0)


def test_a_group_interview_gets_one_number_and_letters_in_order(dbsession: Session, study: Study) -> None:
    single = services.register_interview(dbsession, study, "KE", "RA1", [person()], "tests")
    group = services.register_interview(
        dbsession,
        study,
        "KE",
        "RA1",
        [
            person("Ministry of ICT", "Director"),
            person("Ministry of ICT"),
            person("Police, Cyber Crime Unit"),
        ],
        "tests",
    )
    assert [p.pid for p in single] == ["RA1-KE-01-A"]
    assert [p.pid for p in group] == ["RA1-KE-02-A", "RA1-KE-02-B", "RA1-KE-02-C"]
    assert {p.interview_number for p in group} == {2}
    assert [(p.agency, p.position, p.status) for p in group] == [
        ("Ministry of ICT", "Director", "planned"),
        ("Ministry of ICT", None, "planned"),
        ("Police, Cyber Crime Unit", None, "planned"),
    ]
    # "2 interviews with a total of 4 participants": the counts differ, the registry knows both.
    assert dbsession.scalar(select(func.count()).select_from(Participant)) == 4


def test_withdrawn_numbers_stay_gaps_and_are_never_reused(dbsession: Session, study: Study) -> None:
    first = [services.register_interview(dbsession, study, "KE", "RA1", [person()], "t")[0] for _ in range(3)]
    assert [p.interview_number for p in first] == [1, 2, 3]
    services.update_participant(dbsession, first[2], {"status": "withdrawn"})
    services.update_participant(dbsession, first[1], {"status": "interviewed"})
    services.update_participant(dbsession, first[1], {"status": "withdrawn"})
    nxt = services.register_interview(dbsession, study, "KE", "RA1", [person()], "t")[0]
    assert nxt.pid == "RA1-KE-04-A"
    block = services.reserve_block(dbsession, _device(dbsession), study, "KE", "RA1", 5)
    assert (block.first_number, block.last_number) == (5, 9)
    after = services.register_interview(dbsession, study, "KE", "RA1", [person()], "t")[0]
    assert after.pid == "RA1-KE-10-A"
    statuses = dict(dbsession.execute(select(Participant.pid, Participant.status)).all())
    assert statuses["RA1-KE-03-A"] == statuses["RA1-KE-02-A"] == "withdrawn"
    # A withdrawal is final: the number cannot come back into use through the registry either.
    with pytest.raises(services.InvalidTransition):
        services.update_participant(dbsession, first[2], {"status": "planned"})
    counter = dbsession.get(InterviewNumberCounter, (study.id, "RA1", "KE"))
    assert counter.next_number == 11


def test_status_runs_planned_interviewed_withdrawn(dbsession: Session, study: Study) -> None:
    p = services.register_interview(dbsession, study, "KE", "RA1", [person()], "t")[0]
    with pytest.raises(services.InvalidTransition):
        services.update_participant(dbsession, p, {"status": "bogus"})
    assert services.update_participant(dbsession, p, {"status": "interviewed"}) == {
        "status": ["planned", "interviewed"]
    }
    with pytest.raises(services.InvalidTransition):
        services.update_participant(dbsession, p, {"status": "planned"})
    assert services.update_participant(dbsession, p, {"status": "interviewed"}) == {}
    services.update_participant(dbsession, p, {"status": "withdrawn"})
    for status in ("planned", "interviewed"):
        with pytest.raises(services.InvalidTransition):
            services.update_participant(dbsession, p, {"status": status})


def test_rolled_back_allocations_leave_no_hole(dbsession: Session, study: Study) -> None:
    """A number taken in a transaction that rolls back was never used; the next caller gets it."""
    with dbsession.begin_nested() as savepoint:
        assert list(ids.allocate_interview_numbers(dbsession, study.id, "RA1", "KE", 2)) == [1, 2]
        savepoint.rollback()
    assert list(ids.allocate_interview_numbers(dbsession, study.id, "RA1", "KE")) == [1]


POLICY = accounts.AccountPolicy.from_settings(load_settings({}, {}))


def _device(session: Session, username: str = "alloc-fw", study: str = "alloc") -> str:
    user = accounts.create_user(session, username, None, POLICY)
    accounts.add_grant(session, user, "fieldworker", study, ["KE"], "tests")
    device, _ = accounts.enrol_device(session, user, "tablet", "tests", POLICY)
    session.flush()
    return device.id


def test_blocks_come_from_the_same_counter_and_only_their_device_may_mint_from_them(
    dbsession: Session, study: Study
) -> None:
    services.register_interview(dbsession, study, "KE", "RA1", [person()], "t")
    mine, other = _device(dbsession, "fw-a"), _device(dbsession, "fw-b")
    block = services.reserve_block(dbsession, mine, study, "KE", "RA1", 10)
    assert (block.first_number, block.last_number) == (2, 11)
    second = services.reserve_block(dbsession, other, study, "KE", "RA1", 3)
    assert (second.first_number, second.last_number) == (12, 14)
    assert services.mint_check(dbsession, mine, study.id, "RA1", "KE", 2)
    assert services.mint_check(dbsession, mine, study.id, "RA1", "KE", 11)
    assert not services.mint_check(dbsession, mine, study.id, "RA1", "KE", 1)  # the server's own
    assert not services.mint_check(dbsession, mine, study.id, "RA1", "KE", 12)  # the other device's
    assert not services.mint_check(dbsession, mine, study.id, "RA1", "TZ", 2)
    assert not services.mint_check(dbsession, mine, study.id, "RA2", "KE", 2)
    assert services.mint_check(dbsession, other, study.id, "RA1", "KE", 13)
    assert services.number_is_registered(dbsession, study.id, "RA1", "KE", 1)
    assert not services.number_is_registered(dbsession, study.id, "RA1", "KE", 2)
    with pytest.raises(services.RegistryError):
        services.reserve_block(dbsession, mine, study, "KE", "RA1", 101)
    with pytest.raises(services.RegistryError):
        services.reserve_block(dbsession, mine, study, "KE", "RA1", 0)
    with pytest.raises(studies.ActivityNotFound):
        services.reserve_block(dbsession, mine, study, "KE", "RA3", 1)
    with pytest.raises(studies.CountryNotFound):
        services.reserve_block(dbsession, mine, study, "UG", "RA1", 1)


def test_registration_needs_a_configured_country_and_activity(dbsession: Session, study: Study) -> None:
    with pytest.raises(studies.CountryNotFound):
        services.register_interview(dbsession, study, "UG", "RA1", [person()], "t")
    with pytest.raises(studies.ActivityNotFound):
        services.register_interview(dbsession, study, "KE", "RA5", [person()], "t")
    with pytest.raises(services.RegistryError):
        services.register_interview(dbsession, study, "KE", "RA1", [], "t")
    with pytest.raises(services.RegistryError):
        services.register_interview(dbsession, study, "KE", "RA1", [person()] * 27, "t")
    with pytest.raises(services.RegistryError):
        services.register_interview(dbsession, study, "KE", "RA1", [person("  ")], "t")
    with pytest.raises(services.RegistryError):
        services.register_interview(dbsession, study, "KE", "RA1", [person("x" * 501)], "t")
    assert dbsession.scalar(select(func.count()).select_from(InterviewNumberCounter)) == 0


# --------------------------------------------------------------------- concurrency across processes

WORKERS = 4
ROUNDS = 12


def _allocation_worker(
    url: str, data_dir: str, study_id: int, device_id: str, worker: int, barrier: Any, results: Any
) -> None:
    """One app process: registers interviews and reserves blocks, each in its own transaction."""
    settings = load_settings(
        {}, {"SURVEYKIT_ENV": "test", "SURVEYKIT_DATABASE_URL": url, "SURVEYKIT_DATA_DIR": data_dir}
    )
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    taken: list[tuple[str, list[int]]] = []
    rng = random.Random(worker)
    try:
        barrier.wait(timeout=120)
        for round_ in range(ROUNDS):
            kind = ("single", "group", "block")[(round_ + worker) % 3]
            for _attempt in range(200):
                session = factory()
                try:
                    study = session.get(Study, study_id)
                    if kind == "block":
                        block = services.reserve_block(session, device_id, study, "KE", "RA1", 3)
                        numbers = list(range(block.first_number, block.last_number + 1))
                    else:
                        people = [person(f"Agency {worker}-{round_}")] * (2 if kind == "group" else 1)
                        rows = services.register_interview(session, study, "KE", "RA1", people, f"w{worker}")
                        numbers = [rows[0].interview_number]
                    session.commit()
                    taken.append((kind, numbers))
                    break
                except OperationalError as exc:
                    # SQLite answers "database is locked" when a reader's snapshot went stale before
                    # it could write; the app replays the request (pyramid_retry), so does this worker.
                    session.rollback()
                    if "locked" not in str(exc):
                        raise
                    time.sleep(rng.uniform(0.001, 0.02))
                finally:
                    session.close()
            else:
                raise RuntimeError("worker gave up")
        results.put((worker, taken, None))
    except Exception as exc:  # report instead of dying silently
        results.put((worker, taken, repr(exc)))
    finally:
        engine.dispose()


def test_concurrent_allocation_from_several_processes(
    fresh_database: Any, tmp_path: Path, backend: str
) -> None:
    """Several OS processes, each with its own engine, allocating at once: every number unique,
    contiguous from 1, none reused; every registered participant ID unique."""
    url = fresh_database()
    settings = load_settings(
        {}, {"SURVEYKIT_ENV": "test", "SURVEYKIT_DATABASE_URL": url, "SURVEYKIT_DATA_DIR": str(tmp_path)}
    )
    engine = make_engine(settings)
    try:
        migrate.upgrade(engine)
        with Session(engine) as session:
            study = studies.create_study(session, "race", "Race")
            studies.add_country(session, study, "KE", "Kenya")
            studies.add_activity(session, study, "RA1", "Duty bearers")
            device_id = _device(session, "race-fw", "race")
            session.commit()
            study_id = study.id

        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(WORKERS)
        results = context.Queue()
        processes = [
            context.Process(
                target=_allocation_worker,
                args=(url, str(tmp_path), study_id, device_id, worker, barrier, results),
            )
            for worker in range(WORKERS)
        ]
        for process in processes:
            process.start()
        reports = [results.get(timeout=300) for _ in processes]
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        failures = [(worker, error) for worker, _, error in reports if error]
        assert not failures, failures

        numbers = [n for _, taken, _ in reports for _, batch in taken for n in batch]
        assert len(numbers) == WORKERS * (ROUNDS // 3) * (1 + 1 + 3)
        duplicates = [n for n, count in Counter(numbers).items() if count > 1]
        assert not duplicates, f"numbers handed out twice: {duplicates}"
        assert sorted(numbers) == list(range(1, len(numbers) + 1))

        with Session(engine) as session:
            counter = session.get(InterviewNumberCounter, (study_id, "RA1", "KE"))
            assert counter.next_number == len(numbers) + 1
            pids = list(session.scalars(select(Participant.pid)))
            assert len(pids) == len(set(pids)) == WORKERS * (ROUNDS // 3) * (1 + 2)
            registered = set(session.scalars(select(Participant.interview_number)))
            blocks = [
                set(range(b.first_number, b.last_number + 1)) for b in session.scalars(select(NumberBlock))
            ]
            assert len(blocks) == WORKERS * (ROUNDS // 3)
            assert all(not (block & registered) for block in blocks)
            # The feed got one entry per participant, numbered without gaps.
            from surveykit.studies.feed import ChangeLogEntry

            seqs = sorted(
                session.scalars(select(ChangeLogEntry.seq).where(ChangeLogEntry.study_id == study_id))
            )
            assert seqs == list(range(1, len(pids) + 1))
            # After the race the next allocation continues the sequence.
            nxt = services.register_interview(
                session, session.get(Study, study_id), "KE", "RA1", [person()], "t"
            )
            assert nxt[0].interview_number == len(numbers) + 1
            session.rollback()
    finally:
        engine.dispose()
