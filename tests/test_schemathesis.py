"""schemathesis against the running application: every operation of the published document, as every role.

The document is loaded from the application itself (``GET /api/v1/openapi.json``); for each operation
schemathesis generates requests (valid ones, and invalid ones) and every request is sent as each
caller of ``test_route_matrix`` (anonymous, fieldworker, coordinators, analyst, admins, a tablet).
Each answer must not be a server error and must conform to the document: its status is documented,
its content type is the documented one, and its body matches the documented schema. A refused
request (any 4xx) must store nothing: the row count of every table (the audit log aside) is the
same after it.

Two phases: each operation on its own, then stateful sequences that follow the document's OpenAPI
links (create a study, add a country, register participants, read and change them; enrol a tablet,
re-enrol and revoke it; publish an instrument, read and retire it), once per role.

Bounded and derandomised, so a run sends the same requests every time, without shrinking:
``SURVEYKIT_FUZZ_EXAMPLES`` examples per operation and generation mode (default 4) and
``SURVEYKIT_FUZZ_SCENARIOS`` stateful scenarios per role (default 3). The suite's defaults keep a
local run short; CI (.ci/run) runs a real budget on both databases in a step of its own. The
database is the suite's, rolled back after each test like every other test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_route_matrix import CALLERS, World

from surveykit.accounts.models import AttemptCounter
from surveykit.audit.models import AuditEvent
from surveykit.db import Base
from surveykit.studies import services as studies

DOCUMENT = json.loads((Path(__file__).parent.parent / "docs" / "openapi.json").read_text("utf-8"))
OPERATIONS = sorted(f"{method.upper()} {path}" for path, item in DOCUMENT["paths"].items() for method in item)
EXAMPLES = int(os.environ.get("SURVEYKIT_FUZZ_EXAMPLES", "4"))
SCENARIOS = int(os.environ.get("SURVEYKIT_FUZZ_SCENARIOS", "3"))
# The budget is counted in examples and steps, not seconds, so a slow or busy machine runs the same
# requests (and a timed assertion cannot fail a correct server); .ci/run reports the wall time.
STEPS_PER_SCENARIO = 8
# The audit log records refusals, and a refused login or activation is counted against its client
# address and account (the throttle): both are meant to grow on a refused request.
UNCOUNTED_TABLES = {AuditEvent.__tablename__, AttemptCounter.__tablename__}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# Operations excluded from the run, each with the reason (a server bug to fix, described in full).
# Nothing is excluded today.
KNOWN_FAILURES: dict[str, str] = {}


@pytest.fixture
def fuzz_world(accounts: Any, dbsession: Session) -> World:
    world = World(accounts, dbsession)
    for slug in ("ocsea", "other"):
        study = studies.get_study(dbsession, slug)
        studies.add_activity(dbsession, study, "RA1", "Duty bearers")
    dbsession.flush()
    return world


_LOADED: dict[int, Any] = {}


def loaded_schema(app: Any) -> Any:
    """The document as schemathesis loads it from the app, once per app (loading takes seconds)."""
    if id(app) not in _LOADED:
        _LOADED[id(app)] = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    return _LOADED[id(app)]


def table_counts(session: Session) -> tuple[int, ...]:
    """The row count of every table but the audit log, in one round trip."""
    session.expire_all()
    counts = [
        select(func.count()).select_from(table).scalar_subquery()
        for table in Base.metadata.sorted_tables
        if table.name not in UNCOUNTED_TABLES
    ]
    return tuple(session.execute(select(*counts)).one())


class RowCounts:
    """Checks that refused requests store nothing, recounting only after an accepted one."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.counts = table_counts(session)

    def after(self, status: int, label: str) -> str | None:
        now = table_counts(self.session)
        changed, self.counts = now != self.counts, now
        if 400 <= status < 500 and changed:
            return f"{label}: refused with {status}, yet rows were stored"
        return None


def _real_path_parameters(world: World) -> dict[str, str]:
    """Values that exist, so some requests get past the 404s into the views' real work."""
    return {
        "study": "ocsea",
        "cc": "KE",
        "country": "KE",
        "slug": "ocsea-debrief",
        "version": "1",
        "code": "RA1",
        "device_id": world.device.id,
    }


def test_every_documented_operation_is_fuzzed() -> None:
    assert len(OPERATIONS) >= 35
    assert set(KNOWN_FAILURES) <= set(OPERATIONS)


@pytest.mark.parametrize("label", [op for op in OPERATIONS if op not in KNOWN_FAILURES])
def test_operation_conforms_for_every_role(label: str, app: Any, connection: Any, fuzz_world: World) -> None:
    schema = loaded_schema(app)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    names = {parameter.name for parameter in operation.path_parameters}
    real = {key: value for key, value in _real_path_parameters(fuzz_world).items() if key in names}
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if real:
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real))
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES * len(strategies),
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies))
    def run(case: Any) -> None:
        # The WSGI client does not undo Content-Encoding the way an HTTP client does.
        headers = {
            caller: {**fuzz_world.headers(caller), "Accept-Encoding": "identity"} for caller in CALLERS
        }
        rows = RowCounts(fuzz_world.session)
        for caller in CALLERS:
            response = case.call(headers=headers[caller])
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as exc:
                failures.append(f"as {caller}: {exc}")
            if problem := rows.after(
                response.status_code, f"as {caller}: {case.method} {case.formatted_path}"
            ):
                failures.append(problem)

    run()
    assert not failures, "\n\n".join(failures[:5])


@pytest.mark.parametrize("caller", CALLERS)
def test_linked_sequences_conform_for_every_role(
    caller: str, app: Any, connection: Any, fuzz_world: World
) -> None:
    """Stateful: schemathesis chains operations through the document's links, as ``caller``."""
    schema = loaded_schema(app)
    failures: list[str] = []
    steps = {"count": 0}

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            headers = {**fuzz_world.headers(caller), "Accept-Encoding": "identity"}
            self.rows = RowCounts(fuzz_world.session)
            return {"headers": headers}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            steps["count"] += 1
            label = f"as {caller}: {case.method} {case.formatted_path}"
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as exc:
                failures.append(f"{label}: {exc}")
            if problem := self.rows.after(response.status_code, label):
                failures.append(problem)

    Sequences.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS_PER_SCENARIO,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    assert steps["count"] > 0
    assert not failures, "\n\n".join(failures[:5])


def test_the_checks_catch_an_undocumented_answer(app: Any, connection: Any) -> None:
    """With 401 taken out of the document, an anonymous GET /api/v1/me must fail the checks."""
    broken = json.loads(json.dumps(DOCUMENT))
    del broken["paths"]["/api/v1/me"]["get"]["responses"]["401"]
    schema = schemathesis.openapi.from_dict(broken)
    schema.app = app
    operation = schema.find_operation_by_label("GET /api/v1/me")
    case = operation.Case()
    response = case.call()
    assert response.status_code == 401
    with pytest.raises(FailureGroup, match="Undocumented status code"):
        case.validate_response(response, checks=CHECKS)
