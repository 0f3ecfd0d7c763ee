"""Keeping codings on their passages when a new revision of an interview is accepted.

A coding holds its passage's text and offsets (Unicode code points) in the answer of the revision it
was last anchored to. When a later revision is accepted, each coding of that interview is re-checked
against the new answer:

- the same text at the same offsets: kept (``anchored_revision`` becomes the new revision);
- the same text elsewhere in the answer: moved to the occurrence nearest the old offsets and flagged
  ``moved`` until a coder confirms it;
- the text is nowhere in the answer, or the answer (or its question) is gone, or is no longer text:
  flagged ``vanished``, offsets and text kept as they were coded. A coding is never deleted here.

The sync push calls ``reanchor`` once per batch with the interviews it revised: one query over
``codings`` by interview (indexed), nothing more when none of them is coded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from surveykit.analysis.models import Coding
from surveykit.db import utcnow

_CODINGS = Coding.__table__
# The push path's one query (a Core statement, compiled once): which revised interviews are coded.
CODED_INTERVIEWS = (
    select(_CODINGS.c.interview_uuid)
    .where(_CODINGS.c.interview_uuid.in_(bindparam("uuids", expanding=True)))
    .distinct()
)


@dataclass(frozen=True)
class Placement:
    anchor: str  # current, moved or vanished
    start: int
    end: int


def place(text: str, start: int, end: int, answer: Any) -> Placement:
    """Where the passage ``text`` (coded at ``start``..``end``) is in ``answer``, a revision's answer."""
    if not isinstance(answer, str):
        return Placement("vanished", start, end)
    if answer[start:end] == text:
        return Placement("current", start, end)
    found = []
    position = answer.find(text)
    while position != -1:
        found.append(position)
        position = answer.find(text, position + 1)
    if not found:
        return Placement("vanished", start, end)
    nearest = min(found, key=lambda candidate: (abs(candidate - start), candidate))
    return Placement("moved", nearest, nearest + len(text))


@dataclass
class Reanchoring:
    """What one batch's re-check did to the codings of the interviews it revised."""

    kept: int = 0
    moved: int = 0
    vanished: int = 0
    # Codings that became moved or vanished (or moved again) in this batch.
    flagged: int = 0
    interviews: list[str] = field(default_factory=list)

    def audit_details(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "moved": self.moved,
            "vanished": self.vanished,
            "flagged": self.flagged,
            "interviews": self.interviews[:50],
        }


def reanchor(session: Session, revised: dict[str, tuple[int, dict[str, Any]]]) -> Reanchoring:
    """Re-check the codings of the interviews in ``revised`` (uuid -> (new revision, new record))."""
    outcome = Reanchoring()
    if not revised:
        return outcome
    coded = session.connection().execute(CODED_INTERVIEWS, {"uuids": sorted(revised)}).scalars().all()
    if not coded:
        return outcome
    # Locked (the push holds the interviews already): a coding being made or re-placed on one of
    # them either committed before this read, or waits and is then made against the new revision.
    codings = session.scalars(
        select(Coding)
        .where(Coding.interview_uuid.in_(sorted(coded)))
        .order_by(Coding.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    now = utcnow()
    touched: set[str] = set()
    for coding in codings:
        revision, record = revised[coding.interview_uuid]
        answers = record.get("answers")
        answer = answers.get(coding.question_id) if isinstance(answers, dict) else None
        placement = place(coding.text, coding.start_offset, coding.end_offset, answer)
        touched.add(coding.interview_uuid)
        if placement.anchor == "current":
            outcome.kept += 1
            coding.anchored_revision = revision
            if coding.anchor == "vanished":
                # The passage is back where it was coded: a coder should look at it again.
                coding.anchor = "moved"
                outcome.flagged += 1
            coding.updated_at = now
        elif placement.anchor == "moved":
            outcome.moved += 1
            if (coding.start_offset, coding.end_offset) != (placement.start, placement.end) or (
                coding.anchor != "moved"
            ):
                outcome.flagged += 1
            coding.start_offset, coding.end_offset = placement.start, placement.end
            coding.anchor = "moved"
            coding.anchored_revision = revision
            coding.updated_at = now
        else:
            outcome.vanished += 1
            if coding.anchor != "vanished":
                outcome.flagged += 1
                coding.anchor = "vanished"
                coding.updated_at = now
    outcome.interviews = sorted(touched)
    return outcome
