"""The relevance language's conformance vectors (tests/relevance_vectors.json) against the server's
evaluator. The field app's JavaScript evaluator passes the same file in a real browser
(tests/browser/test_field_app.py), so the two cannot drift apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from surveykit.instruments.relevance import RelevanceError, parse

VECTORS = json.loads((Path(__file__).parent / "relevance_vectors.json").read_text(encoding="utf-8"))["cases"]


def evaluate(case: dict[str, Any]) -> bool | str:
    try:
        return parse(case["expression"]).evaluate(case["answers"])
    except RelevanceError:
        return "error"


def test_the_vectors_cover_every_outcome() -> None:
    outcomes = [case["expected"] for case in VECTORS]
    assert outcomes.count(True) >= 30 and outcomes.count(False) >= 30 and outcomes.count("error") >= 30


@pytest.mark.parametrize("case", VECTORS, ids=lambda case: case["expression"][:40])
def test_the_server_evaluator_passes_every_vector(case: dict[str, Any]) -> None:
    assert evaluate(case) == case["expected"], case.get("why")


TWINS = [case for case in VECTORS if "twin" in case]


def test_the_xlsform_spelling_has_twins_in_every_outcome() -> None:
    outcomes = [case["expected"] for case in TWINS]
    assert outcomes.count(True) >= 10 and outcomes.count(False) >= 10


@pytest.mark.parametrize("case", TWINS, ids=lambda case: case["expression"][:40])
def test_each_xlsform_spelling_evaluates_as_its_twin(case: dict[str, Any]) -> None:
    twin = {**case, "expression": case["twin"]}
    assert evaluate(twin) == evaluate(case) == case["expected"]
    assert parse(case["twin"]).references == parse(case["expression"]).references
