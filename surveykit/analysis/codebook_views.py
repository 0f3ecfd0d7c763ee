"""Routes and views of the analysis package (filled in by its part)."""

from __future__ import annotations

from typing import Any


def includeme(config: Any) -> None:
    pass
