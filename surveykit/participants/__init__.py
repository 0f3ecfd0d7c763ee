"""The participant registry: anonymised IDs allocated by the server or minted offline from blocks."""

from __future__ import annotations

from typing import Any


def includeme(config: Any) -> None:
    """Routes of the registry (studies, participants, number blocks) are added here."""
