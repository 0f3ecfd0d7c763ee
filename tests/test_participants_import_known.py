"""Importing a study already under way: rows with their existing IDs keep their numbers and letters,
numbers already taken are refused row by row, the counter continues after the largest one imported,
and two imports racing on two app instances never both take a number."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import webtest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session
from support_db import CommittingApp, settings_for
from test_participants_import import ENVELOPE_KEYS, XLSX, xlsx
from test_sync_support import SyncWorld, change, make_record, new_uuid

from surveykit.accounts import services as account_services
from surveykit.accounts.tokens import TokenSettings
from surveykit.audit.models import AuditEvent
from surveykit.cli import cli
from surveykit.participants import ids, importer
from surveykit.participants.importer import ImportRejected
from surveykit.participants.models import InterviewNumberCounter, Participant
from surveykit.studies import services as studies
from surveykit.studies.models import ResearchActivity

IMPORT = "/api/v1/studies/ocsea/countries/KE/participants/import?activity=RA1"
UNDER_WAY_CSV = """id,agency,position
RA1-KE-02-A,Ministry of ICT,Director of Cyber Security
RA1-KE-02-B,Ministry of ICT,
RA1-KE-04-A,Police Cyber Crime Unit,Head
RA1-KE-10-A,Communications Authority,
"""


def plan_of(text: str, scope: tuple[str, str] | None = ("RA1", "KE")) -> importer.ImportPlan:
    return importer.parse(text.encode("utf-8"), importer.CSV, scope=scope)


def problems_of(text: str, scope: tuple[str, str] | None = ("RA1", "KE")) -> list[tuple[Any, ...]]:
    with pytest.raises(ImportRejected) as caught:
        plan_of(text, scope)
    return [(e.row, e.column, e.message) for e in caught.value.errors]


def registry(session: Session) -> list[tuple[str, str, str | None]]:
    session.expire_all()
    return list(
        session.execute(
            select(Participant.pid, Participant.agency, Participant.position).order_by(Participant.pid)
        )
    )


def counter(session: Session, country: str = "KE") -> int | None:
    session.expire_all()
    return session.scalar(
        select(InterviewNumberCounter.next_number).where(InterviewNumberCounter.country_code == country)
    )


# ------------------------------------------------------------------------------------------ parsing


def test_known_ids_keep_their_numbers_and_letters() -> None:
    plan = plan_of(
        "agency,id,interview\n"
        "Police,RA1-KE-04-B,\n"
        "Ministry of ICT,RA1-KE-02-A,\n"
        "Ministry of ICT,,x\n"
        "Police,RA1-KE-04-A,\n"
        "Ministry of ICT,,x\n"
        "Regulator,,\n"
    )
    assert [[(p.row, p.number, p.letter) for p in interview] for interview in plan.interviews] == [
        [(5, 4, "A"), (2, 4, "B")],
        [(3, 2, "A")],
        [(4, None, None), (6, None, None)],
        [(7, None, None)],
    ]
    assert plan.known_numbers == [4, 2]
    assert (plan.rows, plan.participants) == (6, 6)


def test_bad_known_ids_are_reported_per_row_without_echoing_the_cell() -> None:
    problems = problems_of(
        "agency,id,interview\n"
        "Police,Jane Wanjiru,\n"
        "Police,RA1-KE-4-A,\n"
        "Police,RA1-TZ-04-A,\n"
        "Police,RA2-KE-04-A,\n"
        "Police,RA1-KE-05-A,1\n"
        "Police,RA1-KE-06-A,\n"
        "Police,RA1-KE-06-A,\n"
        "Police,RA1-KE-100000-A,\n"
        ",RA1-KE-07-A,\n"
    )
    assert problems == [
        (2, "id", "id is not a participant ID like RA1-KE-04-B"),
        (3, "id", "id is not a participant ID like RA1-KE-04-B"),
        (4, "id", "id RA1-TZ-04-A is not of RA1 in KE, the import's activity and country"),
        (5, "id", "id RA2-KE-04-A is not of RA1 in KE, the import's activity and country"),
        (6, "interview", "give either an id or an interview key, not both"),
        (8, "id", "id RA1-KE-06-A is given twice (first in row 7)"),
        (9, "id", "id RA1-KE-100000-A: interview numbers go up to 99999"),
        (10, "agency", "agency is required"),
    ]
    assert not any("Jane" in message for _row, _column, message in problems)


def test_json_rows_and_xlsx_take_ids_too() -> None:
    records = importer.parse_records(
        [{"agency": "Police", "id": "RA1-KE-03-B"}, {"agency": "Police", "id": "RA1-KE-03-A"}], ("RA1", "KE")
    )
    assert [[(p.row, p.letter) for p in interview] for interview in records.interviews] == [
        [(1, "A"), (0, "B")]
    ]
    sheet = importer.parse(
        xlsx([["ID", "Agency"], ["RA1-KE-07-A", "Police"]]), importer.XLSX, scope=("RA1", "KE")
    )
    assert sheet.known_numbers == [7]


# ---------------------------------------------------------------------------------------- storing


class Team:
    def __init__(self, accounts_: Any, dbsession: Session) -> None:
        self.study = accounts_.study("ocsea", ("KE", "TZ"))
        studies.add_activity(dbsession, self.study, "RA1", "Duty bearers")
        self.coordinator = accounts_.headers("coordinator", "ocsea", ["KE"])
        self.session = dbsession


@pytest.fixture
def team(accounts: Any, dbsession: Session) -> Team:
    return Team(accounts, dbsession)


def post_csv(testapp: webtest.TestApp, text: str, headers: dict[str, str], query: str = "") -> Any:
    return testapp.post(
        IMPORT + query, text.encode("utf-8"), headers=headers, content_type="text/csv", expect_errors=True
    )


def test_a_study_under_way_is_imported_with_its_ids_and_the_counter_continues(
    testapp: webtest.TestApp, team: Team
) -> None:
    response = post_csv(testapp, UNDER_WAY_CSV + ",Regulator,\n", team.coordinator)
    assert response.status_int == 201, response.text
    assert [p["pid"] for p in response.json["participants"]] == [
        "RA1-KE-02-A",
        "RA1-KE-02-B",
        "RA1-KE-04-A",
        "RA1-KE-10-A",
        "RA1-KE-11-A",
    ]
    assert response.json["interview_count"] == 4
    assert registry(team.session)[:2] == [
        ("RA1-KE-02-A", "Ministry of ICT", "Director of Cyber Security"),
        ("RA1-KE-02-B", "Ministry of ICT", None),
    ]
    assert counter(team.session) == 12
    # The next registration continues after the largest number, never filling the gaps.
    again = testapp.post_json(
        "/api/v1/studies/ocsea/countries/KE/participants",
        {"activity": "RA1", "participants": [{"agency": "Police"}]},
        headers=team.coordinator,
    )
    assert again.json["interview_number"] == 12
    [event] = team.session.scalars(select(AuditEvent).where(AuditEvent.action == "participant.import"))
    assert (event.details["first_number"], event.details["last_number"], event.details["known_ids"]) == (
        2,
        11,
        4,
    )


def test_json_and_xlsx_imports_with_ids(testapp: webtest.TestApp, team: Team) -> None:
    response = testapp.post_json(
        IMPORT, {"rows": [{"agency": "Police", "id": "RA1-KE-05-A"}]}, headers=team.coordinator
    )
    assert [p["pid"] for p in response.json["participants"]] == ["RA1-KE-05-A"]
    data = xlsx([["agency", "id"], ["Regulator", "RA1-KE-07-B"], ["Regulator", None]])
    sheet = testapp.post(IMPORT, data, headers=team.coordinator, content_type=XLSX)
    assert [p["pid"] for p in sheet.json["participants"]] == ["RA1-KE-07-B", "RA1-KE-08-A"]
    assert counter(team.session) == 9


def assert_refused(response: Any, rows: list[tuple[int, str]]) -> dict[str, Any]:
    assert response.status_int == 422, response.text
    body = response.json
    assert set(body) == ENVELOPE_KEYS and body["code"] == "import_invalid"
    assert [(d["path"], d["message"]) for d in body["details"]] == [(f"rows[{row}].id", m) for row, m in rows]
    assert body["message"].startswith("nothing was imported: ")
    return body


def test_numbers_already_registered_reserved_or_handed_out_are_refused_row_by_row(
    testapp: webtest.TestApp, team: Team, accounts: Any
) -> None:
    session = team.session
    # 01: registered; 02-04: handed out by the counter but unused; 05-07: a tablet's block.
    testapp.post_json(
        "/api/v1/studies/ocsea/countries/KE/participants",
        {"activity": "RA1", "participants": [{"agency": "Police"}]},
        headers=team.coordinator,
    )
    ids.allocate_interview_numbers(session, team.study.id, "RA1", "KE", 3)
    owner = accounts.user("fieldworker-ke", "fieldworker", "ocsea", ["KE"])
    device, _code = account_services.enrol_device(session, owner, "tablet", "tests", accounts.policy)
    ids.reserve_block(session, device.id, team.study.id, "RA1", "KE", 3)
    session.flush()
    before = registry(session)
    text = (
        "id,agency\n"
        "RA1-KE-01-B,Police\n"
        "RA1-KE-03-A,Police\n"
        "RA1-KE-06-A,Police\n"
        "RA1-KE-06-B,Police\n"
        "RA1-KE-09-A,Police\n"
    )
    dry = post_csv(testapp, text, team.coordinator, "&dry_run=true")
    expected = [
        (2, "interview RA1-KE-01 is already in the registry; an interview number is never reused"),
        (
            3,
            "interview number 3 was already handed out (the next free number is 8); "
            "an interview number is never reused",
        ),
        (4, "interview number 6 is reserved in a tablet's number block"),
        (5, "interview number 6 is reserved in a tablet's number block"),
    ]
    assert_refused(dry, expected)
    assert_refused(post_csv(testapp, text, team.coordinator), expected)
    assert registry(session) == before
    assert counter(session) == 8
    # Without the taken numbers the same file goes in.
    fine = post_csv(testapp, "id,agency\nRA1-KE-09-A,Police\n", team.coordinator)
    assert fine.status_int == 201 and counter(session) == 10


def test_the_cli_imports_known_ids(cli_env: Callable[..., Any], tmp_path: Path) -> None:
    sheet = tmp_path / "under-way.csv"
    sheet.write_text(UNDER_WAY_CSV)
    result = cli_env(
        "participants", "import", str(sheet), "--study", "ocsea", "--country", "KE", "--activity", "RA1"
    )
    assert result.exit_code == 0, result.output
    assert "interviews RA1-KE-02 to RA1-KE-10" in result.output
    again = cli_env(
        "participants", "import", str(sheet), "--study", "ocsea", "--country", "KE", "--activity", "RA1"
    )
    assert again.exit_code == 1
    assert "already in the registry" in again.output and "nothing was imported" in again.output
    dry = cli_env(
        "participants",
        "import",
        str(sheet),
        "--study",
        "ocsea",
        "--country",
        "KE",
        "--activity",
        "RA1",
        "--dry-run",
    )
    assert dry.exit_code == 1 and "already in the registry" in dry.output


@pytest.fixture
def cli_env(fresh_database: Callable[[], str], tmp_path: Path) -> Callable[..., Any]:
    url = fresh_database()
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(
            cli, ["--database-url", url, "--data-dir", str(tmp_path), *args], catch_exceptions=False
        )

    assert run("db", "upgrade").exit_code == 0
    assert run("studies", "add", "ocsea", "--name", "OCSEA").exit_code == 0
    assert run("studies", "add-country", "ocsea", "KE", "--name", "Kenya").exit_code == 0
    assert run("studies", "add-activity", "ocsea", "RA1", "--name", "Duty bearers").exit_code == 0
    return run


# ------------------------------------------------------------------------------ records for them


def test_a_record_for_an_imported_id_is_pushed_with_its_original_date(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    world = SyncWorld(accounts, dbsession)
    coordinator = world.staff("coordinator", ["KE"])
    response = testapp.post_json(
        IMPORT,
        {
            "rows": [
                {"id": "RA1-KE-05-A", "agency": "Ministry of ICT", "position": "Director of Cyber Security"}
            ]
        },
        headers=coordinator,
    )
    assert response.status_int == 201
    tablet = world.tablet(["KE"])
    assert tablet.numbers["KE"][0] == 6  # the tablet's block starts after the imported number
    # The interview took place on paper in 2019, long before the study was set up here.
    record = make_record(
        5,
        started_at="2019-11-12T09:30:00+03:00",
        ended_at="2019-11-12T10:45:00+03:00",
        participants=[
            {
                "letter": "A",
                "agency": "Ministry of ICT",
                "position": "Director of Cyber Security",
                "consent_given": True,
                "consent_date": "2019-11-12",
                "consent_recorded_how": "verbal_notes",
            }
        ],
    )
    record["answers"]["visit_date"] = "2019-11-12"
    uuid = new_uuid()
    pushed = tablet.push(testapp, [change(uuid, 0, record)])
    [result] = pushed.json["results"]
    assert result["result"] == "created", result
    participant = dbsession.scalar(select(Participant).where(Participant.pid == "RA1-KE-05-A"))
    dbsession.refresh(participant)
    assert participant.status == "interviewed"


# ------------------------------------------------------------------------------------------- races


class Server(CommittingApp):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        policy = account_services.AccountPolicy.from_settings(settings)
        with self.factory() as session:
            study = studies.create_study(session, "ocsea")
            studies.add_country(session, study, "KE", "Kenya")
            session.add(ResearchActivity(study_id=study.id, code="RA1", name="Duty bearers"))
            coordinator = account_services.create_user(session, "coord", None, policy)
            account_services.add_grant(session, coordinator, "coordinator", "ocsea", ["KE"], "tests")
            session.flush()
            pair = account_services.start_session(
                session, coordinator, TokenSettings.from_settings(settings), policy
            )
            session.commit()
        self.headers = {"Authorization": f"Bearer {pair.access_token}", "Content-Type": "application/json"}


@pytest.fixture
def two_processes(
    fresh_database: Callable[[], str], tmp_path: Path
) -> Iterator[tuple[Server, CommittingApp]]:
    settings = settings_for(fresh_database(), tmp_path)
    first = Server(settings)
    second = CommittingApp(settings)  # another app with its own engine and pool, as a second process
    yield first, second
    first.engine.dispose()
    second.engine.dispose()


def test_two_imports_racing_on_two_app_instances_never_both_take_a_number(
    two_processes: tuple[Server, CommittingApp],
) -> None:
    first, second = two_processes
    clients = [
        webtest.TestApp(app.app, extra_environ={"HTTP_HOST": "surveykit.test"}) for app in (first, second)
    ]
    for round_ in range(4):
        base = 10 * (round_ + 1)
        bodies = [
            {
                "rows": [
                    {"agency": "Police", "id": f"RA1-KE-{base}-A"},
                    {"agency": "Police", "id": f"RA1-KE-{base + 2}-A"},
                ]
            },
            {"rows": [{"agency": "Regulator", "id": f"RA1-KE-{base + 2}-B"}, {"agency": "Regulator"}]},
        ]
        barrier = threading.Barrier(2)
        answers: list[Any] = [None, None]

        def run(
            index: int,
            bodies: list[dict[str, Any]] = bodies,
            answers: list[Any] = answers,
            barrier: threading.Barrier = barrier,
        ) -> None:
            barrier.wait()
            response = clients[index].post(
                IMPORT, json.dumps(bodies[index]).encode(), headers=first.headers, expect_errors=True
            )
            answers[index] = (response.status_int, response.json)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        statuses = sorted(status for status, _body in answers)
        assert statuses == [201, 422], answers
        loser = next(body for status, body in answers if status == 422)
        assert loser["code"] == "import_invalid"
        assert all(detail["path"].endswith(".id") for detail in loser["details"])
    with first.factory() as session:
        rows = list(
            session.execute(select(Participant.interview_number, Participant.agency, Participant.pid))
        )
        next_number = session.scalar(select(InterviewNumberCounter.next_number))
    # Each number holds one import's participants (the two imports use different agencies), and the
    # counter stands past every stored number.
    by_number: dict[int, set[str]] = {}
    for number, agency, _pid in rows:
        by_number.setdefault(number, set()).add(agency)
    assert Counter(len(agencies) for agencies in by_number.values()) == Counter({1: len(by_number)}), (
        by_number
    )
    assert len(rows) == len({pid for _n, _a, pid in rows}) == 8
    assert next_number == max(by_number) + 1
