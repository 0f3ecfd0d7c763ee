"""The sync protocol's logic, in modules along its seams; this one names what callers use.

- ``push``: deciding and storing batches of record changes (``push_batch``, ``Writer``), and the
  registry fields a push carries (field ownership, field conflicts), with what it holds while
  deciding in ``batch_state`` and the statements it writes with in ``write_statements``;
- ``receipts``: what a push answers, and the JSON of records and conflicts that answers share;
- ``callers``: who pushes and reads, with which roles;
- ``pull``: the change feed (``pull``);
- ``conflicts``: record and field conflicts, listed and resolved by coordinators.

Imports go one way: ``pull`` and ``conflicts`` use ``push`` and ``receipts``; nothing imports this
module but the views, the tests and other packages.
"""

from __future__ import annotations

from surveykit.sync.callers import MANAGER_ROLES, READ_ROLES, Caller, covers
from surveykit.sync.conflicts import (
    ConflictAlreadyResolved,
    ConflictNotFound,
    FieldConflictNotFound,
    FieldResolution,
    Resolution,
    ResolutionInvalid,
    StaleFieldResolution,
    StaleResolution,
    conflict_scope,
    field_conflict_scope,
    history,
    list_conflicts,
    list_field_conflicts,
    resolve_conflict,
    resolve_field_conflict,
)
from surveykit.sync.pull import CursorAhead, pull
from surveykit.sync.push import Writer, push_batch
from surveykit.sync.receipts import (
    RESULTS,
    BatchOutcome,
    ChangeResult,
    conflict_json,
    interview_json,
    receipt,
)

__all__ = [
    "MANAGER_ROLES",
    "READ_ROLES",
    "RESULTS",
    "BatchOutcome",
    "Caller",
    "ChangeResult",
    "ConflictAlreadyResolved",
    "ConflictNotFound",
    "CursorAhead",
    "FieldConflictNotFound",
    "FieldResolution",
    "StaleFieldResolution",
    "Resolution",
    "ResolutionInvalid",
    "StaleResolution",
    "Writer",
    "conflict_json",
    "conflict_scope",
    "field_conflict_scope",
    "list_field_conflicts",
    "resolve_field_conflict",
    "covers",
    "history",
    "interview_json",
    "list_conflicts",
    "pull",
    "push_batch",
    "receipt",
    "resolve_conflict",
]
