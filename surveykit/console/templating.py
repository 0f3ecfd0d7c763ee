"""Filters the console's templates use."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(value: datetime | None) -> str:
    """A stored time as people read it: UTC, to the minute ("2026-12-06 04:15 UTC")."""
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")
