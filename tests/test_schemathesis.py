"""schemathesis against the running application: every operation of the published document, as every role.

The document is loaded from the application itself (``GET /api/v1/openapi.json``); for each operation
schemathesis generates requests (valid ones, and invalid ones) and every request is sent as each
caller of ``test_route_matrix`` (anonymous, fieldworker, coordinators, analyst, admins, a tablet).
Each answer must not be a server error and must conform to the document: its status is documented,
its content type is the documented one, and its body matches the documented schema.

Bounded: ``SURVEYKIT_FUZZ_EXAMPLES`` examples per operation and generation mode (default 4),
derandomised so CI runs the same requests every time, no shrinking. The database is the suite's,
rolled back after each operation like every other test.
"""

from __future__ import annotations

import json
import os
import time
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
from sqlalchemy.orm import Session
from test_route_matrix import CALLERS, World

from surveykit.studies import services as studies

DOCUMENT = json.loads((Path(__file__).parent.parent / "docs" / "openapi.json").read_text("utf-8"))
OPERATIONS = sorted(f"{method.upper()} {path}" for path, item in DOCUMENT["paths"].items() for method in item)
EXAMPLES = int(os.environ.get("SURVEYKIT_FUZZ_EXAMPLES", "4"))
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
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
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
    started = time.monotonic()

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
        for caller in CALLERS:
            # The WSGI client does not undo Content-Encoding the way an HTTP client does.
            headers = {**fuzz_world.headers(caller), "Accept-Encoding": "identity"}
            response = case.call(headers=headers)
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as exc:
                failures.append(f"as {caller}: {exc}")

    run()
    # A generous bound per operation: the whole run must stay within a few minutes.
    assert time.monotonic() - started < 120, f"{label} took too long"
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
