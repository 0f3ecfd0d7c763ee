"""Small helpers the command-line commands share: who is acting, tables for people, JSON for scripts."""

from __future__ import annotations

import getpass
import json
from typing import Any


def operator() -> str:
    """The audit actor for a command run on the server: ``cli:<operating-system user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def format_table(rows: list[list[str]]) -> str:
    """Left-aligned columns, a rule under the header row."""
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
