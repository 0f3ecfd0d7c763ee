"""What a coordinator looks at before resolving a conflict: one conflict with its current record, the
two records compared field by field, a merge of chosen fields, and the interview's revision history.

Nothing here stores anything: a merged record is resolved through ``conflicts.resolve_conflict`` like
any other, and validated there exactly as a push is.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveykit.accounts.models import User
from surveykit.participants.models import Participant
from surveykit.studies.models import Study
from surveykit.sync.conflicts import field_conflict_json
from surveykit.sync.models import FieldConflict, Interview, InterviewRevision
from surveykit.sync.receipts import conflict_json

# They name the interview, which a conflict never changes (a resolution refuses to): not compared.
IDENTITY_FIELDS = ("study", "country", "activity", "interview_number")
# Top-level fields in the order the record format lists them; others follow in their own order.
# probes_used is compared, kept or taken as one field: the ticks of every question together.
RECORD_FIELDS = ("instrument", "language", "mode", "started_at", "ended_at", "status", "notes", "probes_used")
PARTICIPANT_FIELDS = (
    "agency",
    "position",
    "consent_given",
    "consent_date",
    "consent_recorded_how",
)


class _Missing:
    """A field one of the two records does not have at all (unlike ``None``, a field set to null)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


class UnknownField(ValueError):
    def __init__(self, path: str) -> None:
        super().__init__(f"{path!r} is not a field of these records")
        self.path = path


@dataclass(frozen=True)
class FieldComparison:
    """One field of the two records. ``path`` names it for ``merge_records``: ``mode``,
    ``answers.<question id>``, ``participants.<letter>.<field>``, ``participants.<letter>`` (a
    participant only one record has) or ``quotes`` (the quotes as a whole)."""

    path: str
    group: str
    name: str
    current: Any
    incoming: Any

    @property
    def differs(self) -> bool:
        if self.path == "probes_used":
            return _ticks(self.current) != _ticks(self.incoming)
        return _normal(self.current) != _normal(self.incoming)


def _normal(value: Any) -> Any:
    # A missing field and a null one read the same in a record (unanswered, no position).
    return None if value is MISSING else value


def _ticks(value: Any) -> Any:
    # No probes_used, null, {} and empty lists all mean nothing ticked; the order of ticks is no change.
    if not isinstance(value, dict):
        return _normal(value) or None
    try:
        return {qid: sorted(ticks) for qid, ticks in value.items() if ticks} or None
    except TypeError:
        return value


def _participants(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    people = record.get("participants")
    if not isinstance(people, list):
        return {}
    return {
        person["letter"]: person
        for person in people
        if isinstance(person, dict) and isinstance(person.get("letter"), str)
    }


def _keys_in_order(*dicts: dict[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for value in dicts:
        for key in value:
            seen.setdefault(key, None)
    return list(seen)


def compare_records(current: dict[str, Any], incoming: dict[str, Any]) -> list[FieldComparison]:
    """Every field of two versions of one record, side by side, in the record format's order."""
    rows: list[FieldComparison] = []
    top = [key for key in _keys_in_order(current, incoming) if key not in IDENTITY_FIELDS]
    ordered = [key for key in RECORD_FIELDS if key in top] + [
        key for key in top if key not in RECORD_FIELDS and key not in ("participants", "answers", "quotes")
    ]
    for key in ordered:
        rows.append(
            FieldComparison(key, "record", key, current.get(key, MISSING), incoming.get(key, MISSING))
        )
    mine, theirs = _participants(current), _participants(incoming)
    for letter in sorted(set(mine) | set(theirs)):
        if letter in mine and letter in theirs:
            fields = list(PARTICIPANT_FIELDS) + [
                name
                for name in _keys_in_order(mine[letter], theirs[letter])
                if name not in PARTICIPANT_FIELDS and name != "letter"
            ]
            for name in fields:
                rows.append(
                    FieldComparison(
                        f"participants.{letter}.{name}",
                        f"participant {letter}",
                        name,
                        mine[letter].get(name, MISSING),
                        theirs[letter].get(name, MISSING),
                    )
                )
        else:
            rows.append(
                FieldComparison(
                    f"participants.{letter}",
                    f"participant {letter}",
                    "the whole participant",
                    mine.get(letter, MISSING),
                    theirs.get(letter, MISSING),
                )
            )
    answers_now = current.get("answers") if isinstance(current.get("answers"), dict) else {}
    answers_in = incoming.get("answers") if isinstance(incoming.get("answers"), dict) else {}
    for question in _keys_in_order(answers_now, answers_in):
        rows.append(
            FieldComparison(
                f"answers.{question}",
                "answers",
                question,
                answers_now.get(question, MISSING),
                answers_in.get(question, MISSING),
            )
        )
    if "quotes" in current or "quotes" in incoming:
        rows.append(
            FieldComparison(
                "quotes", "quotes", "quotes", current.get("quotes", MISSING), incoming.get("quotes", MISSING)
            )
        )
    return rows


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is MISSING:
        target.pop(key, None)
    else:
        target[key] = copy.deepcopy(value)


def merge_records(
    current: dict[str, Any], incoming: dict[str, Any], take_incoming: Iterable[str]
) -> dict[str, Any]:
    """``current`` with the fields named in ``take_incoming`` (paths of ``compare_records``) taken
    from ``incoming``; every other field stays as it is now. ``UnknownField`` for a path that names
    no field of either record."""
    merged = copy.deepcopy(current)
    known = {row.path: row for row in compare_records(current, incoming)}
    people = {letter: dict(person) for letter, person in _participants(merged).items()}
    touched_people = False
    for path in take_incoming:
        row = known.get(path)
        if row is None:
            raise UnknownField(path)
        parts = path.split(".", 2)
        if parts[0] == "participants":
            touched_people = True
            letter = parts[1]
            if len(parts) == 2:
                if row.incoming is MISSING:
                    people.pop(letter, None)
                else:
                    people[letter] = copy.deepcopy(row.incoming)
            else:
                _put(people[letter], parts[2], row.incoming)
        elif parts[0] == "answers" and len(parts) > 1 and row.group == "answers":
            answers = merged.setdefault("answers", {})
            _put(answers, path.split(".", 1)[1], row.incoming)
        else:
            _put(merged, path, row.incoming)
    if touched_people:
        merged["participants"] = [people[letter] for letter in sorted(people)]
    return merged


# ---------------------------------------------------------------------------------- loading


def get_conflict(session: Session, conflict_id: int) -> dict[str, Any] | None:
    """One record conflict as the API lists it (with ``current``), or None."""
    row = session.execute(
        select(InterviewRevision, Interview, Study.slug, User.username)
        .join(Interview, Interview.uuid == InterviewRevision.interview_uuid)
        .join(Study, Study.id == Interview.study_id)
        .join(User, User.id == InterviewRevision.user_id)
        .where(InterviewRevision.id == conflict_id, InterviewRevision.kind == "conflict")
    ).first()
    if row is None:
        return None
    conflict, interview, slug, username = row
    body = conflict_json(conflict, interview, slug, username)
    body["activity"] = interview.activity
    body["interview_number"] = interview.interview_number
    return body


def get_field_conflict(session: Session, conflict_id: int) -> dict[str, Any] | None:
    """One field conflict as the API lists it, or None."""
    row = session.execute(
        select(FieldConflict, Participant, Study.slug, User.username)
        .join(Participant, Participant.id == FieldConflict.participant_id)
        .join(Study, Study.id == Participant.study_id)
        .join(User, User.id == FieldConflict.user_id)
        .where(FieldConflict.id == conflict_id)
    ).first()
    if row is None:
        return None
    conflict, participant, slug, username = row
    return field_conflict_json(conflict, participant, slug, username)


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    kind: str  # accepted or conflict
    revision: int | None
    base_revision: int
    content_hash: str
    received_at: datetime
    user: str
    device_id: str | None
    resolution: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_revision: int | None
    # Paths (as ``compare_records`` names them) that differ from the revision this one was based on.
    changed: tuple[str, ...]


def revision_history(session: Session, uuid: str) -> list[HistoryEntry]:
    """Every revision of a record and every conflict, in the order they arrived, each with the
    fields it changed against its base revision."""
    rows = session.execute(
        select(InterviewRevision, User.username)
        .join(User, User.id == InterviewRevision.user_id)
        .where(InterviewRevision.interview_uuid == uuid)
        .order_by(InterviewRevision.id)
    ).all()
    accepted = {rev.revision: rev.record for rev, _ in rows if rev.kind == "accepted"}
    entries = []
    for rev, username in rows:
        base = accepted.get(rev.base_revision)
        changed = (
            tuple(row.path for row in compare_records(base, rev.record) if row.differs)
            if base is not None
            else ()
        )
        entries.append(
            HistoryEntry(
                id=rev.id,
                kind=rev.kind,
                revision=rev.revision,
                base_revision=rev.base_revision,
                content_hash=rev.content_hash,
                received_at=rev.received_at,
                user=username,
                device_id=rev.device_id,
                resolution=rev.resolution,
                resolved_by=rev.resolved_by,
                resolved_at=rev.resolved_at,
                resolution_revision=rev.resolution_revision,
                changed=changed,
            )
        )
    return entries
