"""Small helpers the command-line commands share: who is acting, tables for people, JSON for scripts."""

from __future__ import annotations

import getpass
import json
import re
from typing import Any


def operator() -> str:
    """The audit actor for a command run on the server: ``cli:<operating-system user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


# C0 and C1 controls, DEL, and the bidirectional overrides and isolates: a terminal acts on them
# (moves the cursor, erases lines, reorders text), so stored text could hide or fake other lines.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` for a terminal: every control character shown as an escape (``\\x1b``), not acted on."""
    return _UNPRINTABLE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def format_table(rows: list[list[str]]) -> str:
    """Left-aligned columns, a rule under the header row; control characters in cells are escaped."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def json_option(help_text: str = "Print JSON (one document) for scripts instead of a table.") -> Any:
    """The ``--json`` flag of the commands that list or hand out something."""
    import click

    return click.option("--json", "as_json", is_flag=True, help=help_text)


def echo_json(value: Any) -> None:
    """One JSON document on standard output. ASCII only: every control character and every other
    non-ASCII character is escaped, so nothing stored (an audit target, a label) can drive the
    terminal."""
    import click

    click.echo(json.dumps(value, ensure_ascii=True, indent=2))
