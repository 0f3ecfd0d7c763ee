"""colander schema for reading the audit log."""

from __future__ import annotations

from typing import Any

import colander

from surveykit.instruments.schemas import StrictString


def _text(name: str, max_length: int, **kw: Any) -> colander.SchemaNode:
    return colander.SchemaNode(StrictString(), name=name, validator=colander.Length(max=max_length), **kw)


class AuditQuerySchema(colander.MappingSchema):
    actor = _text("actor", 200, missing=None)
    action = _text("action", 64, missing=None)
    since = colander.SchemaNode(colander.DateTime(), missing=None)
    until = colander.SchemaNode(colander.DateTime(), missing=None)
    before = colander.SchemaNode(colander.Integer(), missing=None, validator=colander.Range(min=1))
    limit = colander.SchemaNode(colander.Integer(), missing=100, validator=colander.Range(min=1, max=1000))

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, typ=colander.Mapping(unknown="raise"), **kw)
