"""Filters the console's templates use."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(value: datetime | str | None) -> str:
    """A time (or an ISO 8601 text, as the services describe times) as people read it: UTC, to the
    minute ("2026-12-06 04:15 UTC")."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")
