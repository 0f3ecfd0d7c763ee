"""The sync protocol's pull: the change feed, each entry with its object as it is now.

A page holds up to a thousand records of several kilobytes each. Each record is sent as the JSON
text the database holds (``orjson.Fragment``), never parsed into Python objects and serialised
again: the page costs little more than copying those bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Row, Text, cast, select
from sqlalchemy.orm import Session

from surveykit.accounts.models import User
from surveykit.db import in_values
from surveykit.instruments.services import find_version
from surveykit.participants.models import Participant
from surveykit.participants.services import describe_participant
from surveykit.studies import feed
from surveykit.studies.models import Study
from surveykit.sync.models import Interview, InterviewRevision
from surveykit.sync.receipts import conflict_json

_interviews = Interview.__table__
_participants = Participant.__table__
# The current records with the JSON text as stored (json on PostgreSQL keeps the text it was given).
CURRENT_INTERVIEWS = select(
    _interviews.c.uuid,
    _interviews.c.revision,
    _interviews.c.content_hash,
    cast(_interviews.c.record, Text).label("record"),
    _interviews.c.updated_at,
    User.username,
).join(User, User.id == _interviews.c.interviewer_id)


class CursorAhead(ValueError):
    def __init__(self, cursor: int, top: int) -> None:
        super().__init__(f"cursor {cursor} is ahead of the study's change feed, which is at {top}")
        self.cursor = cursor
        self.top = top


def pull(
    session: Session, study: Study, countries: set[str] | None, cursor: int, limit: int
) -> dict[str, Any]:
    """Feed entries after ``cursor`` in ``countries`` (None: all), each with its current object."""
    # Read before the entries: every entry up to this number is committed and visible below.
    top = feed.current_sequence(session, study.id)
    if cursor > top:
        raise CursorAhead(cursor, top)
    entries = feed.read_changes(
        session, study.id, sorted(countries) if countries is not None else None, cursor, limit + 1
    )
    has_more = len(entries) > limit
    entries = entries[:limit]
    next_cursor = entries[-1].seq if entries else cursor
    if not has_more:
        # Nothing more in scope up to ``top``: the client may skip entries it cannot see.
        next_cursor = max(next_cursor, top)
    # Each entry carries the object as it is now, so only the last entry of a key is worth sending.
    last: dict[tuple[str, str], int] = {(entry.kind, entry.key): entry.seq for entry in entries}
    kept = [entry for entry in entries if last[(entry.kind, entry.key)] == entry.seq]
    objects = _current_objects(session, study, kept)
    return {
        "study": study.slug,
        "cursor": cursor,
        "next_cursor": next_cursor,
        "has_more": has_more,
        "changes": [
            {
                "seq": entry.seq,
                "kind": entry.kind,
                "key": entry.key,
                "country": entry.country_code,
                "at": entry.at,  # orjson writes it as isoformat() does
                "object": objects.get((entry.kind, entry.key)),
            }
            for entry in kept
        ],
    }


def _current_objects(
    session: Session, study: Study, entries: Sequence[Row[Any]]
) -> dict[tuple[str, str], Any]:
    keys: dict[str, set[str]] = {}
    for entry in entries:
        keys.setdefault(entry.kind, set()).add(entry.key)
    objects: dict[tuple[str, str], Any] = {}
    dialect = session.get_bind().dialect.name
    uuids = keys.get("interview", set())
    if uuids:
        rows = session.execute(
            CURRENT_INTERVIEWS.where(in_values(_interviews.c.uuid, sorted(uuids), dialect))
        )
        for uuid, revision, content_hash, record, updated_at, username in rows:
            objects[("interview", uuid)] = {
                "uuid": uuid,
                "revision": revision,
                "content_hash": content_hash,
                "record": orjson.Fragment(record),
                "updated_at": updated_at,
                "interviewer": username,
            }
    pkeys = keys.get("participant", set())
    if pkeys:
        numeric = sorted(int(key) for key in pkeys if key.isdigit())
        pids = sorted(key for key in pkeys if not key.isdigit())
        found = []
        if pids:
            found += session.execute(
                select(_participants).where(
                    _participants.c.study_id == study.id, in_values(_participants.c.pid, pids, dialect)
                )
            ).all()
        if numeric:
            found += session.execute(
                select(_participants).where(
                    _participants.c.study_id == study.id, in_values(_participants.c.id, numeric, dialect)
                )
            ).all()
        for participant in found:
            body = describe_participant(participant, study.slug, text_dates=False)
            objects[("participant", participant.pid)] = body
            objects[("participant", str(participant.id))] = body
    conflict_ids = sorted(int(key) for key in keys.get("conflict", set()) if key.isdigit())
    if conflict_ids:
        rows = session.execute(
            select(InterviewRevision, Interview, User.username)
            .join(Interview, Interview.uuid == InterviewRevision.interview_uuid)
            .join(User, User.id == InterviewRevision.user_id)
            .where(InterviewRevision.id.in_(conflict_ids), InterviewRevision.kind == "conflict")
        )
        for conflict, interview, username in rows:
            objects[("conflict", str(conflict.id))] = conflict_json(conflict, interview, study.slug, username)
    for key in keys.get("instrument", set()):
        slug, _, version = key.partition("@")
        try:
            ref = find_version(session, slug, int(version) if version.isdigit() else None)
        except LookupError:
            continue
        objects[("instrument", key)] = {
            "slug": ref.slug,
            "version": ref.version,
            "content_hash": ref.content_hash,
        }
    return objects
