"""colander schema for reading the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import colander

from surveykit.instruments.schemas import StrictString


def _text(name: str, max_length: int, **kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(StrictString(), name=name, validator=colander.Length(max=max_length), **kw)


# The audit log's ids are 32-bit integers; its times lie well inside these bounds.
MAX_EVENT_ID = 2**31 - 1
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


class BoundedDateTime(colander.DateTime):
    """An ISO 8601 time, converted to UTC, between 1970-01-01 and 9999-01-01 (UTC): a time near the
    end of the calendar with a negative offset has no UTC form in Python, and nothing is that old."""

    def deserialize(self, node: colander.SchemaNode, cstruct: Any) -> Any:
        value = super().deserialize(node, cstruct)
        if value is colander.null:
            return value
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            value = None
        if value is None or not EARLIEST <= value < LATEST:
            raise colander.Invalid(node, "must be a time from 1970-01-01 to 9998-12-31 (UTC)")
        return value


class AuditQuerySchema(colander.MappingSchema):
    actor = _text("actor", 200, missing=None)
    action = _text("action", 64, missing=None)
    since = colander.SchemaNode(BoundedDateTime(), missing=None)
    until = colander.SchemaNode(BoundedDateTime(), missing=None)
    before = colander.SchemaNode(
        colander.Integer(), missing=None, validator=colander.Range(min=1, max=MAX_EVENT_ID)
    )
    limit = colander.SchemaNode(colander.Integer(), missing=100, validator=colander.Range(min=1, max=1000))

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, typ=colander.Mapping(unknown="raise"), **kw)
