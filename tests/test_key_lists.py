"""Statements that look up a list of keys (``surveykit.db.in_parameter``, ``rows_in_parameter``):
the same rows as ``IN`` on every database, and on PostgreSQL one statement text for any number of
keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select

from surveykit.db import in_parameter, rows_in_parameter, rows_parameter


def _table(connection: Any) -> Table:
    metadata = MetaData()
    table = Table(
        "key_list_rows",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("study", Integer, nullable=False),
        Column("country", String(2), nullable=False),
        Column("number", Integer, nullable=False),
    )
    metadata.create_all(connection)
    connection.execute(
        insert(table),
        [
            {"id": 1, "study": 1, "country": "KE", "number": 4},
            {"id": 2, "study": 1, "country": "KE", "number": 5},
            {"id": 3, "study": 1, "country": "UG", "number": 4},
            {"id": 4, "study": 2, "country": "KE", "number": 4},
        ],
    )
    return table


def _statements(connection: Any) -> list[str]:
    seen: list[str] = []
    event.listen(connection, "before_cursor_execute", lambda _c, _cu, text, *_rest: seen.append(text))
    return seen


def test_a_list_of_values_finds_what_in_finds(connection: Any) -> None:
    table = _table(connection)
    dialect = connection.dialect.name
    by_country = select(table.c.id).where(in_parameter(table.c.country, "countries", dialect))
    seen = _statements(connection)

    def ids(countries: list[str]) -> list[int]:
        return sorted(connection.execute(by_country, {"countries": countries}).scalars())

    assert ids(["KE"]) == [1, 2, 4]
    assert ids(["UG", "KE", "TZ"]) == [1, 2, 3, 4]
    # A value longer than the column is compared whole, never cut to the column's length.
    assert ids(["KEN", "UGA"]) == []
    assert ids([]) == []
    assert ids(["KE"]) == [1, 2, 4]
    if dialect == "postgresql":
        assert len(set(seen)) == 1, "one statement text for any number of values"


def test_a_list_of_rows_finds_what_a_row_value_in_finds(connection: Any) -> None:
    table = _table(connection)
    dialect = connection.dialect.name
    columns = [table.c.study, table.c.country, table.c.number]
    by_key = select(table.c.id).where(rows_in_parameter(columns, "keys", dialect))
    seen = _statements(connection)

    def ids(keys: list[tuple[int, str, int]]) -> list[int]:
        return sorted(connection.execute(by_key, rows_parameter("keys", keys, 3, dialect)).scalars())

    assert ids([(1, "KE", 4)]) == [1]
    # Each row matches as a whole: (1, KE, 4) and (2, UG, 5) do not find (1, UG, 4) or (2, KE, 4).
    assert ids([(1, "KE", 4), (2, "UG", 5)]) == [1]
    assert ids([(1, "KE", 5), (1, "UG", 4), (2, "KE", 4), (9, "KE", 4)]) == [2, 3, 4]
    assert ids([(1, "KEN", 4)]) == []
    if dialect == "postgresql":
        assert len(set(seen)) == 1, "one statement text for any number of rows"
