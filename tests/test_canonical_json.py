"""The content hash's canonical text is exactly what the standard library's json writes.

``surveykit.sync.validation.canonical_text`` takes a faster writer for plain data; a record's hash
must not depend on which writer wrote it (a tablet's retry of a record stored before the change
must still hash the same), so every case here is compared with ``json.dumps`` itself.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from surveykit.sync import validation


def reference(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def every_code_point() -> list[str]:
    return [chr(code) for code in range(0x110000) if not 0xD800 <= code <= 0xDFFF]


def test_every_code_point_in_keys_and_values_is_written_as_json_writes_it():
    characters = every_code_point()
    for start in range(0, len(characters), 256):
        chunk = "".join(characters[start : start + 256])
        for value in ({chunk: chunk}, [chunk, chunk[:1]], {"a": chunk, chunk[:2]: [chunk[-1]]}):
            assert validation.canonical_text(value) == reference(value)


def test_control_characters_and_escapes_one_by_one():
    for code in [*range(0x00, 0x30), 0x5C, 0x7F, *range(0x80, 0xA1), 0x2028, 0x2029, 0xFEFF, 0xFFFF]:
        character = chr(code)
        value = {character: character, f"k{character}": [character * 2]}
        assert validation.canonical_text(value) == reference(value), hex(code)


def test_keys_are_sorted_by_code_point_as_json_sorts_them():
    rng = random.Random(14)
    alphabet = [
        "a",
        "B",
        "ä",
        "z",
        "Z",
        "0",
        " ",
        "\u00ff",
        "\u0100",
        "\uffff",
        "\U0001f600",
        "\U0010ffff",
        "",
    ]
    for _ in range(3000):
        keys = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3))) for _ in range(7)]
        value = {key: index for index, key in enumerate(keys)}
        assert validation.canonical_text(value) == reference(value), keys


@pytest.mark.parametrize(
    "number", [0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**40]
)
def test_integers_up_to_and_beyond_64_bits(number):
    value = {"n": number, "list": [number, -number]}
    assert validation.canonical_text(value) == reference(value)


@pytest.mark.parametrize("number", [1e-05, 1e-07, 0.1, 1.0, -0.0, 1e16, 1e22, 1.5e300, 5e-324, 123456789.125])
def test_floats_anywhere_are_written_as_json_writes_them(number):
    # 1e-05 is one that orjson writes differently (0.00001): the whole value takes json's writer.
    for value in ({"n": number}, {"deep": [{"x": [number]}]}, [1, "a", number]):
        assert validation.canonical_text(value) == reference(value)


def test_booleans_null_and_empty_containers():
    value = {"t": True, "f": False, "n": None, "l": [], "d": {}, "nested": [[], [{}], {"": None}]}
    assert validation.canonical_text(value) == reference(value)


def test_a_lone_surrogate_has_no_hash_whichever_writer_sees_it():
    assert validation.hash_and_text({"answers": {"q": "bad \ud800 text"}}) is None
    assert validation.hash_and_text({"answers": {"q": "bad \ud800 text", "x": 0.5}}) is None


def test_a_realistic_record_hashes_as_before():
    record = {
        "study": "ra-study",
        "answers": {"agency": "Ministère de l'Intérieur", "budget": 12000, "notes": "tab\there\nline"},
        "participants": [{"letter": "A", "consent_given": True, "consent_date": "2026-05-04"}],
        "quotes": [{"id": "7d3c5e2a-0000-4000-8000-000000000001", "start": 0, "end": 5, "tags": ["x"]}],
    }
    digest, text = validation.hash_and_text(record)
    assert text == reference(record)
    assert digest == validation.content_hash(record)
    assert validation.canonical_json(record) == reference(record).encode("utf-8")
