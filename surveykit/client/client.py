"""The reference sync client: what a tablet keeps and does, in the order it does it.

    client = Client("tablet.sqlite3")
    client.activate("K7RMP-2QXHD", server_url="https://surveys.example.org")
    client.fetch_instruments()
    client.reserve_block("ocsea", "KE", "RA1")
    interview = client.new_interview(study="ocsea", country="KE", activity="RA1", ...)
    client.edit(interview.uuid, notes="...")
    client.push()
    client.pull("ocsea")

The rules it follows (docs/client.md explains why):
1. Local first: every change is committed to the store before anything is sent.
2. An outbox entry is deleted only in the transaction that records a receipt matching it exactly:
   the same UUID, a revision, and the content hash of the very bytes that were sent.
3. One change per record in flight: a record's later edits wait for the receipt of the earlier one,
   so a lost answer never turns the device's own edit into a conflict with itself.
4. Retries repeat the identical change (same base revision, same content): the server recognises it
   and answers ``unchanged`` with the original receipt. Network errors, 5xx, 408, 429 and a 409
   ``conflict`` (a replayed race) are retried with exponential backoff and full jitter, bounded.
5. A conflict is never resolved silently: the change stays, flagged, next to the server's version,
   until the app calls ``resolve``.
6. A refresh token is spent by its first use. The new pair is saved before it is used, and a
   refresh whose answer was lost is never retried with the old token (see ``RefreshInDoubt``).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid as uuid_module
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from surveykit.client.http import ClientError, HttpTransport, NetworkError, Response, Transport
from surveykit.client.store import (
    Store,
    content_hash,
    dumps,
    loads,
    normalise,
    utc_now_text,
)

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
IDENTITY_FIELDS = ("study", "country", "activity", "interview_number")
ACKNOWLEDGED = ("created", "updated", "unchanged")
# The registry fields a record's participants[] carries (the registry is their home).
REGISTRY_FIELDS = ("agency", "position", "consent_given", "consent_date", "consent_recorded_how")
# Refresh this long before the access token's end, so a request rarely meets an expired token.
REFRESH_MARGIN_SECONDS = 30
DEFAULT_BATCH_SIZE = 100
DEFAULT_PULL_LIMIT = 500


def format_pid(activity: str, country: str, interview_number: int, letter: str) -> str:
    """``RA1-KE-04-B`` (as ``surveykit.participants.ids.format_pid``; the tests check they agree)."""
    return f"{activity}-{country}-{interview_number:02d}-{letter}"


# ------------------------------------------------------------------------------------------ errors


class ApiError(ClientError):
    """The server refused the request (a 4xx other than those the client handles itself)."""

    def __init__(self, status: int, code: str | None, message: str, details: list[Any] | None = None) -> None:
        super().__init__(f"{status} {code or ''}: {message}".strip())
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []

    @classmethod
    def from_response(cls, response: Response) -> ApiError:
        envelope = response.envelope()
        if envelope is None:
            text = response.body[:300].decode("utf-8", "replace")
            return cls(response.status, None, text or "no body")
        return cls(response.status, envelope["code"], str(envelope.get("message")), envelope.get("details"))


class ServerUnavailable(ClientError):
    """Every attempt failed on the network or with a server error; nothing was lost, try later."""


class AnswerLost(ServerUnavailable):
    """A request that must not simply be repeated may have been processed; its answer was lost."""


class NotActivated(ClientError):
    """The store has no device session: call ``activate`` with an enrolment code."""


class SessionEnded(ClientError):
    """The server ended this device's session (revoked, expired, or its refresh token refused).

    Unless the device was revoked, ask a coordinator to re-enrol this device (``surveykit devices
    reenrol DEVICE_ID`` or ``POST /api/v1/devices/{id}/enrolment``) and call ``activate`` with the
    code: the device keeps its id, number blocks and everything stored locally.
    """


class RefreshInDoubt(SessionEnded):
    """A token refresh may have reached the server but its answer was lost.

    If the server rotated the token, the old refresh token is spent and presenting it again would
    end the session (and raise a token-theft alarm); if it did not, the token still works, but the
    client cannot tell which. It therefore never presents it again: the device must be activated
    again with a re-enrolment code for this same device (activating it ends the old session on the
    server, whichever token it holds). Local data (outbox, records, blocks) is kept.
    """


class NoNumbersLeft(ClientError):
    """No unused interview number in this device's blocks: reserve a block while online."""


class UnknownRecord(ClientError, KeyError):
    pass


# ------------------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt ``n`` waits uniformly in [0, min(cap, base*2^n)]."""

    attempts: int = 8
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * (2**attempt))
        wait = rng.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait


@dataclass(frozen=True)
class Block:
    id: int
    study: str
    country: str
    activity: str
    first_number: int
    last_number: int
    next_number: int

    @property
    def remaining(self) -> int:
        return max(0, self.last_number - self.next_number + 1)


@dataclass(frozen=True)
class Interview:
    uuid: str
    record: dict[str, Any]

    @property
    def pids(self) -> list[str]:
        record = self.record
        return [
            format_pid(record["activity"], record["country"], record["interview_number"], p["letter"])
            for p in record["participants"]
        ]


@dataclass
class PushReport:
    batches: int = 0
    sent: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    conflict: int = 0
    rejected: int = 0
    # Answers that did not match what was sent (kept in the outbox, sent again next time).
    unmatched: int = 0
    receipts: list[tuple[str, int, str]] = field(default_factory=list)

    def count(self, result: str) -> None:
        setattr(self, result, getattr(self, result) + 1)


@dataclass
class PullReport:
    pages: int = 0
    changes: int = 0
    cursors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    uuid: str
    base_revision: int | None
    record: dict[str, Any]
    content_hash: str
    status: str
    attempts: int
    conflict_id: int | None
    error: Any


@dataclass(frozen=True)
class RecordState:
    """What the tablet knows of one interview."""

    uuid: str
    record: dict[str, Any]
    content_hash: str
    server_revision: int
    server_hash: str | None
    server_record: dict[str, Any] | None
    # synced: the server holds this content; pending: changes wait to be sent; conflict: the app
    # must call resolve(); rejected: the server refused the change (see ``errors``): edit it.
    state: str
    errors: list[Any]


def _entry(row: Any) -> OutboxEntry:
    return OutboxEntry(
        row["id"],
        row["uuid"],
        row["base_revision"],
        loads(row["record"]),
        row["content_hash"],
        row["status"],
        row["attempts"],
        row["conflict_id"],
        loads(row["error"]),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------------ client


class Client:
    def __init__(
        self,
        path: str | Path,
        server_url: str | None = None,
        *,
        transport: Transport | None = None,
        retry: RetryPolicy | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        pull_limit: int = DEFAULT_PULL_LIMIT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.store = Store(path)
        self.transport = transport or HttpTransport()
        self.retry = retry or RetryPolicy()
        self.batch_size = batch_size
        self.pull_limit = pull_limit
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        if server_url is not None:
            self.set_server_url(server_url)
        # A refresh that was under way when the app died may have been spent by the server.
        if self.store.get("refresh_state") == "in_flight":
            self.store.set(refresh_state="in_doubt")

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --------------------------------------------------------------------------------- identity

    @property
    def server_url(self) -> str | None:
        return self.store.get("server_url")

    @property
    def device_id(self) -> str | None:
        return self.store.get("device_id")

    def set_server_url(self, url: str) -> None:
        """Where the server is (the enrolment QR code's payload gives it); may change later."""
        self.store.set(server_url=url.rstrip("/"))

    def activate(self, code: str, server_url: str | None = None) -> str:
        """Exchange a one-time enrolment code for this device's tokens; returns the device id.

        A code is spent by the server as soon as it sees it. A retry after a lost answer is harmless
        (the server refuses the spent code; no session is ended), so network errors are retried; a
        refusal after such a retry means the answer was lost: ask for a new code.

        On a store that already belongs to a device (its session ended or in doubt), a re-enrolment
        code of the same device answers with the same device id: the new tokens replace the old,
        the refresh state is ``ok`` again, and the outbox, records and number blocks stay usable.
        A code of another device (a brand-new enrolment) switches the store to that device id; the
        old device's blocks can no longer be minted from, and new interviews already minted from
        them are refused by the server (``interview_number_refused``).
        """
        if server_url is not None:
            self.set_server_url(server_url)
        with self._lock:
            in_doubt = False
            response: Response | None = None
            for attempt in range(self.retry.attempts):
                try:
                    response = self._send("POST", "/api/v1/devices/activate", {"code": code}, None)
                except NetworkError as exc:
                    in_doubt = in_doubt or exc.sent
                    self._pause(attempt)
                    continue
                if response.status >= 500:
                    in_doubt = in_doubt or response.envelope() is None
                    self._pause(attempt, response)
                    continue
                break
            if response is None or response.status >= 500:
                raise ServerUnavailable("could not reach the server to activate this device")
            if response.status != 200:
                error = ApiError.from_response(response)
                if in_doubt and error.code == "enrolment_refused":
                    error.message += " (an earlier attempt may have used the code and its answer been lost)"
                raise error
            body = response.json()
            previous = self.device_id
            with self.store.transaction():
                self._save_tokens(body)
                self.store.set(device_id=body["device_id"], refresh_state="ok", session_end_reason=None)
            # Same device id (a re-enrolment): nothing else changes, its blocks are still its own.
            if previous and previous != body["device_id"]:
                # Numbers of the old device's blocks are not this device's: the server refuses them.
                self.store.set(previous_device_id=previous)
            return body["device_id"]

    def me(self) -> dict[str, Any]:
        return self._json(self._call("GET", "/api/v1/me"))

    # ------------------------------------------------------------------------------- the wire

    def _url(self, path: str) -> str:
        base = self.server_url
        if not base:
            raise NotActivated("no server URL: pass server_url to activate() or set_server_url()")
        return base + path

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        token: str | None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        all_headers = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            all_headers["Content-Type"] = "application/json"
            data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        return self.transport.request(method, self._url(path), all_headers, data)

    def _pause(self, attempt: int, response: Response | None = None) -> None:
        if attempt + 1 >= self.retry.attempts:
            return
        retry_after = None
        if response is not None:
            value = response.header("retry-after")
            if value and value.strip().isdigit():
                retry_after = float(value.strip())
        self._sleep(self.retry.delay(attempt, self._rng, retry_after))

    @staticmethod
    def _retryable(response: Response) -> bool:
        if response.status >= 500 or response.status in (408, 429):
            return True
        # A unique-constraint race the server could not settle by replaying the request itself.
        return response.status == 409 and response.error_code() == "conflict"

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> Response:
        """An authenticated request with retries; returns the first answer that is not retryable.

        A request that is not ``idempotent`` is repeated only when it certainly did not reach the
        server (or surveykit itself answered with an error, so its transaction was rolled back);
        otherwise ``AnswerLost`` is raised for the caller to find out what happened.
        """
        refreshed = False
        last: Exception | Response | None = None
        attempt = 0
        while attempt < self.retry.attempts:
            try:
                token = self._access_token()
                response = self._send(method, path, body, token, headers)
            except NetworkError as exc:
                if exc.sent and not idempotent:
                    raise AnswerLost(f"{method} {path}: {exc}") from exc
                last = exc
                self._pause(attempt)
                attempt += 1
                continue
            if response.status == 401 and not refreshed and response.error_code() == "unauthenticated":
                refreshed = True
                try:
                    self._refresh(failed_token=token)
                except NetworkError as exc:  # never reached the server: safe to try again
                    refreshed = False
                    last = exc
                    self._pause(attempt)
                    attempt += 1
                continue
            if self._retryable(response):
                if not idempotent and response.envelope() is None:
                    raise AnswerLost(f"{method} {path}: answered {response.status} by something else")
                last = response
                self._pause(attempt, response)
                attempt += 1
                continue
            return response
        if isinstance(last, Response):
            raise ServerUnavailable(f"{method} {path}: the server answered {last.status} {attempt} times")
        raise ServerUnavailable(f"{method} {path}: {last}") from last

    @staticmethod
    def _json(response: Response) -> Any:
        if response.status != 200 and response.status != 201:
            raise ApiError.from_response(response)
        return response.json()

    # ------------------------------------------------------------------------------- tokens

    def _save_tokens(self, body: dict[str, Any]) -> None:
        expires = self._clock() + float(body["expires_in"])
        self.store.set(
            access_token=body["access_token"],
            access_expires_at=f"{expires:.3f}",
            refresh_token=body["refresh_token"],
            refresh_expires_at=body.get("refresh_expires_at"),
        )

    def _access_token(self) -> str:
        state = self.store.get("refresh_state")
        token = self.store.get("access_token")
        if token is None:
            raise NotActivated("this device is not activated: call activate() with an enrolment code")
        if state == "in_doubt":
            raise RefreshInDoubt(RefreshInDoubt.__doc__.splitlines()[0])
        if state == "ended":
            raise SessionEnded(self.store.get("session_end_reason") or "the session has ended")
        expires = float(self.store.get("access_expires_at") or 0)
        if expires - self._clock() < REFRESH_MARGIN_SECONDS:
            self._refresh(failed_token=token)
            token = self.store.get("access_token") or token
        return token

    def _refresh(self, failed_token: str | None) -> None:
        """Exchange the refresh token for a new pair, at most once per spent token.

        Raises ``NetworkError`` only when the request never left (the token is unspent, try again);
        ``RefreshInDoubt`` when it may have been spent and the answer was lost; ``SessionEnded`` when
        the server refused it.
        """
        with self._lock:
            state = self.store.get("refresh_state", "ok")
            if state == "in_doubt" or state == "in_flight":
                raise RefreshInDoubt(RefreshInDoubt.__doc__.splitlines()[0])
            if state == "ended":
                raise SessionEnded(self.store.get("session_end_reason") or "the session has ended")
            current = self.store.get("access_token")
            expires = float(self.store.get("access_expires_at") or 0)
            if current != failed_token and expires - self._clock() >= REFRESH_MARGIN_SECONDS:
                return  # another caller refreshed meanwhile
            refresh_token = self.store.get("refresh_token")
            if refresh_token is None:
                raise NotActivated("no refresh token: call activate() with an enrolment code")
            # Saved before sending: if the app dies before the answer is saved, the next start
            # knows the token may be spent and does not present it again.
            self.store.set(refresh_state="in_flight")
            try:
                response = self._send("POST", "/api/v1/auth/refresh", {"refresh_token": refresh_token}, None)
            except NetworkError as exc:
                if not exc.sent:
                    self.store.set(refresh_state="ok")
                    raise
                self.store.set(refresh_state="in_doubt")
                raise RefreshInDoubt(f"the answer to a token refresh was lost ({exc})") from exc
            if response.status == 200:
                try:
                    body = response.json()
                    body["access_token"], body["refresh_token"], body["expires_in"]  # noqa: B018
                except (ValueError, KeyError, TypeError) as exc:
                    self.store.set(refresh_state="in_doubt")
                    raise RefreshInDoubt("the answer to a token refresh was unreadable") from exc
                # The new refresh token is durable before the new access token is used.
                with self.store.transaction():
                    self._save_tokens(body)
                    self.store.set(refresh_state="ok")
                return
            envelope = response.envelope()
            if response.status == 401:
                reason = envelope["message"] if envelope else "refresh refused"
                self.store.set(refresh_state="ended", session_end_reason=reason)
                raise SessionEnded(reason)
            if envelope is not None:
                # surveykit's own error answer: its transaction was rolled back, the token is unspent.
                self.store.set(refresh_state="ok")
                if response.status >= 500:
                    raise NetworkError(f"refresh: server error {response.status}", sent=False)
                raise ApiError.from_response(response)
            # Anything else (a proxy's 502/504, ...) may hide a refresh the server completed.
            self.store.set(refresh_state="in_doubt")
            raise RefreshInDoubt(f"token refresh answered {response.status}, not by surveykit itself")

    # -------------------------------------------------------------------------------- instruments

    def fetch_instruments(self) -> dict[str, str]:
        """Bring the instrument cache up to date; returns ``{slug: "new"|"updated"|"not_modified"}``.

        Each current version is revalidated with its ETag (``If-None-Match``): an unchanged one
        costs a 304 with no body.
        """
        listing = self._json(self._call("GET", "/api/v1/instruments"))["instruments"]
        outcome: dict[str, str] = {}
        for row in listing:
            slug = row["slug"]
            head = self.store.one("SELECT * FROM instrument_heads WHERE slug = ?", (slug,))
            headers = {"If-None-Match": head["etag"]} if head is not None and head["etag"] else None
            response = self._call("GET", f"/api/v1/instruments/{quote(slug)}", headers=headers)
            if response.status == 304 and head is not None:
                with self.store.transaction() as db:
                    db.execute(
                        "UPDATE instrument_heads SET checked_at = ? WHERE slug = ?", (utc_now_text(), slug)
                    )
                outcome[slug] = "not_modified"
                continue
            body = self._json(response)
            self._keep_instrument(body, response.header("etag"))
            outcome[slug] = "new" if head is None else "updated"
        return outcome

    def _keep_instrument(self, body: dict[str, Any], etag: str | None) -> None:
        now = utc_now_text()
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO instruments (slug, version, content_hash, body, fetched_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (body["slug"], body["version"], body["content_hash"], dumps(body["definition"]), now),
            )
            if etag is not None:
                db.execute(
                    "INSERT OR REPLACE INTO instrument_heads (slug, version, content_hash, etag, checked_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (body["slug"], body["version"], body["content_hash"], etag, now),
                )

    def instrument(self, slug: str, version: int | None = None) -> dict[str, Any]:
        """A cached definition (the current one by default); a missing numbered version is fetched."""
        if version is None:
            head = self.store.one("SELECT version FROM instrument_heads WHERE slug = ?", (slug,))
            if head is None:
                raise UnknownRecord(f"instrument {slug!r} is not cached: call fetch_instruments()")
            version = head["version"]
        row = self.store.one("SELECT body FROM instruments WHERE slug = ? AND version = ?", (slug, version))
        if row is None:
            body = self._json(self._call("GET", f"/api/v1/instruments/{quote(slug)}/versions/{version}"))
            self._keep_instrument(body, None)
            return body["definition"]
        return loads(row["body"])

    def instrument_version(self, slug: str) -> int:
        head = self.store.one("SELECT version FROM instrument_heads WHERE slug = ?", (slug,))
        if head is None:
            raise UnknownRecord(f"instrument {slug!r} is not cached: call fetch_instruments()")
        return head["version"]

    # ------------------------------------------------------------------------------------ blocks

    def reserve_block(self, study: str, country: str, activity: str, size: int | None = None) -> Block:
        """Reserve interview numbers for offline use.

        Reserving is not idempotent (a retry reserves another block), so after a lost answer the
        client first asks which blocks the server holds for it and adopts an unknown one.
        """
        body: dict[str, Any] = {"study": study, "country": country, "activity": activity}
        if size is not None:
            body["size"] = size
        with self._lock:
            for attempt in range(self.retry.attempts):
                known = {block.id for block in self.blocks()}
                try:
                    response = self._call("POST", "/api/v1/blocks", body, idempotent=False)
                except AnswerLost:
                    adopted = [b for b in self.sync_blocks(study, country, activity) if b.id not in known]
                    if adopted:
                        return adopted[-1]
                    self._pause(attempt)  # it never took effect: reserve again
                    continue
                return self._adopt_block(self._json(response))
            raise ServerUnavailable("could not reserve a block: every answer was lost")

    def sync_blocks(
        self, study: str | None = None, country: str | None = None, activity: str | None = None
    ) -> list[Block]:
        """Adopt every block the server reserved for this device (after a lost answer, say)."""
        query = {k: v for k, v in (("study", study), ("country", country), ("activity", activity)) if v}
        path = "/api/v1/blocks" + (f"?{urlencode(query)}" if query else "")
        described = self._json(self._call("GET", path))["blocks"]
        return [self._adopt_block(block) for block in described]

    def _adopt_block(self, described: dict[str, Any]) -> Block:
        device_id = self.device_id
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO blocks "
                "(id, device_id, study, country, activity, first_number, last_number, next_number) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    described["id"],
                    device_id,
                    described["study"],
                    described["country"],
                    described["activity"],
                    described["first_number"],
                    described["last_number"],
                    described["first_number"],
                ),
            )
            row = db.execute("SELECT * FROM blocks WHERE id = ?", (described["id"],)).fetchone()
        return self._block(row)

    @staticmethod
    def _block(row: Any) -> Block:
        return Block(
            row["id"],
            row["study"],
            row["country"],
            row["activity"],
            row["first_number"],
            row["last_number"],
            row["next_number"],
        )

    def blocks(self) -> list[Block]:
        """This device's blocks (those of an earlier activation are not usable any more)."""
        rows = self.store.query("SELECT * FROM blocks WHERE device_id = ? ORDER BY id", (self.device_id,))
        return [self._block(row) for row in rows]

    def numbers_left(self, study: str, country: str, activity: str) -> int:
        return sum(
            block.remaining
            for block in self.blocks()
            if (block.study, block.country, block.activity) == (study, country, activity)
        )

    def mint_number(self, study: str, country: str, activity: str) -> int:
        """The next unused interview number of this device's blocks, offline; never the same twice."""
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT * FROM blocks WHERE device_id = ? AND study = ? AND country = ? AND activity = ? "
                "AND next_number <= last_number ORDER BY id LIMIT 1",
                (self.device_id, study, country, activity),
            ).fetchone()
            if row is None:
                raise NoNumbersLeft(f"no interview numbers left for {study}/{country}/{activity}")
            number = row["next_number"]
            db.execute("UPDATE blocks SET next_number = ? WHERE id = ?", (number + 1, row["id"]))
            db.execute(
                "INSERT INTO minted (study, country, activity, interview_number, block_id, minted_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (study, country, activity, number, row["id"], utc_now_text()),
            )
        return number

    # ----------------------------------------------------------------------------------- records

    def new_interview(
        self,
        *,
        study: str,
        country: str,
        activity: str,
        instrument: str,
        participants: list[dict[str, Any]],
        language: str,
        mode: str,
        answers: dict[str, Any] | None = None,
        status: str = "draft",
        started_at: str | None = None,
        ended_at: str | None = None,
        quotes: list[dict[str, Any]] | None = None,
        notes: str | None = None,
        instrument_version: int | None = None,
        interview_number: int | None = None,
        probes_used: dict[str, list[int]] | None = None,
    ) -> Interview:
        """A new interview, stored and queued; without ``interview_number`` one is minted offline
        (a planned interview passes its registered number). Participants get letters A, B, ...
        ``probes_used``: the probes ticked, question id -> 0-based indexes (docs/sync.md)."""
        with self.store.transaction():
            number = interview_number
            if number is None:
                number = self.mint_number(study, country, activity)
            record: dict[str, Any] = {
                "study": study,
                "country": country,
                "activity": activity,
                "interview_number": number,
                "participants": [
                    {**person, "letter": LETTERS[index]} for index, person in enumerate(participants)
                ],
                "instrument": {
                    "slug": instrument,
                    "version": instrument_version or self.instrument_version(instrument),
                },
                "language": language,
                "mode": mode,
                "started_at": started_at or datetime.now(UTC).replace(microsecond=0).isoformat(),
                "status": status,
                "answers": answers or {},
            }
            if ended_at is not None:
                record["ended_at"] = ended_at
            if quotes is not None:
                record["quotes"] = quotes
            if notes is not None:
                record["notes"] = notes
            if probes_used is not None:
                record["probes_used"] = probes_used
            uuid = self.create(record)
        return Interview(uuid, self.record(uuid))

    def create(self, record: dict[str, Any], uuid: str | None = None) -> str:
        """Store a complete record as a new interview and queue it (base revision 0)."""
        uuid = str(uuid_module.UUID(uuid)) if uuid else str(uuid_module.uuid4())
        record = normalise(record)
        for name in IDENTITY_FIELDS:
            if name not in record:
                raise ValueError(f"a record needs {name!r}")
        digest = content_hash(record)
        now = utc_now_text()
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM interviews WHERE uuid = ?", (uuid,)).fetchone():
                raise ValueError(f"record {uuid} exists already: edit it")
            db.execute(
                "INSERT INTO interviews (uuid, study, country, activity, interview_number, record, "
                "content_hash, server_revision, origin, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0, 'local', ?)",
                (
                    uuid,
                    record["study"],
                    record["country"],
                    record["activity"],
                    record["interview_number"],
                    dumps(record),
                    digest,
                    now,
                ),
            )
            db.execute(
                "INSERT INTO outbox (uuid, base_revision, record, content_hash, created_at, updated_at) "
                "VALUES (?, 0, ?, ?, ?, ?)",
                (uuid, dumps(record), digest, now, now),
            )
        return uuid

    def edit(self, uuid: str, record: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Change a record: a whole new ``record``, or top-level ``fields`` replaced. Queued for push."""
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM interviews WHERE uuid = ?", (uuid,)).fetchone()
            if row is None:
                raise UnknownRecord(uuid)
            current = loads(row["record"])
            new = normalise(record if record is not None else {**current, **fields})
            for name in IDENTITY_FIELDS:
                if new.get(name) != current.get(name):
                    raise ValueError(f"{name} cannot change once a record exists")
            digest = content_hash(new)
            if digest == row["content_hash"]:
                return new
            now = utc_now_text()
            db.execute(
                "UPDATE interviews SET record = ?, content_hash = ?, updated_at = ? WHERE uuid = ?",
                (dumps(new), digest, now, uuid),
            )
            self._enqueue(db, uuid, new, digest, row["server_revision"], now)
        return new

    def _enqueue(
        self, db: Any, uuid: str, record: dict[str, Any], digest: str, server_revision: int, now: str
    ) -> None:
        tail = db.execute("SELECT * FROM outbox WHERE uuid = ? ORDER BY id DESC LIMIT 1", (uuid,)).fetchone()
        if tail is None:
            base: int | None = server_revision
        elif tail["status"] == "rejected" or (tail["status"] == "pending" and tail["attempts"] == 0):
            # Never stored by the server (refused, or not sent yet): replace it in place.
            db.execute(
                "UPDATE outbox SET record = ?, content_hash = ?, status = 'pending', error = NULL, "
                "updated_at = ? WHERE id = ?",
                (dumps(record), digest, now, tail["id"]),
            )
            return
        else:
            # The tail may be on the server already (sent, answer not yet matched) or is a conflict:
            # this change waits, its base to be set by the tail's receipt (or by resolve()).
            base = None
        db.execute(
            "INSERT INTO outbox (uuid, base_revision, record, content_hash, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (uuid, base, dumps(record), digest, now, now),
        )

    def record(self, uuid: str) -> dict[str, Any]:
        row = self.store.one("SELECT record FROM interviews WHERE uuid = ?", (uuid,))
        if row is None:
            raise UnknownRecord(uuid)
        return loads(row["record"])

    def state(self, uuid: str) -> RecordState:
        row = self.store.one("SELECT * FROM interviews WHERE uuid = ?", (uuid,))
        if row is None:
            raise UnknownRecord(uuid)
        entries = self.outbox(uuid)
        statuses = {entry.status for entry in entries}
        if "conflict" in statuses:
            state = "conflict"
        elif "rejected" in statuses:
            state = "rejected"
        elif entries:
            state = "pending"
        else:
            state = "synced"
        return RecordState(
            uuid,
            loads(row["record"]),
            row["content_hash"],
            row["server_revision"],
            row["server_hash"],
            loads(row["server_record"]),
            state,
            [entry.error for entry in entries if entry.status == "rejected"],
        )

    def uuids(self) -> list[str]:
        return [row["uuid"] for row in self.store.query("SELECT uuid FROM interviews ORDER BY uuid")]

    def outbox(self, uuid: str | None = None) -> list[OutboxEntry]:
        if uuid is None:
            rows = self.store.query("SELECT * FROM outbox ORDER BY id")
        else:
            rows = self.store.query("SELECT * FROM outbox WHERE uuid = ? ORDER BY id", (uuid,))
        return [_entry(row) for row in rows]

    def receipts(self, uuid: str | None = None) -> list[tuple[str, int, str]]:
        sql = "SELECT uuid, revision, content_hash FROM receipts"
        rows = (
            self.store.query(sql + " ORDER BY uuid, revision")
            if uuid is None
            else self.store.query(sql + " WHERE uuid = ? ORDER BY revision", (uuid,))
        )
        return [(row["uuid"], row["revision"], row["content_hash"]) for row in rows]

    def conflicts(self) -> list[dict[str, Any]]:
        """Conflicts the server reported for this device's changes, newest state first."""
        rows = self.store.query("SELECT * FROM conflicts ORDER BY id")
        return [
            {
                "id": row["id"],
                "uuid": row["uuid"],
                "base_revision": row["base_revision"],
                "content_hash": row["content_hash"],
                "status": row["status"],
                "current": loads(row["current"]),
            }
            for row in rows
        ]

    def registry(self, study: str, country: str | None = None) -> list[dict[str, Any]]:
        """The participants pulled from the registry (planned ones carry their interview number)."""
        sql = "SELECT body FROM pulled WHERE study = ? AND kind = 'participant' AND body IS NOT NULL"
        params: tuple[Any, ...] = (study,)
        if country is not None:
            sql += " AND country = ?"
            params += (country,)
        rows = self.store.query(sql + " ORDER BY key", params)
        return [loads(row["body"]) for row in rows]

    def in_conflict(self) -> list[str]:
        rows = self.store.query("SELECT DISTINCT uuid FROM outbox WHERE status = 'conflict' ORDER BY uuid")
        return [row["uuid"] for row in rows]

    def resolve(self, uuid: str, record: dict[str, Any] | None = None, *, take_server: bool = False) -> None:
        """Settle a conflict: ``take_server`` adopts the server's version; ``record`` (say, a merge of
        both) becomes a new change based on the server's current revision.

        The conflicting change itself is not lost either way: the server keeps it as a conflict
        revision, and its coordinators see it.
        """
        if (record is None) == (not take_server):
            raise ValueError("pass either the resolved record or take_server=True")
        now = utc_now_text()
        with self.store.transaction() as db:
            row = db.execute("SELECT * FROM interviews WHERE uuid = ?", (uuid,)).fetchone()
            if row is None:
                raise UnknownRecord(uuid)
            entries = db.execute("SELECT * FROM outbox WHERE uuid = ? ORDER BY id", (uuid,)).fetchall()
            if not any(entry["status"] == "conflict" for entry in entries):
                raise ValueError(f"record {uuid} is not in conflict")
            # Only the conflicting change and the edits queued behind it are here: none of them was
            # stored as an accepted revision, and the conflicting one is kept by the server.
            db.execute("DELETE FROM outbox WHERE uuid = ?", (uuid,))
            db.execute(
                "UPDATE conflicts SET status = 'resolved_on_device' WHERE uuid = ? AND status = 'open'",
                (uuid,),
            )
            server_record = loads(row["server_record"])
            if take_server:
                db.execute(
                    "UPDATE interviews SET record = ?, content_hash = ?, updated_at = ? WHERE uuid = ?",
                    (row["server_record"], row["server_hash"], now, uuid),
                )
                return
            new = normalise(record)
            for name in IDENTITY_FIELDS:
                if new.get(name) != (server_record or {}).get(name, new.get(name)):
                    raise ValueError(f"{name} cannot change once a record exists")
            digest = content_hash(new)
            db.execute(
                "UPDATE interviews SET record = ?, content_hash = ?, updated_at = ? WHERE uuid = ?",
                (dumps(new), digest, now, uuid),
            )
            if digest != row["server_hash"]:
                db.execute(
                    "INSERT INTO outbox (uuid, base_revision, record, content_hash, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (uuid, row["server_revision"], dumps(new), digest, now, now),
                )

    # -------------------------------------------------------------------------------------- push

    def pending(self) -> int:
        row = self.store.one("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
        return row[0] if row else 0

    def push(self, batch_size: int | None = None) -> PushReport:
        """Send every sendable change, in batches, until none is left or the server is unreachable.

        Raises ``ServerUnavailable`` when every retry failed (nothing is lost: push again later).
        """
        report = PushReport()
        size = full_size = max(1, batch_size or self.batch_size)
        # Changes whose answer did not match what was sent: kept, and not sent again in this push.
        held: set[int] = set()
        with self._lock:
            while True:
                # Chosen and marked in one transaction, so an edit made meanwhile either replaces a
                # change before it is chosen or queues behind it: it never changes what is sent.
                with self.store.transaction() as db:
                    entries = self._sendable(db, size, held)
                    if not entries:
                        return report
                    # From now on the change may be on the server: later edits queue behind it.
                    db.executemany(
                        "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", [(e.id,) for e in entries]
                    )
                changes = [
                    {"uuid": e.uuid, "base_revision": e.base_revision, "record": e.record} for e in entries
                ]
                body = {"changes": changes}
                response = self._call("POST", "/api/v1/sync", body)
                report.batches += 1
                if response.status in (400, 413, 422):
                    # The batch as a whole was refused (too large, or a record the server cannot
                    # even parse): halve it until the change at fault is alone, and set it aside.
                    if len(entries) == 1:
                        self._refuse_locally(entries[0], response, report)
                        if response.status != 413:
                            size = full_size
                        continue
                    size = max(1, len(entries) // 2)
                    continue
                answer = self._json(response)
                report.sent += len(entries)
                held.update(self._apply_results(entries, answer, report))

    @staticmethod
    def _sendable(db: Any, limit: int, held: set[int]) -> list[OutboxEntry]:
        """The first queued change of each record, if it is ready (its base revision is known)."""
        rows = db.execute(
            "SELECT o.* FROM outbox o WHERE o.id IN (SELECT MIN(id) FROM outbox GROUP BY uuid) "
            "AND o.status = 'pending' AND o.base_revision IS NOT NULL ORDER BY o.id LIMIT ?",
            (limit + len(held),),
        ).fetchall()
        return [_entry(row) for row in rows if row["id"] not in held][:limit]

    def _refuse_locally(self, entry: OutboxEntry, response: Response, report: PushReport) -> None:
        error = ApiError.from_response(response)
        with self.store.transaction() as db:
            db.execute(
                "UPDATE outbox SET status = 'rejected', error = ? WHERE id = ?",
                (dumps({"code": error.code, "message": error.message, "errors": error.details}), entry.id),
            )
        report.rejected += 1

    def _apply_results(self, entries: list[OutboxEntry], answer: Any, report: PushReport) -> list[int]:
        """Record what the server said about each change; returns the ids of unmatched ones."""
        results = answer.get("results") if isinstance(answer, dict) else None
        by_index = {
            result["index"]: result
            for result in results or []
            if isinstance(result, dict) and _is_int(result.get("index"))
        }
        unmatched: list[int] = []
        now = utc_now_text()
        with self.store.transaction() as db:
            for index, entry in enumerate(entries):
                result = by_index.get(index)
                kind = result.get("result") if result is not None else None
                if result is None or result.get("uuid") != entry.uuid:
                    report.unmatched += 1
                    unmatched.append(entry.id)
                    continue
                if kind in ACKNOWLEDGED:
                    revision = result.get("revision")
                    matches = result.get("content_hash") == entry.content_hash
                    if not matches or not _is_int(revision) or revision < 1:
                        report.unmatched += 1
                        unmatched.append(entry.id)
                        continue
                    self._acknowledge(db, entry, revision, kind, now)
                    report.count(kind)
                    report.receipts.append((entry.uuid, revision, entry.content_hash))
                elif kind == "conflict":
                    conflict_id = result.get("conflict_id")
                    if result.get("content_hash") != entry.content_hash or not _is_int(conflict_id):
                        report.unmatched += 1
                        unmatched.append(entry.id)
                        continue
                    self._flag_conflict(db, entry, conflict_id, result, now)
                    report.count("conflict")
                elif kind == "rejected":
                    error = {k: result.get(k) for k in ("code", "message", "errors")}
                    db.execute(
                        "UPDATE outbox SET status = 'rejected', error = ?, updated_at = ? WHERE id = ?",
                        (dumps(error), now, entry.id),
                    )
                    report.count("rejected")
                else:
                    report.unmatched += 1
                    unmatched.append(entry.id)
        return unmatched

    def _acknowledge(self, db: Any, entry: OutboxEntry, revision: int, kind: str, now: str) -> None:
        """The server holds exactly this content as ``revision``: the entry may go."""
        deleted = db.execute(
            "DELETE FROM outbox WHERE id = ? AND content_hash = ?", (entry.id, entry.content_hash)
        ).rowcount
        db.execute(
            "INSERT OR IGNORE INTO receipts (uuid, revision, content_hash, result, received_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (entry.uuid, revision, entry.content_hash, kind, now),
        )
        row = db.execute("SELECT * FROM interviews WHERE uuid = ?", (entry.uuid,)).fetchone()
        if row["server_revision"] <= revision:
            db.execute(
                "UPDATE interviews SET server_revision = ?, server_hash = ?, server_record = ? "
                "WHERE uuid = ?",
                (revision, entry.content_hash, dumps(entry.record), entry.uuid),
            )
        following = db.execute(
            "SELECT id FROM outbox WHERE uuid = ? ORDER BY id LIMIT 1", (entry.uuid,)
        ).fetchone()
        if following is not None:
            # The next edit was made on top of this content, so it is based on this revision.
            # (Defensively, an entry changed after it was sent is such an edit too.)
            condition = "" if not deleted and following["id"] == entry.id else " AND base_revision IS NULL"
            db.execute(
                f"UPDATE outbox SET base_revision = ? WHERE id = ?{condition}",
                (revision, following["id"]),
            )
            return
        # Nothing queued: the local copy becomes the newest server version known (it may be newer
        # than this receipt when a pull brought another device's edit meanwhile).
        db.execute(
            "UPDATE interviews SET record = server_record, content_hash = server_hash, updated_at = ? "
            "WHERE uuid = ?",
            (now, entry.uuid),
        )

    def _flag_conflict(
        self, db: Any, entry: OutboxEntry, conflict_id: int, result: dict[str, Any], now: str
    ) -> None:
        db.execute(
            "UPDATE outbox SET status = 'conflict', conflict_id = ?, updated_at = ? WHERE id = ?",
            (conflict_id, now, entry.id),
        )
        current = result.get("current")
        status = result.get("conflict_status") or "open"
        db.execute(
            "INSERT OR REPLACE INTO conflicts (id, uuid, base_revision, content_hash, status, current, "
            "received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                conflict_id,
                entry.uuid,
                entry.base_revision,
                entry.content_hash,
                status,
                dumps(current) if current is not None else None,
                now,
            ),
        )
        if isinstance(current, dict):
            self._learn_server_version(db, current)
        if status == "resolved":
            # A retry of a change that was a conflict, resolved on the server since.
            self._settled_on_server(db, conflict_id)

    def _learn_server_version(self, db: Any, current: dict[str, Any]) -> None:
        """Remember the server's version of a record if it is newer than what the tablet knew."""
        revision, digest, record = current.get("revision"), current.get("content_hash"), current.get("record")
        if not _is_int(revision) or not isinstance(record, dict) or not isinstance(digest, str):
            return
        db.execute(
            "UPDATE interviews SET server_revision = ?, server_hash = ?, server_record = ? "
            "WHERE uuid = ? AND server_revision <= ?",
            (revision, digest, dumps(record), current.get("uuid"), revision),
        )

    # -------------------------------------------------------------------------------------- pull

    def studies(self) -> list[str]:
        """The studies this device's grants name (a grant for every study needs an explicit study)."""
        grants = self.me().get("grants", [])
        return sorted({grant["study"] for grant in grants if grant.get("study") not in (None, "*")})

    def cursor(self, study: str) -> int:
        row = self.store.one("SELECT cursor FROM cursors WHERE study = ?", (study,))
        return row["cursor"] if row else 0

    def pull(self, study: str | None = None) -> PullReport:
        """Page through the change feed from the saved cursor; each page and its cursor are saved
        in one transaction, so an interrupted pull resumes where it stopped."""
        report = PullReport()
        with self._lock:
            for slug in [study] if study else self.studies():
                self._pull_study(slug, report)
        return report

    def _pull_study(self, study: str, report: PullReport) -> None:
        cursor = self.cursor(study)
        restarted = False
        while True:
            query = urlencode({"study": study, "cursor": cursor, "limit": self.pull_limit})
            response = self._call("GET", f"/api/v1/sync/changes?{query}")
            if response.status == 409 and response.error_code() == "cursor_ahead" and not restarted:
                # The server was restored from an earlier state: what was pulled may be gone.
                restarted = True
                with self.store.transaction() as db:
                    db.execute("DELETE FROM pulled WHERE study = ?", (study,))
                    db.execute("DELETE FROM cursors WHERE study = ?", (study,))
                cursor = 0
                continue
            page = self._json(response)
            next_cursor = page["next_cursor"]
            if not _is_int(next_cursor) or next_cursor < cursor:
                raise ClientError(f"the server's cursor went backwards ({cursor} -> {next_cursor})")
            with self.store.transaction() as db:
                for change in page["changes"]:
                    self._apply_pulled(db, study, change)
                db.execute(
                    "INSERT INTO cursors (study, cursor) VALUES (?, ?) "
                    "ON CONFLICT (study) DO UPDATE SET cursor = excluded.cursor",
                    (study, next_cursor),
                )
            report.pages += 1
            report.changes += len(page["changes"])
            report.cursors[study] = next_cursor
            cursor = next_cursor
            if not page.get("has_more"):
                return

    def _apply_pulled(self, db: Any, study: str, change: dict[str, Any]) -> None:
        """Upsert by key: a key may appear on several pages of one pull (each object is the latest
        state), so the last one applied wins."""
        kind, key, obj = change["kind"], str(change["key"]), change.get("object")
        before = db.execute(
            "SELECT body FROM pulled WHERE study = ? AND kind = ? AND key = ?", (study, kind, key)
        ).fetchone()
        db.execute(
            "INSERT OR REPLACE INTO pulled (study, kind, key, seq, country, body) VALUES (?, ?, ?, ?, ?, ?)",
            (study, kind, key, change["seq"], change.get("country"), dumps(obj) if obj is not None else None),
        )
        if kind == "interview" and isinstance(obj, dict):
            # (Not the registry entries pulled so far: they may be older than this record.)
            self._merge_interview(db, obj)
        elif kind == "conflict" and isinstance(obj, dict):
            self._merge_conflict(db, obj)
        elif kind == "participant" and isinstance(obj, dict):
            known = loads(before["body"]) if before is not None and before["body"] else None
            rows = db.execute(
                "SELECT uuid FROM interviews WHERE study = ? AND country = ? AND activity = ? "
                "AND interview_number = ?",
                (study, obj.get("country"), obj.get("activity"), obj.get("interview_number")),
            ).fetchall()
            for row in rows:
                self._take_registry_into(db, row["uuid"], obj, known)

    def _take_registry_into(
        self, db: Any, uuid: str, registry: dict[str, Any], known: dict[str, Any] | None
    ) -> None:
        """Bring a pulled registry entry into this tablet's copy of the participant's record (and
        the answers bound to it), and queue the result, so the record agrees with the registry
        again. A field the researcher changed locally (it differs from both the server's copy and
        the registry entry the tablet knew before, ``known``) is left alone: its push tells whether
        it conflicts. Only this device's own records are edited this way."""
        row = db.execute("SELECT * FROM interviews WHERE uuid = ?", (uuid,)).fetchone()
        if row is None or row["origin"] != "local":
            return
        record = loads(row["record"])
        server = loads(row["server_record"]) if row["server_record"] else None
        letter = registry.get("letter")
        server_entry = next(
            (
                p
                for p in (server or {}).get("participants", [])
                if isinstance(p, dict) and p.get("letter") == letter
            ),
            None,
        )
        new = json.loads(json.dumps(record))
        people = new.get("participants") or []
        index = next(
            (i for i, p in enumerate(people) if isinstance(p, dict) and p.get("letter") == letter), None
        )
        if index is None:
            return
        entry = people[index]
        bound = self._bound_questions(db, record) if index == 0 else {}
        for name in REGISTRY_FIELDS:
            wanted, local = registry.get(name), entry.get(name)
            if wanted == local or name not in registry:
                continue
            untouched = (server_entry is not None and server_entry.get(name) == local) or (
                known is not None and known.get(name) == local
            )
            if not untouched:
                continue
            entry[name] = wanted
            question = bound.get(f"participant.{name}")
            if question is not None and new.get("answers", {}).get(question) is not None:
                new["answers"][question] = wanted
        if new == record:
            return
        new = normalise(new)
        digest = content_hash(new)
        now = utc_now_text()
        db.execute(
            "UPDATE interviews SET record = ?, content_hash = ?, updated_at = ? WHERE uuid = ?",
            (dumps(new), digest, now, uuid),
        )
        if digest != row["server_hash"]:
            self._enqueue(db, uuid, new, digest, row["server_revision"], now)

    @staticmethod
    def _bound_questions(db: Any, record: dict[str, Any]) -> dict[str, str]:
        """``binds`` target -> question id, from the cached instrument version of the record."""
        ref = record.get("instrument") or {}
        row = db.execute(
            "SELECT body FROM instruments WHERE slug = ? AND version = ?",
            (ref.get("slug"), ref.get("version")),
        ).fetchone()
        if row is None:
            return {}
        definition = loads(row["body"])
        found: dict[str, str] = {}
        pending = list(definition.get("metadata") or [])
        sections = list(definition.get("sections") or [])
        while sections:
            section = sections.pop()
            pending += section.get("questions") or []
            sections += section.get("sections") or []
        for question in pending:
            if isinstance(question, dict) and question.get("binds"):
                found[question["binds"]] = question["id"]
        return found

    def _merge_interview(self, db: Any, obj: dict[str, Any]) -> None:
        uuid, revision, record = obj.get("uuid"), obj.get("revision"), obj.get("record")
        if not isinstance(uuid, str) or not _is_int(revision) or not isinstance(record, dict):
            return
        row = db.execute("SELECT * FROM interviews WHERE uuid = ?", (uuid,)).fetchone()
        digest = obj.get("content_hash") or content_hash(record)
        if row is None:
            db.execute(
                "INSERT INTO interviews (uuid, study, country, activity, interview_number, record, "
                "content_hash, server_revision, server_hash, server_record, origin, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pulled', ?)",
                (
                    uuid,
                    record["study"],
                    record["country"],
                    record["activity"],
                    record["interview_number"],
                    dumps(record),
                    digest,
                    revision,
                    digest,
                    dumps(record),
                    utc_now_text(),
                ),
            )
            return
        if revision < row["server_revision"]:
            return
        self._learn_server_version(db, obj)
        queued = db.execute("SELECT 1 FROM outbox WHERE uuid = ? LIMIT 1", (uuid,)).fetchone()
        if queued is None:
            # Nothing local to keep: the tablet's copy follows the server.
            db.execute(
                "UPDATE interviews SET record = ?, content_hash = ?, updated_at = ? WHERE uuid = ?",
                (dumps(record), digest, utc_now_text(), uuid),
            )

    def _merge_conflict(self, db: Any, obj: dict[str, Any]) -> None:
        conflict_id, status = obj.get("id"), obj.get("status")
        if not _is_int(conflict_id):
            return
        mine = db.execute("SELECT * FROM conflicts WHERE id = ?", (conflict_id,)).fetchone()
        if mine is None:
            return
        current = obj.get("current")
        db.execute(
            "UPDATE conflicts SET status = ?, current = ? WHERE id = ? AND status != 'resolved_on_device'",
            (status, dumps(current) if current is not None else mine["current"], conflict_id),
        )
        if isinstance(current, dict):
            self._learn_server_version(db, current)
        if status == "resolved":
            self._settled_on_server(db, conflict_id)

    def _settled_on_server(self, db: Any, conflict_id: int) -> None:
        """A coordinator resolved the conflict. The conflicting content is kept on the server, so the
        local entry goes. Edits queued behind it were made on the conflicting content: they are sent
        on that same old base, and the server keeps them as a conflict too unless identical."""
        entry = db.execute(
            "SELECT * FROM outbox WHERE conflict_id = ? AND status = 'conflict'", (conflict_id,)
        ).fetchone()
        if entry is None:
            return
        db.execute("DELETE FROM outbox WHERE id = ?", (entry["id"],))
        following = db.execute(
            "SELECT id FROM outbox WHERE uuid = ? ORDER BY id LIMIT 1", (entry["uuid"],)
        ).fetchone()
        if following is not None:
            db.execute(
                "UPDATE outbox SET base_revision = ? WHERE id = ? AND base_revision IS NULL",
                (entry["base_revision"], following["id"]),
            )
        else:
            db.execute(
                "UPDATE interviews SET record = server_record, content_hash = server_hash "
                "WHERE uuid = ? AND server_record IS NOT NULL",
                (entry["uuid"],),
            )

    def sync(self, study: str | None = None) -> tuple[PushReport, PullReport]:
        """Push, then pull: what a tablet does whenever a connection appears."""
        return self.push(), self.pull(study)
