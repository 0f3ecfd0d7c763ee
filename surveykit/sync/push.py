"""The sync protocol's push: deciding and storing batches of record changes.

Plain functions and classes over a SQLAlchemy session; the views only translate HTTP.

Pushing (``push_batch``) is batch-oriented: one ``SELECT ... FOR UPDATE`` locks every stored record
of the batch in UUID order (SQLite holds its single write lock anyway), so two requests touching one
record decide one after the other and take row locks in one order; a few more queries read what
deciding needs (dedup keys of earlier revisions, taken interview numbers, registered participants,
the device's number blocks, quote owners). Changes are then decided in Python in UUID order (stable,
so one record's changes keep their order), each against the state the changes before it left; every
check happens before anything is stored, so a bad change is refused alone without a savepoint. The
rows are written at the end with one executemany per table (Core statements, no ORM unit of work);
a write that loses a race (a concurrent create of the same UUID or number) raises IntegrityError and
the whole request is replayed. The change-feed numbers for the whole batch are taken last, once per
study, to hold the study's counter lock as briefly as possible. Nothing here commits: the request's
transaction does, before the response leaves (the view marks the session changed for zope.sqlalchemy,
which does not see Core writes).

Deciding one change (``uuid``, ``base_revision``, ``record``) with ``h`` = the record's content hash:

1. no record with that UUID: ``base_revision`` must be 0; the interview number must be the device's
   own (a block) or a registered interview; revision 1 is stored: ``created``;
2. a revision with the same ``(base_revision, h)`` was accepted before: ``unchanged``, with that
   revision's receipt (an identical retry, however late or out of order);
3. ``h`` is the current content: ``unchanged`` with the current receipt;
4. the same ``(base_revision, h)`` was stored as a conflict before: ``conflict`` again (same id);
5. ``base_revision`` is the current revision: the next revision is stored: ``updated``;
6. ``base_revision`` is older: the change is stored as a conflict revision: ``conflict``, with the
   current record in the answer; ``base_revision`` ahead of the server: ``rejected``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from surveykit.analysis import anchoring
from surveykit.bulk_insert import insert_rows
from surveykit.db import StoredJSON, rows_parameter, utcnow
from surveykit.errors import ConcurrentWrite, ErrorCode
from surveykit.instruments.models import Instrument, InstrumentVersion
from surveykit.instruments.services import load_definition
from surveykit.participants import ids
from surveykit.participants.models import Participant
from surveykit.studies import feed
from surveykit.studies.models import Study
from surveykit.sync import field_ownership, validation
from surveykit.sync.batch_state import (
    InterviewKey,
    InterviewState,
    OutOfScope,
    Pending,
    PersonState,
    RevisionKey,
    StudyInfo,
)
from surveykit.sync.callers import Caller
from surveykit.sync.models import Interview
from surveykit.sync.receipts import BatchOutcome, ChangeResult, Rejected, details, interview_json, summary
from surveykit.sync.validation import CompiledInstrument, Problem, RecordKey
from surveykit.sync.write_statements import (
    DELETE_QUOTES,
    INSERT_CONFLICTS,
    INSERT_FIELD_CONFLICTS,
    INTERVIEW_KEY_COLUMNS,
    INTERVIEWS,
    OPEN_FIELD_CONFLICTS,
    PARTICIPANT_FIELDS,
    PARTICIPANTS,
    QUOTES,
    REVISIONS,
    SET_PARTICIPANT_SEQ,
    STUDY_FACTS,
    UPDATE_INTERVIEWS,
    UPDATE_PARTICIPANTS,
    batch_reads,
)

MAX_REVISION = 2**31 - 1

# Versions are immutable: a compiled instrument never needs invalidating. The key includes the
# content hash, so a database rebuilt with other content under the same number is not confused.
_compiled: dict[tuple[str, int, str], CompiledInstrument] = {}


class Writer:
    """Validates and stores record changes for one caller inside the current transaction.

    A batch is read with a handful of queries (the records locked in UUID order, the dedup keys of
    their revisions, taken interview numbers, registered participants, the device's number blocks,
    quote owners), decided in Python one change at a time, and written at the end with one
    executemany per table (``write()``). Every check happens before anything is written, so a change
    that is refused leaves nothing behind and needs no savepoint. Call ``finish()`` once at the end:
    it takes the change-feed numbers for everything stored.
    """

    def __init__(self, session: Session, caller: Caller) -> None:
        self.session = session
        self.caller = caller
        self.now = utcnow()
        self._dialect = session.get_bind().dialect.name
        self._reads = batch_reads(self._dialect)
        self.refusals: list[dict[str, Any]] = []
        # Field conflicts stored (for the audit log): dicts of audit keywords, ids filled in on write.
        self.field_conflicts: list[dict[str, Any]] = []
        self._studies: dict[str, StudyInfo | None] = {}
        self._instruments: dict[tuple[str, int], CompiledInstrument | None] = {}
        # study id -> (kind, key) -> country, in the order of the last change of each key
        self._feed: dict[int, dict[tuple[str, str], str | None]] = {}
        # What the batch read, kept current as it is decided.
        self._records: dict[str, InterviewState] = {}
        self._locked: set[str] = set()  # UUIDs looked up with the lock_interviews read (stored or not)
        self._revision_keys: dict[tuple[str, int, str], RevisionKey] = {}
        self._revision_keys_read: set[tuple[str, int, str]] = set()
        self._numbers: dict[InterviewKey, str | None] = {}
        self._people: dict[InterviewKey, dict[str, PersonState]] = {}
        self._quote_owners: dict[str, str | None] = {}
        # The device's number blocks read so far, and the number ranges they were read for.
        self._blocks: list[tuple[int, str, str, int, int, bool]] = []
        self._block_ranges: list[tuple[int, int]] = []
        # What is to be written.
        self._created: dict[str, InterviewState] = {}
        self._updated: dict[str, InterviewState] = {}
        self._revision_rows: list[dict[str, Any]] = []
        self._conflict_rows: list[tuple[dict[str, Any], RevisionKey]] = []
        self._quote_rows: dict[str, list[dict[str, Any]]] = {}
        self._quotes_replaced: set[str] = set()
        self._people_changed: dict[tuple[int, str], PersonState] = {}
        # New field conflicts: (row, the answers waiting for its id)
        self._field_conflict_rows: list[tuple[dict[str, Any], list[dict[str, Any]], PersonState]] = []
        self._written_uuids: set[str] = set()
        self._written_people: set[int] = set()
        # content hash -> the canonical JSON text it covers, of the records of the batch
        self._texts: dict[str, str] = {}
        # Stored records given a new revision: their codings are re-anchored once, in finish().
        self._revised: dict[str, InterviewState] = {}
        self.reanchoring: anchoring.Reanchoring | None = None

    # -------------------------------------------------------------------------------- lookups

    def study(self, slug: str) -> StudyInfo | None:
        if slug not in self._studies:
            study_id: int | None = None
            codes: dict[str, set[str]] = {"country": set(), "activity": set()}
            for kind, found_id, code in self.session.execute(STUDY_FACTS, {"slug": slug}):
                study_id = found_id
                if kind != "study":
                    codes[kind].add(code)
            self._studies[slug] = (
                None if study_id is None else StudyInfo(study_id, slug, codes["country"], codes["activity"])
            )
        return self._studies[slug]

    def instrument(self, slug: str, version: int) -> CompiledInstrument | None:
        key = (slug, version)
        if key not in self._instruments:
            row = self.session.execute(
                select(InstrumentVersion.content_hash, Instrument.study)
                .join(Instrument, Instrument.id == InstrumentVersion.instrument_id)
                .where(Instrument.slug == slug, InstrumentVersion.version == version)
            ).first()
            if row is None:
                self._instruments[key] = None
            else:
                cache_key = (slug, version, row.content_hash)
                compiled = _compiled.get(cache_key)
                if compiled is None:
                    definition = load_definition(self.session, slug, version)
                    compiled = validation.compile_instrument(
                        definition, slug, version, row.content_hash, row.study
                    )
                    if len(_compiled) > 256:
                        _compiled.clear()
                    _compiled[cache_key] = compiled
                self._instruments[key] = compiled
        return self._instruments[key]

    def _stored(self, record: dict[str, Any], digest: str) -> Any:
        """What a JSON column is given for ``record``: its canonical text when the batch has it."""
        text = self._texts.get(digest)
        return record if text is None else StoredJSON(record, text)

    # ----------------------------------------------------------------------------- validation

    def validate(
        self, record: Any, prefix: str, canonical: str | None = None
    ) -> tuple[RecordKey | None, StudyInfo | None, list[Problem]]:
        """The record's key, its study, and every problem with it, paths prefixed by ``prefix``
        (``canonical``: the record's canonical JSON text, when known, saves walking it for text)."""
        unstorable = validation.check_text_of(record, canonical)
        if unstorable:
            return None, None, _prefixed(prefix, unstorable)
        key, problems = validation.read_key(record)
        if key is None:
            if isinstance(record, dict):
                problems += validation.check_record(record, None, self.now)
            return None, None, _prefixed(prefix, problems)
        study = self.study(key.study)
        if study is None:
            problems.append(("study", f"no study {key.study!r}"))
        else:
            if key.country not in study.countries:
                problems.append(("country", f"study {key.study} has no country {key.country}"))
            if key.activity not in study.activities:
                problems.append(("activity", f"study {key.study} has no research activity {key.activity}"))
        ref, ref_problems = validation.read_instrument_ref(record)
        problems += ref_problems
        instrument = None
        if ref is not None:
            instrument = self.instrument(ref.slug, ref.version)
            if instrument is None:
                missing = f"no published version {ref.version} of instrument {ref.slug!r}"
                problems.append(("instrument", missing))
            elif instrument.study is not None and instrument.study != key.study:
                problems.append(("instrument.slug", f"{ref.slug} belongs to study {instrument.study}"))
            elif instrument.activity != key.activity:
                other = f"{ref.slug} is an instrument of {instrument.activity}, not {key.activity}"
                problems.append(("instrument.slug", other))
        problems += validation.check_record(record, instrument, self.now)
        return key, study, _prefixed(prefix, problems)

    # ------------------------------------------------------------------------- batch reading

    def lock(self, uuid: str) -> InterviewState | None:
        self._lock([uuid])
        return self._records.get(uuid)

    def _lock(self, uuids: Sequence[str]) -> None:
        """Lock the stored records among ``uuids`` (in UUID order) and read them."""
        wanted = sorted(set(uuids) - self._locked)
        if not wanted:
            return
        self._locked.update(wanted)
        for row in self.session.execute(self._reads.lock_interviews, {"uuids": wanted}).mappings():
            self._records[row["uuid"]] = InterviewState(**row)

    def _load_revision_keys(self, keys: Iterable[tuple[str, int, str]]) -> None:
        keys = [key for key in keys if key not in self._revision_keys_read]
        if not keys:
            return
        self._revision_keys_read.update(keys)
        uuids = sorted({uuid for uuid, _, _ in keys})
        hashes = sorted({digest for _, _, digest in keys})
        rows = self.session.execute(self._reads.revision_keys, {"uuids": uuids, "hashes": hashes})
        for uuid, base, digest, kind, revision, revision_id, resolved_at in rows:
            self._revision_keys.setdefault(
                (uuid, base, digest), RevisionKey(kind, revision, revision_id, digest, resolved_at)
            )

    def _load_numbers(self, keys: Iterable[InterviewKey]) -> None:
        """Which UUID holds each of these interview numbers, if any."""
        wanted = sorted(set(keys) - self._numbers.keys())
        if not wanted:
            return
        for key in wanted:
            self._numbers[key] = None
        params = rows_parameter("keys", wanted, len(INTERVIEW_KEY_COLUMNS), self._dialect)
        rows = self.session.execute(self._reads.numbers, params)
        for uuid, *key in rows:
            self._numbers[tuple(key)] = uuid  # type: ignore[index]

    def _load_people(self, keys: Iterable[InterviewKey]) -> None:
        """The registered participants of these interviews, locked (in id order)."""
        wanted = sorted(set(keys) - self._people.keys())
        if not wanted:
            return
        for key in wanted:
            self._people[key] = {}
        params = rows_parameter("keys", wanted, len(INTERVIEW_KEY_COLUMNS), self._dialect)
        rows = self.session.execute(self._reads.people, params).mappings()
        held: dict[int, PersonState] = {}
        for row in rows:
            key = (row["study_id"], row["activity"], row["country_code"], row["interview_number"])
            values = {name: row[name] for name in PARTICIPANT_FIELDS}
            person = PersonState(row["id"], row["pid"], row["status"], values)
            person.coordinator_fields = field_ownership.parse_owned(row["coordinator_fields"])
            self._people[key][row["letter"]] = person
            if person.coordinator_fields:
                held[row["id"]] = person
        if held:
            for conflict_id, participant_id, name, incoming in self.session.execute(
                OPEN_FIELD_CONFLICTS, {"ids": sorted(held)}
            ):
                held[participant_id].open_conflicts.setdefault(name, {})[field_ownership.key(incoming)] = (
                    conflict_id
                )

    def _load_quote_owners(self, quote_ids: Iterable[str]) -> None:
        wanted = sorted(set(quote_ids) - self._quote_owners.keys())
        if not wanted:
            return
        for quote_id in wanted:
            self._quote_owners[quote_id] = None
        for quote_id, owner in self.session.execute(self._reads.quote_owners, {"ids": wanted}):
            self._quote_owners[quote_id] = owner

    def _device_blocks(self, lowest: int, highest: int) -> list[tuple[int, str, str, int, int, bool]]:
        """The device's blocks holding a number from ``lowest`` to ``highest`` (among others read
        before), read and share-locked unless a range read before covers it."""
        if not any(low <= lowest and highest <= high for low, high in self._block_ranges):
            known = set(self._blocks)
            params = {"device_id": self.caller.device_id, "lowest": lowest, "highest": highest}
            for row in self.session.execute(ids.DEVICE_BLOCKS, params):
                block = tuple(row)
                if block not in known:
                    known.add(block)  # type: ignore[arg-type]
                    self._blocks.append(block)  # type: ignore[arg-type]
            self._block_ranges.append((lowest, highest))
        return self._blocks

    def _read_batch(self, pending: Sequence[Pending]) -> None:
        """Everything deciding ``pending`` needs from the database, in a few queries."""
        keyed = [item for item in pending if item.key is not None]
        self._lock([item.uuid for item in keyed])
        # A revision belongs to a stored record (a foreign key): a new record's needs no lookup.
        self._load_revision_keys(
            (item.uuid, item.base, item.digest)
            for item in keyed
            if item.digest is not None and item.uuid in self._records
        )
        interviews: dict[str, InterviewKey] = {}
        for item in keyed:
            assert item.key is not None
            study = self.study(item.key.study)
            if study is not None:
                key = (study.id, item.key.activity, item.key.country, item.key.interview_number)
                interviews[item.uuid] = key
        self._load_numbers(key for uuid, key in interviews.items() if uuid not in self._records)
        self._load_people(interviews.values())
        new_numbers = [key[3] for uuid, key in interviews.items() if uuid not in self._records]
        if self.caller.device_id is not None and new_numbers:
            self._device_blocks(min(new_numbers), max(new_numbers))
        self._load_quote_owners(
            quote_id
            for item in keyed
            if isinstance(item.record.get("quotes"), list)
            for quote in item.record["quotes"]
            if isinstance(quote, dict) and (quote_id := validation.parse_uuid(quote.get("id"))) is not None
        )

    # --------------------------------------------------------------------------------- pushing

    def push(self, changes: Sequence[Any]) -> list[ChangeResult]:
        results: list[ChangeResult | None] = [None] * len(changes)

        def order(index: int) -> str:
            change = changes[index]
            uuid = validation.parse_uuid(change.get("uuid")) if isinstance(change, dict) else None
            return uuid or ""

        # Pending ORM changes of the caller must be visible to the Core reads below.
        self.session.flush()
        screened = [
            (index, self._screen(index, changes[index])) for index in sorted(range(len(changes)), key=order)
        ]
        pending = [item for _, item in screened if isinstance(item, Pending)]
        if pending:
            self._read_batch(pending)
        for index, item in screened:
            if isinstance(item, ChangeResult):
                results[index] = item
            elif isinstance(item, OutOfScope):
                results[index] = self._out_of_scope(
                    item.index, item.uuid, item.digest, item.study, item.country
                )
            else:
                results[index] = self._push_pending(item)
        return [result for result in results if result is not None]

    def _screen(self, index: int, change: Any) -> ChangeResult | Pending | OutOfScope:
        """The checks of a change's shape and of the caller's grants, which need no database."""
        prefix = f"changes[{index}]"
        if not isinstance(change, dict):
            problem = (prefix, "a change is an object with uuid, base_revision and record")
            return _rejected(index, None, None, ErrorCode.SYNC_RECORD_INVALID, [problem])
        problems: list[Problem] = [
            (f"{prefix}.{key}" if isinstance(key, str) else prefix, "unknown field")
            for key in change
            if key not in ("uuid", "base_revision", "record")
        ]
        uuid = validation.parse_uuid(change.get("uuid"))
        if uuid is None:
            problems.append((f"{prefix}.uuid", "required: the record's UUID (hyphenated hexadecimal)"))
        base = change.get("base_revision")
        if not validation.is_int(base) or not 0 <= base <= MAX_REVISION:
            problems.append((f"{prefix}.base_revision", "required: the revision it is based on, 0 if new"))
        record = change.get("record")
        hashed = validation.hash_and_text(record) if isinstance(record, dict) else None
        digest = hashed[0] if hashed is not None else None
        if hashed is not None:
            self._texts[hashed[0]] = hashed[1]
        if not isinstance(record, dict):
            problems.append((f"{prefix}.record", "required: the record, a JSON object"))
        if problems:
            return _rejected(index, uuid, digest, ErrorCode.SYNC_RECORD_INVALID, problems)
        assert uuid is not None and isinstance(record, dict)
        key, _ = validation.read_key(record)
        if key is not None and not self.caller.may_push(key.study, key.country):
            return OutOfScope(index, uuid, digest, key.study, key.country)
        return Pending(index, uuid, base, record, digest, key)

    def _push_pending(self, item: Pending) -> ChangeResult:
        index, uuid, base, record, digest = item.index, item.uuid, item.base, item.record, item.digest
        if item.key is not None and digest is not None:
            # A retry of an accepted change: its receipt never changes, so no new validation is
            # needed (and a retry stays answerable after the study's setup changed).
            earlier = self._revision_keys.get((uuid, base, digest))
            if earlier is not None and earlier.kind == "accepted":
                return ChangeResult(index, uuid, "unchanged", earlier.revision, digest)
        key, study, problems = self.validate(
            record, f"changes[{index}].record", self._texts.get(digest or "")
        )
        if problems or key is None or study is None or digest is None:
            return _rejected(index, uuid, digest, ErrorCode.SYNC_RECORD_INVALID, problems)
        try:
            return self._decide(index, uuid, base, record, digest, key, study)
        except Rejected as exc:
            return _rejected(index, uuid, digest, exc.code, exc.problems, exc.message)

    def _out_of_scope(
        self, index: int, uuid: str | None, digest: str | None, study: str, country: str
    ) -> ChangeResult:
        self.refusals.append(
            dict(action="sync.scope_refused", target=uuid, study=study, country=country, index=index)
        )
        problem = (
            f"changes[{index}].record.country",
            f"your grants do not allow pushing to {study}/{country}",
        )
        message = f"{study}/{country} is outside your grants"
        return _rejected(index, uuid, digest, ErrorCode.SYNC_OUT_OF_SCOPE, [problem], message)

    def _decide(
        self,
        index: int,
        uuid: str,
        base: int,
        record: dict[str, Any],
        digest: str,
        key: RecordKey,
        study: StudyInfo,
    ) -> ChangeResult:
        """Decide one change; raises ``Rejected`` before changing anything."""
        prefix = f"changes[{index}]"
        self._lock([uuid])
        interview = self._records.get(uuid)
        if interview is None:
            if base != 0:
                raise Rejected(
                    ErrorCode.SYNC_STALE_BASE,
                    f"the server has no record {uuid}",
                    [(f"{prefix}.base_revision", "unknown record: a new record has base_revision 0")],
                )
            self._check_new_number(prefix, uuid, key, study)
            interview = InterviewState(
                uuid=uuid,
                study_id=study.id,
                country_code=key.country,
                activity=key.activity,
                interview_number=key.interview_number,
                revision=0,
                content_hash=digest,
                record=record,
                status=record["status"],
                instrument_slug=record["instrument"]["slug"],
                instrument_version=record["instrument"]["version"],
                interviewer_id=self.caller.user_id,
                device_id=self.caller.device_id,
                created_at=self.now,
                updated_at=self.now,
            )
            # A concurrent create of the same UUID or number fails when written, and the request
            # is replayed.
            kept = self.accept(interview, record, digest, 0, key, study, f"{prefix}.record", previous=None)
            return ChangeResult(index, uuid, "created", interview.revision, digest, field_conflicts=kept)

        self._check_same_interview(prefix, interview, key, study)
        self._load_revision_keys([(uuid, base, digest)])
        earlier = self._revision_keys.get((uuid, base, digest))
        if earlier is not None and earlier.kind == "accepted":
            return ChangeResult(index, uuid, "unchanged", earlier.revision, digest)
        if digest == interview.content_hash:
            return ChangeResult(index, uuid, "unchanged", interview.revision, digest)
        if earlier is not None:
            return self._conflict_result(index, earlier, interview)
        if base > interview.revision:
            raise Rejected(
                ErrorCode.SYNC_STALE_BASE,
                f"base_revision {base} is ahead of the server's revision {interview.revision}",
                [(f"{prefix}.base_revision", f"the server's record is at revision {interview.revision}")],
            )
        if base == interview.revision:
            previous = interview.record
            kept = self.accept(
                interview, record, digest, base, key, study, f"{prefix}.record", previous=previous
            )
            return ChangeResult(index, uuid, "updated", interview.revision, digest, field_conflicts=kept)
        conflict = RevisionKey("conflict", None, None, digest)
        self._revision_keys[(uuid, base, digest)] = conflict
        self._conflict_rows.append(
            (
                {
                    "interview_uuid": uuid,
                    "kind": "conflict",
                    "revision": None,
                    "base_revision": base,
                    "content_hash": digest,
                    "record": record,
                    "user_id": self.caller.user_id,
                    "device_id": self.caller.device_id,
                    "received_at": self.now,
                },
                conflict,
            )
        )
        return self._conflict_result(index, conflict, interview)

    def _conflict_result(self, index: int, conflict: RevisionKey, interview: InterviewState) -> ChangeResult:
        result = ChangeResult(
            index,
            interview.uuid,
            "conflict",
            None,
            conflict.content_hash,
            conflict_id=conflict.id,
            conflict_status="resolved" if conflict.resolved_at is not None else "open",
            current=interview_json(interview),
        )
        if conflict.id is None:
            conflict.waiting.append(result)
        return result

    def _check_same_interview(
        self, prefix: str, interview: InterviewState, key: RecordKey, study: StudyInfo
    ) -> None:
        """A record keeps its study, country, activity and number for good."""
        if interview.study_id != study.id or interview.country_code != key.country:
            stored_study = self.session.scalar(select(Study.slug).where(Study.id == interview.study_id))
            if not self.caller.may_push(stored_study, interview.country_code):
                self.refusals.append(
                    {
                        "action": "sync.scope_refused",
                        "target": interview.uuid,
                        "study": stored_study,
                        "country": interview.country_code,
                    }
                )
                raise Rejected(
                    ErrorCode.SYNC_OUT_OF_SCOPE,
                    "the stored record is outside your grants",
                    [(f"{prefix}.uuid", "this record belongs to a study or country outside your grants")],
                )
        stored = {
            "study": (study.id, interview.study_id),
            "country": (key.country, interview.country_code),
            "activity": (key.activity, interview.activity),
            "interview_number": (key.interview_number, interview.interview_number),
        }
        problems = [
            (
                f"{prefix}.record.{name}",
                "cannot change once a record exists (it was stored with another value)",
            )
            for name, (sent, kept) in stored.items()
            if sent != kept
        ]
        if problems:
            raise Rejected(ErrorCode.SYNC_RECORD_INVALID, "a record's identity cannot change", problems)

    def _check_new_number(self, prefix: str, uuid: str, key: RecordKey, study: StudyInfo) -> None:
        path = f"{prefix}.record.interview_number"
        label = f"{key.activity}-{key.country}-{key.interview_number:02d}"
        number = (study.id, key.activity, key.country, key.interview_number)
        self._load_numbers([number])
        other = self._numbers[number]
        if other == uuid:
            # The record was not stored when its row was read, and is now: another request
            # created it in between (on PostgreSQL each statement sees what committed before it).
            raise ConcurrentWrite(f"{uuid} was created by a concurrent request")
        if other is not None:
            raise Rejected(
                ErrorCode.SYNC_RECORD_INVALID,
                f"interview {label} is already recorded",
                [(path, f"interview {label} is already recorded as {other}: send changes to that record")],
            )
        self._load_people([number])
        if self._people[number]:  # a registered interview
            return
        if self.caller.device_id is not None:
            released = False
            for block in self._device_blocks(key.interview_number, key.interview_number):
                if block[:3] == number[:3] and block[3] <= key.interview_number <= block[4]:
                    if not block[5]:
                        return
                    released = True
            if released:
                message = (
                    f"{label} lies in a number block of this device that a coordinator released: "
                    "the device mints no more IDs from it; record the interview under a number "
                    "from a new block (POST /api/v1/blocks)"
                )
            else:
                message = (
                    f"{label} is neither in a number block of this device nor a registered interview: "
                    "mint new IDs only from the device's blocks (POST /api/v1/blocks)"
                )
        else:
            message = (
                f"{label} is not a registered interview: register its participants first, "
                "or record it on a tablet with a number block"
            )
        self.refusals.append(
            {
                "action": "sync.number_refused",
                "target": label,
                "study": key.study,
                "country": key.country,
                "interview_number": key.interview_number,
            }
        )
        raise Rejected(ErrorCode.SYNC_NUMBER_REFUSED, message, [(path, message)])

    # ------------------------------------------------------------------------------- storing

    def accept(
        self,
        interview: InterviewState,
        record: dict[str, Any],
        digest: str,
        base: int,
        key: RecordKey,
        study: StudyInfo,
        record_path: str,
        previous: dict[str, Any] | None,
    ) -> list[dict[str, Any]]:
        """Store ``record`` as the next accepted revision of ``interview`` and everything it implies
        (revision 1 of a new record, whose ``revision`` is 0). Raises ``Rejected`` before changing
        anything; the rows are written by ``write()``. Returns the field conflicts it left."""
        uuid = interview.uuid
        quotes = validation.quote_rows(record)
        self._check_quote_ids(uuid, quotes, record_path)
        revision = interview.revision + 1
        self._revision_rows.append(
            {
                "interview_uuid": uuid,
                "kind": "accepted",
                "revision": revision,
                "base_revision": base,
                "content_hash": digest,
                "record": self._stored(record, digest),
                "user_id": self.caller.user_id,
                "device_id": self.caller.device_id,
                "received_at": self.now,
            }
        )
        self._revision_keys[(uuid, base, digest)] = RevisionKey("accepted", revision, None, digest)
        interview.revision = revision
        interview.content_hash = digest
        interview.record = record
        interview.status = record["status"]
        interview.instrument_slug = record["instrument"]["slug"]
        interview.instrument_version = record["instrument"]["version"]
        interview.updated_at = self.now
        if revision == 1:
            self._records[uuid] = interview
            self._created[uuid] = interview
            self._numbers[(study.id, key.activity, key.country, key.interview_number)] = uuid
        elif uuid not in self._created:
            self._updated[uuid] = interview
            self._quotes_replaced.add(uuid)
            self._revised[uuid] = interview
        kept = {quote["id"] for quote in quotes}
        for quote_id, owner in self._quote_owners.items():
            if owner == uuid and quote_id not in kept:
                self._quote_owners[quote_id] = None
        for quote_id in kept:
            self._quote_owners[quote_id] = uuid
        self._quote_rows[uuid] = [
            {
                **quote,
                "interview_uuid": uuid,
                "study_id": study.id,
                "country_code": key.country,
                "revision": revision,
            }
            for quote in quotes
        ]
        self._note(study.id, key.country, "interview", uuid)
        return self._upsert_participants(key, study, record, previous, uuid, revision)

    def _check_quote_ids(self, uuid: str, quotes: list[dict[str, Any]], record_path: str) -> None:
        if not quotes:
            return
        positions = {quote["id"]: index for index, quote in enumerate(quotes)}
        self._load_quote_owners(positions)
        taken = [
            quote_id
            for quote_id in positions
            if self._quote_owners[quote_id] is not None and self._quote_owners[quote_id] != uuid
        ]
        if taken:
            raise Rejected(
                ErrorCode.SYNC_RECORD_INVALID,
                "a quote id is used by another interview",
                [
                    (
                        f"{record_path}.quotes[{positions[quote_id]}].id",
                        "already the id of another interview's quote",
                    )
                    for quote_id in sorted(taken, key=positions.__getitem__)
                ],
            )

    def _upsert_participants(
        self,
        key: RecordKey,
        study: StudyInfo,
        record: dict[str, Any],
        previous: dict[str, Any] | None,
        uuid: str,
        revision: int,
    ) -> list[dict[str, Any]]:
        """The registry follows the record (one participant per letter, interviewed), except for
        fields a coordinator owns: a value that disagrees with one of those becomes a field conflict.
        Returns the field conflicts, as the push answers them."""
        number = (study.id, key.activity, key.country, key.interview_number)
        self._load_people([number])
        existing = self._people[number]
        changed: list[PersonState] = []
        conflicts: list[dict[str, Any]] = []
        before = {
            entry.get("letter"): entry
            for entry in (previous or {}).get("participants", [])
            if isinstance(entry, dict)
        }
        letters = set()
        for entry in record["participants"]:
            letter = entry["letter"]
            letters.add(letter)
            values = validation.participant_values(entry)
            participant = existing.get(letter)
            if participant is None:
                pid = ids.format_pid(key.activity, key.country, key.interview_number, letter)
                participant = PersonState(None, pid, "interviewed", values)
                participant.row = {
                    "study_id": study.id,
                    "activity": key.activity,
                    "country_code": key.country,
                    "interview_number": key.interview_number,
                    "letter": letter,
                    "pid": pid,
                    "created_at": self.now,
                    "created_by": self.caller.username,
                    "change_seq": 0,
                }
                existing[letter] = participant
                changed.append(participant)
                continue
            updates = {name: value for name, value in values.items() if participant.values[name] != value}
            for name in sorted(participant.coordinator_fields):
                if name not in updates:
                    # The record carries the registry's value: the tablet has caught up, and the
                    # field follows the record again.
                    participant.coordinator_fields.discard(name)
                    self._people_changed[(study.id, participant.pid)] = participant
                    continue
                incoming = updates.pop(name)
                base_entry = before.get(letter)
                base = validation.participant_values(base_entry)[name] if base_entry is not None else None
                conflicts.append(self._field_conflict(participant, name, incoming, base, uuid, revision))
            if participant.status == "planned":
                participant.status = "interviewed"
                changed.append(participant)
            elif updates:
                changed.append(participant)
            participant.values.update(updates)
        # A participant dropped from the record (the trailing letters) was not interviewed after all.
        dropped = {entry.get("letter") for entry in (previous or {}).get("participants", [])} - letters
        for letter in sorted(dropped):
            participant = existing.get(letter)
            if participant is not None and participant.status == "interviewed":
                participant.status = "planned"
                changed.append(participant)
        for participant in changed:
            self._people_changed[(study.id, participant.pid)] = participant
            self._note(study.id, key.country, "participant", participant.pid)
        return conflicts

    def _field_conflict(
        self, participant: PersonState, name: str, incoming: Any, base: Any, uuid: str, revision: int
    ) -> dict[str, Any]:
        """Keep a pushed value of a coordinator-owned field as a field conflict (one open conflict
        per participant, field and value: a retry or a later push of the same value reuses it)."""
        assert participant.id is not None  # a new participant owns no field yet
        incoming_json = field_ownership.jsonable(incoming)
        answer: dict[str, Any] = {
            "id": None,
            "pid": participant.pid,
            "field": name,
            "incoming": incoming_json,
            "registry": field_ownership.jsonable(participant.values[name]),
        }
        open_ids = participant.open_conflicts.setdefault(name, {})
        found = open_ids.get(field_ownership.key(incoming_json))
        if found is not None and found > 0:
            answer["id"] = found
            return answer
        if found is not None:  # stored by this batch: its id comes when it is written
            self._field_conflict_rows[-found - 1][1].append(answer)
            return answer
        row = {
            "participant_id": participant.id,
            "field": name,
            "incoming_value": incoming_json,
            "base_value": field_ownership.jsonable(base),
            "registry_value": answer["registry"],
            "interview_uuid": uuid,
            "revision": revision,
            "user_id": self.caller.user_id,
            "device_id": self.caller.device_id,
            "received_at": self.now,
        }
        self._field_conflict_rows.append((row, [answer], participant))
        # Later pushes of the same value in this batch wait for the same id.
        open_ids[field_ownership.key(incoming_json)] = -len(self._field_conflict_rows)
        return answer

    def _note(self, study_id: int, country: str | None, kind: str, key: str) -> None:
        entries = self._feed.setdefault(study_id, {})
        entries.pop((kind, key), None)
        entries[(kind, key)] = country

    def note_conflict_resolved(self, study_id: int, country: str, conflict_id: int) -> None:
        self._note(study_id, country, "conflict", str(conflict_id))

    def write(self) -> None:
        """Write what the decided changes stored: one executemany per table and kind of write."""
        connection = self.session.connection()
        if self._created:
            insert_rows(
                connection,
                INTERVIEWS,
                [
                    {**state.row(), "record": self._stored(state.record, state.content_hash)}
                    for state in self._created.values()
                ],
            )
        if self._updated:
            connection.execute(
                UPDATE_INTERVIEWS,
                [
                    {
                        "b_uuid": state.uuid,
                        "b_revision": state.revision,
                        "b_content_hash": state.content_hash,
                        "b_record": self._stored(state.record, state.content_hash),
                        "b_status": state.status,
                        "b_instrument_slug": state.instrument_slug,
                        "b_instrument_version": state.instrument_version,
                        "b_updated_at": state.updated_at,
                    }
                    for state in self._updated.values()
                ],
            )
        if self._revision_rows:
            insert_rows(connection, REVISIONS, self._revision_rows)
        if self._conflict_rows:
            rows = [row for row, _ in self._conflict_rows]
            new_ids = connection.execute(INSERT_CONFLICTS, rows).scalars().all()
            for (_, conflict), conflict_id in zip(self._conflict_rows, new_ids, strict=True):
                conflict.id = conflict_id
                for result in conflict.waiting:
                    result.conflict_id = conflict_id
                conflict.waiting.clear()
        if self._quotes_replaced:
            connection.execute(DELETE_QUOTES, {"uuids": sorted(self._quotes_replaced)})
        quote_rows = [row for rows in self._quote_rows.values() for row in rows]
        if quote_rows:
            insert_rows(connection, QUOTES, quote_rows)
        if self._field_conflict_rows:
            rows = [row for row, _, _ in self._field_conflict_rows]
            new_ids = connection.execute(INSERT_FIELD_CONFLICTS, rows).scalars().all()
            for (row, answers, person), conflict_id in zip(self._field_conflict_rows, new_ids, strict=True):
                for answer in answers:
                    answer["id"] = conflict_id
                person.open_conflicts[row["field"]][field_ownership.key(row["incoming_value"])] = conflict_id
                self.field_conflicts.append(
                    {
                        "action": "sync.field_conflict",
                        "target": str(conflict_id),
                        "pid": answers[0]["pid"],
                        "field": row["field"],
                        "uuid": row["interview_uuid"],
                        "revision": row["revision"],
                    }
                )
            self._field_conflict_rows.clear()
        self._written_uuids.update(self._created)
        self._written_uuids.update(self._updated)
        self._created.clear()
        self._updated.clear()
        self._revision_rows.clear()
        self._conflict_rows.clear()
        self._quote_rows.clear()
        self._quotes_replaced.clear()

    def finish(self) -> None:
        """Store what the batch decided, then put it in the change feed (``store``, then ``publish``)."""
        self.store()
        self.publish()

    def store(self) -> None:
        """Write the rows of the decided changes, all but the participants' (``publish`` writes
        those, with their feed positions), and re-anchor the codings of revised records."""
        self.write()
        if self._revised:
            self.reanchoring = anchoring.reanchor(
                self.session, {uuid: (state.revision, state.record) for uuid, state in self._revised.items()}
            )
            self._revised.clear()

    def publish(self) -> None:
        """Take the feed numbers for everything the batch changed, one study at a time, in one
        order, and write the feed entries and the participants with their numbers in them.

        Each study's counter stays locked from here until commit, so entries become visible in the
        order of their numbers; every write of a batch that can happen before is done before (in
        ``store``, and the view's audit events), so concurrent pushes to a study wait on each other
        only for these few rows and the commit. A participant is written once, with its number in
        it: an insert followed by an update would leave a dead row version behind each one."""
        participant_seqs: dict[tuple[int, str], int] = {}
        for study_id in sorted(self._feed):
            entries = self._feed[study_id]
            numbers = feed.append_changes(
                self.session, study_id, [(country, kind, key) for (kind, key), country in entries.items()]
            )
            for (kind, key), seq in zip(entries, numbers, strict=True):
                if kind == "participant":
                    participant_seqs[(study_id, key)] = seq
        self._feed.clear()
        for person_key, person in self._people_changed.items():
            person.change_seq = participant_seqs.pop(person_key, None)
        self._write_participants()
        # A participant in the feed whose row the batch did not write gets its number here.
        if participant_seqs:
            self.session.connection().execute(
                SET_PARTICIPANT_SEQ,
                [
                    {"b_study_id": sid, "b_pid": pid, "b_seq": seq}
                    for (sid, pid), seq in participant_seqs.items()
                ],
            )
        self._expire_written()
        self.session.flush()

    def _write_participants(self) -> None:
        """Insert the batch's new participants and update the changed ones, feed positions included."""
        connection = self.session.connection()
        if self._people_changed:
            new_people = [item for item in self._people_changed.items() if item[1].row is not None]
            old_people = [item for item in self._people_changed.items() if item[1].row is None]
            if new_people:
                insert_rows(
                    connection,
                    PARTICIPANTS,
                    [
                        {
                            **(person.row or {}),
                            **person.values,
                            "status": person.status,
                            "updated_at": self.now,
                            "change_seq": person.change_seq or 0,
                        }
                        for _, person in new_people
                    ],
                )
                for _, person in new_people:
                    person.row = None  # stored: a later write updates it
            if old_people:
                connection.execute(
                    UPDATE_PARTICIPANTS,
                    [
                        {
                            "b_study_id": study_id,
                            "b_pid": pid,
                            **{f"b_{name}": value for name, value in person.values.items()},
                            "b_status": person.status,
                            "b_coordinator_fields": field_ownership.format_owned(person.coordinator_fields),
                            "b_updated_at": self.now,
                            "b_change_seq": person.change_seq,
                        }
                        for (study_id, pid), person in old_people
                    ],
                )
                self._written_people.update(person.id for _, person in old_people if person.id is not None)
        self._people_changed.clear()

    def _expire_written(self) -> None:
        """Objects of the session's identity map that the Core writes made stale are reloaded."""
        identity_map = self.session.identity_map
        if len(identity_map):
            for uuid in self._written_uuids:
                interview = identity_map.get(identity_key(Interview, uuid))
                if interview is not None:
                    self.session.expire(interview)
            for participant_id in self._written_people:
                participant = identity_map.get(identity_key(Participant, participant_id))
                if participant is not None:
                    self.session.expire(participant)
        self._written_uuids.clear()
        self._written_people.clear()


def _prefixed(prefix: str, problems: Iterable[Problem]) -> list[Problem]:
    return [(f"{prefix}.{path}" if path else prefix, message) for path, message in problems]


def _rejected(
    index: int,
    uuid: str | None,
    digest: str | None,
    code: ErrorCode,
    problems: Sequence[Problem],
    message: str | None = None,
) -> ChangeResult:
    return ChangeResult(
        index,
        uuid,
        "rejected",
        None,
        digest,
        code=str(code),
        message=message or f"invalid record: {summary(problems)}",
        errors=details(problems),
    )


def push_batch(
    session: Session,
    caller: Caller,
    changes: Sequence[Any],
    before_publishing: Callable[[BatchOutcome], None] | None = None,
) -> BatchOutcome:
    """Decide and store ``changes``, then put them in the change feed. ``before_publishing`` is
    given the outcome between the two, for writes of its own (the view's audit events): whatever is
    written there is written before the study's feed counter is locked, not while it is held."""
    writer = Writer(session, caller)
    results = writer.push(changes)
    writer.store()
    outcome = BatchOutcome(results, writer.refusals, writer.field_conflicts, writer.reanchoring)
    if before_publishing is not None:
        before_publishing(outcome)
        session.flush()
    writer.publish()
    return outcome
