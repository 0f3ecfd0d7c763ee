"""The reference sync client: what a tablet keeps in its local SQLite file and how it talks to the
server (activation, token refresh, instruments, number blocks, the outbox, push with receipts, pull).

Standard library only; app developers read it as the reference implementation of docs/sync.md, and
docs/client.md states the rules a tablet app must follow.
"""

from surveykit.client.client import (
    AnswerLost,
    ApiError,
    Block,
    Client,
    Interview,
    NoNumbersLeft,
    NotActivated,
    OutboxEntry,
    PullReport,
    PushReport,
    RecordState,
    RefreshInDoubt,
    RetryPolicy,
    ServerUnavailable,
    SessionEnded,
    UnknownRecord,
    format_pid,
)
from surveykit.client.http import ClientError, HttpTransport, NetworkError, Response, Transport
from surveykit.client.store import Store, StoreInUse, canonical_json, content_hash, normalise

__all__ = [
    "AnswerLost",
    "ApiError",
    "Block",
    "Client",
    "ClientError",
    "HttpTransport",
    "Interview",
    "NetworkError",
    "NoNumbersLeft",
    "NotActivated",
    "OutboxEntry",
    "PullReport",
    "PushReport",
    "RecordState",
    "RefreshInDoubt",
    "Response",
    "RetryPolicy",
    "ServerUnavailable",
    "SessionEnded",
    "Store",
    "StoreInUse",
    "Transport",
    "UnknownRecord",
    "canonical_json",
    "content_hash",
    "format_pid",
    "normalise",
]
