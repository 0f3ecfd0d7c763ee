"""Offline sync: interview records with full revision history, conflicts, receipts and a change feed."""

from __future__ import annotations

from typing import Any


def includeme(config: Any) -> None:
    """Routes of the sync protocol are added here."""
