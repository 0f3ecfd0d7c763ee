"""``insert_rows``: one COPY per table on PostgreSQL, executemany elsewhere, and the same rows either way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    cast,
    event,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from surveykit.bulk_insert import insert_rows
from surveykit.db import StoredJSON, UTCDateTime

AWKWARD_TEXT = 'tab\there, line\nbreak, back\\slash, "quotes", \\N, null byte-free ünïcödé ✓'


def _tables(connection: Any) -> tuple[Table, Table, Table]:
    """A parent and two identical child tables (one filled by ``insert_rows``, one by INSERT)."""
    metadata = MetaData()
    parent = Table("bulk_parent", metadata, Column("id", Integer, primary_key=True))

    def child(name: str) -> Table:
        return Table(
            name,
            metadata,
            Column("id", Integer, primary_key=True),  # left to the database
            Column("parent_id", ForeignKey("bulk_parent.id"), nullable=False),
            Column("label", String(200), nullable=False, unique=True),
            Column("body", Text, nullable=True),
            Column("data", JSON, nullable=True),
            Column("flag", Boolean, nullable=True),
            Column("status", String(16), default="new"),  # a constant default
            Column("created_at", UTCDateTime, default=lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
            Column("note", String(16), server_default="from the server"),
        )

    tables = (parent, child("bulk_copied"), child("bulk_inserted"))
    metadata.create_all(connection)
    connection.execute(insert(parent), [{"id": 1}, {"id": 2}])
    return tables


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "parent_id": 1,
            "label": "plain",
            "body": "text",
            "data": {"b": [1, 2.5, None], "a": "x"},
            "flag": True,
        },
        {"parent_id": 2, "label": AWKWARD_TEXT, "body": AWKWARD_TEXT, "data": None, "flag": False},
        {"parent_id": 1, "label": "empty", "body": "", "data": [], "flag": None},
        {
            "parent_id": 2,
            "label": "stored",
            "body": None,
            "data": StoredJSON({"k": 1}, '{"k":1}'),
            "flag": True,
        },
    ]


def _content(connection: Any, table: Table) -> list[tuple[Any, ...]]:
    columns = [c for c in table.columns if c.name != "id"]
    return [tuple(row) for row in connection.execute(select(*columns).order_by(table.c.id))]


def test_the_rows_stored_are_those_an_insert_stores(connection: Any) -> None:
    _parent, copied, inserted = _tables(connection)
    insert_rows(connection, copied, _rows())
    connection.execute(insert(inserted), _rows())
    stored = _content(connection, copied)
    assert stored == _content(connection, inserted)
    assert [row[1] for row in stored] == ["plain", AWKWARD_TEXT, "empty", "stored"]
    assert stored[0][3] == {"b": [1, 2.5, None], "a": "x"}
    assert stored[1][3] is None  # a JSON column given None holds JSON null, as an INSERT stores it
    assert {row[5] for row in stored} == {"new"}
    assert {row[6] for row in stored} == {datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    assert {row[7] for row in stored} == {"from the server"}
    # The text given with a StoredJSON is what the column holds.
    texts = connection.execute(select(cast(copied.c.data, Text)).where(copied.c.label == "stored")).scalar()
    assert texts.replace(" ", "") == '{"k":1}'
    ids = connection.execute(select(copied.c.id).order_by(copied.c.id)).scalars().all()
    assert len(set(ids)) == 4


def test_postgresql_copies_and_other_databases_insert(connection: Any) -> None:
    _parent, copied, _inserted = _tables(connection)
    seen: list[tuple[str, bool]] = []

    def statement(_conn, _cursor, text, _parameters, _context, executemany) -> None:
        seen.append((text.split()[0].upper(), executemany))

    event.listen(connection, "before_cursor_execute", statement)
    try:
        insert_rows(connection, copied, _rows())
    finally:
        event.remove(connection, "before_cursor_execute", statement)
    assert seen == [("COPY" if connection.dialect.name == "postgresql" else "INSERT", True)]


def test_nothing_is_inserted_for_no_rows(connection: Any) -> None:
    _parent, copied, _inserted = _tables(connection)
    insert_rows(connection, copied, [])
    assert _content(connection, copied) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"parent_id": 1, "label": "plain"},  # taken by the first row
        {"parent_id": 99, "label": "orphan"},  # no such parent
        {"parent_id": None, "label": "no parent"},  # NOT NULL
    ],
    ids=["unique", "foreign key", "not null"],
)
def test_a_refused_row_raises_integrity_error_and_stores_nothing_of_the_statement(
    connection: Any, bad: dict[str, Any]
) -> None:
    _parent, copied, _inserted = _tables(connection)
    insert_rows(connection, copied, [{"parent_id": 1, "label": "plain"}])
    savepoint = connection.begin_nested()
    with pytest.raises(IntegrityError):
        insert_rows(connection, copied, [{"parent_id": 2, "label": "fine"}, bad])
    savepoint.rollback()
    assert [row[1] for row in _content(connection, copied)] == ["plain"]
    # The connection goes on working after the refusal.
    insert_rows(connection, copied, [{"parent_id": 2, "label": "after"}])
    assert [row[1] for row in _content(connection, copied)] == ["plain", "after"]


def test_a_key_that_is_not_a_column_is_left_out_as_an_insert_leaves_it(connection: Any) -> None:
    _parent, copied, inserted = _tables(connection)
    rows = [{"parent_id": 1, "label": "x", "colour": "red"}, {"parent_id": 2, "label": "y", "colour": "blue"}]
    insert_rows(connection, copied, rows)
    connection.execute(insert(inserted), rows)
    assert _content(connection, copied) == _content(connection, inserted)
    assert [row[1] for row in _content(connection, copied)] == ["x", "y"]
