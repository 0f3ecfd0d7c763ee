"""docs/sync.md stays true: its example record is valid for the RA1 schedule and hashes as shown."""

from __future__ import annotations

import json
import re
from typing import Any

from instrument_samples import RA1_FILE
from sqlalchemy.orm import Session
from test_sync_support import SyncWorld

from surveykit.config import PROJECT_ROOT
from surveykit.instruments import services as instruments
from surveykit.sync.validation import content_hash

DOC = (PROJECT_ROOT / "docs" / "sync.md").read_text(encoding="utf-8")
UUID = "7d4f1c2e-0b9a-4e57-9a52-3f0c1d2e4b6a"
CREATED_HASH = "36cda20bde10e021094110679b542adf2a81ddd1193af85cce95bc5c55895810"


def _example_record() -> dict[str, Any]:
    section = DOC.split("## The interview record", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_the_documented_record_is_created_with_the_documented_receipt(
    testapp: Any, accounts: Any, dbsession: Session
) -> None:
    instruments.publish_file(dbsession, RA1_FILE)
    world = SyncWorld(accounts, dbsession)
    tablet = world.tablet(["KE"])
    tablet.reserve("KE", 5)  # numbers 11 to 15, as in the documented block
    record = _example_record()
    assert content_hash(record) == CREATED_HASH
    assert CREATED_HASH in DOC
    answers = record["answers"]["gov_capacity"]
    quote = record["quotes"][0]
    assert answers[quote["start"] : quote["end"]] == quote["text"]

    result = tablet.push(testapp, [{"uuid": UUID, "base_revision": 0, "record": record}]).json["results"][0]
    assert (result["result"], result["revision"], result["content_hash"]) == ("created", 1, CREATED_HASH)
