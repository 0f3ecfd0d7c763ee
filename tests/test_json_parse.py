"""The request body parser (surveykit.web): orjson at C speed, the standard library's answers kept.

Whatever the body, the fast parse gives the same data or the same error as the standard library's
strict parse it replaced (which still handles what orjson refuses); duplicate keys and nesting
deeper than 64 levels are refused however they are written.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surveykit import web
from surveykit.errors import APIError


def outcome(parse: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "data", parse(raw)
    except APIError as error:
        return "error", (error.status, error.code, error.message, error.details)


def fast_and_strict(raw: bytes) -> tuple[tuple[str, Any], tuple[str, Any]]:
    return outcome(web._parse_json, raw), outcome(web._parse_json_strictly, raw)


def same(raw: bytes) -> tuple[str, Any]:
    fast, strict = fast_and_strict(raw)
    assert repr(fast) == repr(strict)  # repr: NaN-free, and 1 vs 1.0 vs True told apart
    return fast


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "a": 2}',
        b'{"a" :1, "a":2}',  # the first colon after a space
        b'{"a": 1, "a": "\\u003a"}',  # a colon as an escape makes up for the dropped key's colon
        b'{"x": [{"k": {"b": 1}, "k": 2}]}',
        b'{"\\u0061": 1, "a": 2}',
    ],
)
def test_a_key_given_twice_is_refused_however_it_is_written(raw: bytes) -> None:
    kind, (status, code, message, details) = same(raw)
    assert (kind, status, code) == ("error", 400, "malformed_json")
    assert "appears more than once" in message
    assert details[0]["message"] == "this key appears more than once in its object"


def test_nesting_is_allowed_to_64_levels_and_refused_beyond() -> None:
    assert same(b"[" * 64 + b"]" * 64)[0] == "data"
    assert same(b'{"a":' * 63 + b"[1]" + b"}" * 63)[0] == "data"
    for raw in (b"[" * 65 + b"]" * 65, b"[" * 100_000, b'{"a":' * 65 + b"1" + b"}" * 65):
        kind, (status, _, message, _) = same(raw)
        assert (kind, status, message) == ("error", 400, "JSON nested deeper than 64 levels")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b"[Infinity]", "Infinity is not valid JSON"),
        (b'{"a": "\xff"}', "not valid UTF-8 (byte 7)"),
        (b"", "Expecting value at line 1 column 1"),
        (b"1] , [2", "Extra data"),
        (b'\xef\xbb\xbf{"a": 1}', "Unexpected UTF-8 BOM"),
    ],
)
def test_refusals_keep_the_standard_librarys_messages(raw: bytes, expected: str) -> None:
    kind, (status, code, message, _) = same(raw)
    assert (kind, status, code) == ("error", 400, "malformed_json")
    assert expected in message


def test_what_the_sync_refuses_record_by_record_still_parses() -> None:
    # A lone surrogate, a number past a double and one that overflows to infinity: orjson refuses
    # them; the body parses anyway so the sync can answer the one record "rejected" with its path.
    kind, data = same(b'[{"t": "\\ud800"}, 1' + b"0" * 400 + b", 1e999, 18446744073709551616]")
    assert kind == "data"
    assert data[0]["t"] == "\ud800" and data[1] == 10**400 and data[2] == float("inf")
    assert data[3] == 2**64 and isinstance(data[3], int)


KEYS = st.sampled_from(["a", "b", "c", ":", 'k"', "é"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.sampled_from('ab:"\\/é\t\n\u00e9\U0001f600{}[],'), max_size=6),
)
# Objects as lists of pairs, so that a key may come twice.
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: ("list", items)),
        st.lists(st.tuples(KEYS, inner), max_size=4).map(lambda pairs: ("object", pairs)),
    ),
    max_leaves=20,
)


@st.composite
def json_texts(draw: Any) -> bytes:
    """JSON text for a generated value, with random spaces and, at random, escapes for colons."""

    def space() -> str:
        return draw(st.sampled_from(["", "", " ", "\n  "]))

    def string(text: str) -> str:
        out = json.dumps(text, ensure_ascii=draw(st.booleans()))
        return out.replace(":", "\\u003a") if draw(st.booleans()) else out

    def write(value: Any) -> str:
        if isinstance(value, tuple):
            kind, items = value
            if kind == "list":
                return "[" + ",".join(space() + write(item) + space() for item in items) + "]"
            parts = (space() + string(k) + space() + ":" + space() + write(v) for k, v in items)
            return "{" + ",".join(parts) + "}"
        return string(value) if isinstance(value, str) else json.dumps(value)

    return (space() + write(draw(VALUES)) + space()).encode("utf-8")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=json_texts())
def test_the_fast_parse_answers_as_the_strict_parse_does(raw: bytes) -> None:
    same(raw)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=40))
def test_the_fast_parse_answers_as_the_strict_parse_does_for_any_bytes(raw: bytes) -> None:
    same(raw)
