"""Who owns a participant's registry fields, and how their values are compared and kept as JSON.

A participant's agency, position and consent fields live in the registry. A pushed record carries
its copy of them (``participants[]``), and the registry follows the record, except for a field a
coordinator changed that no pushed record has carried since: the coordinator owns it, and a push
that disagrees with it cannot have seen the correction, so its value is kept as a field conflict
instead of being applied. A push that carries the registry's value hands the field back to the
record. (``participants.coordinator_fields`` lists the owned fields, comma-separated.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from typing import Any

from surveykit.participants.models import OWNABLE_FIELDS


def parse_owned(stored: str | None) -> set[str]:
    return {name for name in (stored or "").split(",") if name in OWNABLE_FIELDS}


def format_owned(fields: Iterable[str]) -> str:
    return ",".join(name for name in OWNABLE_FIELDS if name in set(fields))


def jsonable(value: Any) -> Any:
    """A registry value as JSON: dates as YYYY-MM-DD, everything else as it is."""
    return value.isoformat() if isinstance(value, date) else value


def key(value: Any) -> str:
    """A hashable key for a JSON value (``True`` and ``1`` must not be the same key)."""
    return json.dumps(value, sort_keys=True)
