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


def _action_filter(node: colander.SchemaNode, value: str) -> None:
    if "*" in (value[:-2] if value.endswith(".*") else value):
        raise colander.Invalid(node, "an action (auth.login) or a family ending in '.*' (auth.*)")


def _time_range(node: colander.SchemaNode, value: dict[str, Any]) -> None:
    if value["since"] is not None and value["until"] is not None and value["since"] >= value["until"]:
        invalid = colander.Invalid(node)
        invalid.add(
            colander.Invalid(node["until"], "must be later than since"), node.children.index(node["until"])
        )
        raise invalid


class AuditQuerySchema(colander.MappingSchema):
    """Filters (actor, action, since inclusive, until exclusive, RFC 3339 times; a time without an
    offset is UTC) and keyset paging (``before``: the id the previous page's ``next_before`` gave)."""

    actor = _text("actor", 200, missing=None)
    action = colander.SchemaNode(
        StrictString(),
        name="action",
        validator=colander.All(colander.Length(max=64), _action_filter),
        missing=None,
    )
    since = colander.SchemaNode(BoundedDateTime(), missing=None)
    until = colander.SchemaNode(BoundedDateTime(), missing=None)
    before = colander.SchemaNode(
        colander.Integer(), missing=None, validator=colander.Range(min=1, max=MAX_EVENT_ID)
    )
    limit = colander.SchemaNode(colander.Integer(), missing=100, validator=colander.Range(min=1, max=1000))

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, typ=colander.Mapping(unknown="raise"), validator=_time_range, **kw)
