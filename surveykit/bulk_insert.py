"""Many rows into one table in one statement: ``COPY … FROM STDIN`` on PostgreSQL, executemany elsewhere.

psycopg runs an executemany as one prepared INSERT per row (pipelined): the driver adapts and sends
each row as its own statement, and the server starts an executor for each. A push of 25 records
writes about 175 rows that way. ``COPY`` sends them as one stream the server parses in one
statement, with the same constraints, foreign keys and triggers.

The rows get what an executemany would have given them: each value through its column type's bind
processor (JSON serialised, UTC datetimes checked), the column's Python default where a row leaves
a column out, and the server's default (or NULL) for the rest. A failure is raised as SQLAlchemy
raises a failed statement (``IntegrityError`` and the like, after the engine's ``handle_error``
listeners), and the statement goes through the engine's ``before_cursor_execute`` and
``after_cursor_execute`` listeners like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, insert


@dataclass(frozen=True)
class _CopyPlan:
    statement: str
    # The columns the rows give, in the statement's order, read from each row in one call.
    given: Callable[[dict[str, Any]], tuple[Any, ...]]
    # (position, bind processor) of the given columns whose type converts the value.
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    # The columns the rows leave out that have a Python default, after the given ones:
    # (zero-argument callable or constant, bind processor).
    defaults: tuple[tuple[Any, Callable[[Any], Any] | None], ...]


_plans: dict[tuple[Table, frozenset[str], str], _CopyPlan | None] = {}


def insert_rows(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts keyed by column name, all with the same keys) into ``table``."""
    if not rows:
        return
    dialect = connection.dialect
    plan = None
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        keys = frozenset(rows[0])
        cache_key = (table, keys, dialect.name)
        if cache_key not in _plans:
            _plans[cache_key] = _copy_plan(connection, table, keys)
        plan = _plans[cache_key]
    if plan is None:
        connection.execute(insert(table), list(rows))
        return
    _copy(connection, plan, rows)


def _copy_plan(connection: Connection, table: Table, keys: frozenset[str]) -> _CopyPlan | None:
    """How rows with ``keys`` are copied, or None where only an INSERT does what they need (a
    default that is an SQL expression or a sequence, or rows that give no column). A key that is
    no column is left out, as an executemany leaves it."""
    dialect = connection.dialect
    preparer = dialect.identifier_preparer
    given: list[str] = []
    processors: list[tuple[int, Callable[[Any], Any]]] = []
    defaults: list[tuple[Any, Callable[[Any], Any] | None]] = []
    defaulted: list[str] = []
    for column in table.columns:
        processor = column.type.dialect_impl(dialect).bind_processor(dialect)
        if column.key in keys:
            if processor is not None:
                processors.append((len(given), processor))
            given.append(column.key)
        elif column.default is not None:
            default = column.default
            if getattr(default, "is_scalar", False):
                defaults.append((default.arg, processor))  # type: ignore[attr-defined]
            elif getattr(default, "is_callable", False):
                function = default.arg  # type: ignore[attr-defined]
                defaults.append((lambda function=function: function(None), processor))
            else:
                return None
            defaulted.append(column.name)
        # Otherwise the server's default, an identity or NULL, as an INSERT leaving it out.
    if not given:
        return None
    names = [table.c[key].name for key in given] + defaulted
    statement = f"COPY {preparer.format_table(table)} ({', '.join(map(preparer.quote, names))}) FROM STDIN"
    getter = itemgetter(*given)
    read = getter if len(given) > 1 else lambda row: (getter(row),)
    return _CopyPlan(statement, read, tuple(processors), tuple(defaults))


def _row_values(plan: _CopyPlan, row: dict[str, Any]) -> list[Any]:
    values = list(plan.given(row))
    for position, processor in plan.processors:
        values[position] = processor(values[position])
    for default, processor in plan.defaults:
        value = default() if callable(default) else default
        values.append(processor(value) if processor is not None else value)
    return values


def _copy(connection: Connection, plan: _CopyPlan, rows: Sequence[dict[str, Any]]) -> None:
    values = [_row_values(plan, row) for row in rows]
    raw = connection.connection.driver_connection
    cursor = raw.cursor()  # type: ignore[union-attr]
    dispatch = connection.dispatch
    dispatch.before_cursor_execute(connection, cursor, plan.statement, values, None, True)
    try:
        with cursor.copy(plan.statement) as copy:
            for row in values:
                copy.write_row(row)
    except Exception as exc:
        connection._handle_dbapi_exception(exc, plan.statement, values, cursor, None)
    finally:
        cursor.close()
    dispatch.after_cursor_execute(connection, cursor, plan.statement, values, None, True)
