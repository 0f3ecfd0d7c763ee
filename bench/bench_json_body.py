"""Time to parse and check one sync body of 100 records (~4 KB each), by the ways considered.

A benchmark that prints figures, not a test. Each way ends with the same guarantees: the data,
invalid UTF-8 / NaN / infinities refused, depth at most 64, duplicate keys detected, and the body
scanned for characters the text rule refuses.

- ``stdlib``: decode, the character-by-character depth walk, ``json.loads`` with an
  ``object_pairs_hook`` that notices duplicate keys (the parse before orjson; still the path for
  bodies orjson refuses);
- ``orjson + hook``: orjson, then ``json.loads`` with the hook only to find duplicate keys;
- ``orjson + walk``: orjson, a Python walk over the parsed containers for the depth, and the
  colon count below for duplicate keys;
- ``orjson + counts`` (what ``surveykit.web`` does): orjson inside 960 arrays (its own depth limit of
  1,024 then stops the body at 64), and the body's colons counted against those of orjson's own
  serialisation of the data (a dropped duplicate key is a missing colon), all at C speed.

    .venv/bin/python bench/bench_json_body.py [--records 100] [--repeat 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import RecordFactory  # noqa: E402

from surveykit import web  # noqa: E402


def body(records: int) -> bytes:
    factory = RecordFactory()
    changes = []
    for number in range(1, records + 1):
        uuid, text, _ = factory.make("KE", number)
        changes.append(f'{{"base_revision":0,"record":{text},"uuid":"{uuid}"}}')
    return f'{{"changes":[{",".join(changes)}]}}'.encode()


def suspect(raw: bytes) -> bool:
    text = raw.decode("utf-8")
    return bool(web._SUSPECT_ESCAPE.search(text) or web._may_hold_raw_control(raw, text))


def stdlib(raw: bytes) -> Any:
    data = web._parse_json_strictly(raw)
    text = raw.decode("utf-8")
    web._SUSPECT_ESCAPE.search(text) or web._SUSPECT_RAW.search(text)
    return data


def orjson_and_hook(raw: bytes) -> Any:
    data = orjson.loads(raw)

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            raise ValueError("duplicate")
        return obj

    json.loads(raw, object_pairs_hook=hook)
    suspect(raw)
    return data


def orjson_and_walk(raw: bytes) -> Any:
    data = orjson.loads(raw)

    def walk(item: Any, depth: int) -> None:
        if depth > web.MAX_JSON_DEPTH:
            raise ValueError("deep")
        if isinstance(item, dict):
            for child in item.values():
                if isinstance(child, dict | list):
                    walk(child, depth + 1)
        else:
            for child in item:
                if isinstance(child, dict | list):
                    walk(child, depth + 1)

    walk(data, 1)
    assert not web._may_repeat_a_key(raw, data)
    suspect(raw)
    return data


def orjson_and_counts(raw: bytes) -> Any:
    data = web._parse_json(raw)
    suspect(raw)
    return data


WAYS = {
    "stdlib (before)": stdlib,
    "orjson + hook": orjson_and_hook,
    "orjson + walk": orjson_and_walk,
    "orjson + counts (now)": orjson_and_counts,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100, help="records in the body (default 100)")
    parser.add_argument("--repeat", type=int, default=200, help="parses per timing (default 200)")
    args = parser.parse_args()
    raw = body(args.records)
    expected = json.loads(raw)
    print(f"body: {args.records} records, {len(raw):,} bytes; best of 5 runs of {args.repeat} parses")
    for name, way in WAYS.items():
        assert way(raw) == expected, name
        best = min(timeit.repeat(lambda way=way: way(raw), number=args.repeat, repeat=5)) / args.repeat
        print(f"  {name:24} {best * 1000:7.2f} ms")
    depth_walk = min(timeit.repeat(lambda: web._nesting_depth_exceeds(raw.decode(), 64), number=20, repeat=5))
    print(f"  (the character walk alone: {depth_walk / 20 * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
