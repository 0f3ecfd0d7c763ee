"""The audit log: readable by global admins through the API, filterable, and append-only in the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import webtest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from surveykit.audit import services as audit
from surveykit.audit.models import AuditEvent

AUDIT = "/api/v1/audit"
ENVELOPE_KEYS = {"status", "code", "message", "details"}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def assert_envelope(response: webtest.TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_int == status, response.text
    assert response.content_type == "application/json"
    body = response.json
    assert set(body) == ENVELOPE_KEYS
    assert (body["status"], body["code"]) == (status, code)
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    return body


def audit_events(dbsession: Session, action: str | None = None) -> list[AuditEvent]:
    dbsession.expire_all()
    statement = select(AuditEvent).order_by(AuditEvent.id)
    if action is not None:
        statement = statement.where(AuditEvent.action == action)
    return list(dbsession.scalars(statement))


# (minutes after T0, action, actor)
HISTORY = [
    (0, "auth.login", "amina"),
    (1, "auth.login_failed", "amina"),
    (2, "auth.refresh", "amina"),
    (3, "device.enrol", "amina"),
    (4, "auth.login", "baraka"),
    (5, "grant.add", "cli:root"),
    (6, "auth.refresh_reuse_detected", "baraka"),
    (7, "authentic.not_auth_family", "baraka"),
]


@pytest.fixture
def history(dbsession: Session) -> list[AuditEvent]:
    events = [
        AuditEvent(
            at=T0 + timedelta(minutes=minutes),
            action=action,
            outcome="refused" if action.endswith(("failed", "detected")) else "success",
            actor=actor,
            target=f"target-{minutes}",
            details={"n": minutes},
        )
        for minutes, action, actor in HISTORY
    ]
    dbsession.add_all(events)
    dbsession.flush()
    return events


@pytest.fixture
def admin(accounts: Any) -> dict[str, str]:
    return accounts.headers("admin", username="root-admin")


def _actions(response: webtest.TestResponse) -> list[str]:
    return [event["action"] for event in response.json["events"]]


def test_global_admins_read_the_log_newest_first(
    testapp: webtest.TestApp, history: list[AuditEvent], admin: dict[str, str]
) -> None:
    body = testapp.get(AUDIT, headers=admin).json
    assert [e["id"] for e in body["events"]] == [e.id for e in reversed(history)]
    first = body["events"][-1]
    assert first == {
        "id": history[0].id,
        "at": T0.isoformat(),
        "action": "auth.login",
        "outcome": "success",
        "actor": "amina",
        "device_id": None,
        "target": "target-0",
        "remote_addr": None,
        "details": {"n": 0},
    }
    assert "next_before" not in body


@pytest.mark.parametrize(
    "caller",
    [
        ("admin", "ocsea", None),
        ("coordinator", "ocsea", None),
        ("analyst", "ocsea", ["KE"]),
        ("fieldworker", "ocsea", ["KE"]),
    ],
)
def test_only_global_admins_may_read_the_log(
    caller: tuple[str, str, list[str] | None],
    testapp: webtest.TestApp,
    dbsession: Session,
    accounts: Any,
    history: list[AuditEvent],
) -> None:
    role, study, countries = caller
    headers = accounts.headers(role, study=study, countries=countries)
    assert_envelope(testapp.get(AUDIT, headers=headers, status=403), 403, "forbidden")
    [event] = audit_events(dbsession, "authz.forbidden")
    assert event.outcome == "refused"
    assert event.target == f"GET {AUDIT}"
    assert event.details == {"permission": "audit.read"}
    assert event.actor.startswith(role)


def test_anonymous_callers_are_unauthenticated(testapp: webtest.TestApp, history: list[AuditEvent]) -> None:
    assert_envelope(testapp.get(AUDIT, status=401), 401, "unauthenticated")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"actor": "amina"}, ["device.enrol", "auth.refresh", "auth.login_failed", "auth.login"]),
        ({"actor": "nobody"}, []),
        ({"action": "auth.login"}, ["auth.login", "auth.login"]),
        (
            {"action": "auth.*"},
            ["auth.refresh_reuse_detected", "auth.login", "auth.refresh", "auth.login_failed", "auth.login"],
        ),
        ({"action": "auth.*", "actor": "baraka"}, ["auth.refresh_reuse_detected", "auth.login"]),
        ({"action": "auth"}, []),
        (
            {"since": "2026-03-01T12:05:00Z"},
            ["authentic.not_auth_family", "auth.refresh_reuse_detected", "grant.add"],
        ),
        ({"until": "2026-03-01T12:02:00Z"}, ["auth.login_failed", "auth.login"]),
        (
            {"since": "2026-03-01T12:01:00+00:00", "until": "2026-03-01T12:04:00+00:00"},
            ["device.enrol", "auth.refresh", "auth.login_failed"],
        ),
        # A time in another zone means the same instant.
        (
            {"since": "2026-03-01T15:06:00+03:00"},
            ["authentic.not_auth_family", "auth.refresh_reuse_detected"],
        ),
    ],
)
def test_filters(
    params: dict[str, str],
    expected: list[str],
    testapp: webtest.TestApp,
    history: list[AuditEvent],
    admin: dict[str, str],
) -> None:
    assert _actions(testapp.get(AUDIT, params=params, headers=admin)) == expected


def test_paging_with_limit_and_next_before(
    testapp: webtest.TestApp, history: list[AuditEvent], admin: dict[str, str]
) -> None:
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 3}
    pages = 0
    while True:
        body = testapp.get(AUDIT, params=params, headers=admin).json
        pages += 1
        seen += [event["id"] for event in body["events"]]
        assert len(body["events"]) <= 3
        if "next_before" not in body:
            break
        assert body["next_before"] == body["events"][-1]["id"]
        params = {"limit": 3, "before": body["next_before"]}
    assert seen == [event.id for event in reversed(history)]
    assert pages == 3
    # Paging composes with filters.
    first = testapp.get(AUDIT, params={"action": "auth.*", "limit": 2}, headers=admin).json
    assert _actions_of(first) == ["auth.refresh_reuse_detected", "auth.login"]
    rest = testapp.get(
        AUDIT, params={"action": "auth.*", "limit": 2, "before": first["next_before"]}, headers=admin
    ).json
    assert _actions_of(rest) == ["auth.refresh", "auth.login_failed"]


def _actions_of(body: dict[str, Any]) -> list[str]:
    return [event["action"] for event in body["events"]]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"before": "0"},
        {"since": "yesterday"},
        {"actr": "amina"},
    ],
)
def test_bad_queries_are_invalid_input(
    params: dict[str, str], testapp: webtest.TestApp, admin: dict[str, str]
) -> None:
    assert_envelope(testapp.get(AUDIT, params=params, headers=admin, status=422), 422, "invalid_input")


def test_a_parameter_given_twice_is_invalid(testapp: webtest.TestApp, admin: dict[str, str]) -> None:
    assert_envelope(testapp.get(f"{AUDIT}?actor=a&actor=b", headers=admin, status=422), 422, "invalid_input")


def test_query_service_family_matching_escapes_wildcards(dbsession: Session) -> None:
    for action in ("a_b.x", "axb.y", "a%b.z"):
        audit.record(dbsession, action, actor="t")
    dbsession.flush()
    assert [e.action for e in audit.query(dbsession, action="a_b.*")] == ["a_b.x"]
    assert [e.action for e in audit.query(dbsession, action="a%b.*")] == ["a%b.z"]
    assert len(audit.query(dbsession, limit=10**6)) == 3


# --- append-only ------------------------------------------------------------------------------


def test_audit_rows_cannot_be_updated_or_deleted(dbsession: Session, history: list[AuditEvent]) -> None:
    target = history[0].id
    statements = [
        update(AuditEvent).where(AuditEvent.id == target).values(actor="someone-else"),
        update(AuditEvent).values(details={}),
        delete(AuditEvent).where(AuditEvent.id == target),
        delete(AuditEvent),
        text("DELETE FROM audit_events"),
    ]
    for statement in statements:
        savepoint = dbsession.begin_nested()
        with pytest.raises(DBAPIError, match="append-only"):
            dbsession.execute(statement)
        savepoint.rollback()
    assert [(e.id, e.actor) for e in audit_events(dbsession)] == [(e.id, e.actor) for e in history]
    # Appending still works.
    audit.record(dbsession, "still.appending", actor="t")
    dbsession.flush()
    assert len(audit_events(dbsession)) == len(history) + 1


def test_the_orm_cannot_change_audit_rows_either(dbsession: Session, history: list[AuditEvent]) -> None:
    savepoint = dbsession.begin_nested()
    history[1].outcome = "success"
    with pytest.raises(DBAPIError, match="append-only"):
        dbsession.flush()
    savepoint.rollback()
    savepoint = dbsession.begin_nested()
    dbsession.delete(history[2])
    with pytest.raises(DBAPIError, match="append-only"):
        dbsession.flush()
    savepoint.rollback()
    assert len(audit_events(dbsession)) == len(history)


def test_paging_follows_next_links_with_the_filters_kept(
    testapp: webtest.TestApp, history: list[AuditEvent], admin: dict[str, str]
) -> None:
    url = f"{AUDIT}?action=auth.*&limit=2"
    seen: list[str] = []
    while url:
        body = testapp.get(url, headers=admin).json
        seen += _actions_of(body)
        url = body.get("next")
        if url:
            assert url.startswith(f"{AUDIT}?") and "action=auth.%2A" in url
            assert f"before={body['next_before']}" in url
    expected = [e.action for e in reversed(history) if e.action.startswith("auth.")]
    assert seen == expected
    # A page that ends exactly at the last matching event offers no next page.
    exact = testapp.get(AUDIT, params={"limit": len(history)}, headers=admin).json
    assert "next" not in exact and "next_before" not in exact
    assert (
        testapp.get(AUDIT, params={"limit": len(history) - 1}, headers=admin).json["next_before"]
        == history[1].id
    )


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"since": "2026-03-01T12:05:00Z", "until": "2026-03-01T12:05:00Z"}, "until"),
        ({"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "until"),
        ({"action": "*"}, "action"),
        ({"action": "auth*"}, "action"),
        ({"action": "*.login"}, "action"),
        ({"until": "2026-02-30T00:00:00Z"}, "until"),
        ({"before": "x"}, "before"),
    ],
)
def test_bad_filters_name_the_parameter(
    params: dict[str, str], path: str, testapp: webtest.TestApp, admin: dict[str, str]
) -> None:
    answer = testapp.get(AUDIT, params=params, headers=admin, status=422)
    assert_envelope(answer, 422, "invalid_input")
    assert [(d["location"], d["path"]) for d in answer.json["details"]] == [("querystring", path)]


def test_query_page_is_keyset_paging(dbsession: Session) -> None:
    for n in range(5):
        audit.record(dbsession, f"page.event{n}", actor="t")
    dbsession.flush()
    first = audit.query_page(dbsession, action="page.*", limit=2)
    assert [e.action for e in first.events] == ["page.event4", "page.event3"]
    # Events written after the first page do not shift the next one.
    audit.record(dbsession, "page.event5", actor="t")
    dbsession.flush()
    second = audit.query_page(dbsession, action="page.*", limit=2, before_id=first.next_before)
    assert [e.action for e in second.events] == ["page.event2", "page.event1"]
    last = audit.query_page(dbsession, action="page.*", limit=2, before_id=second.next_before)
    assert [e.action for e in last.events] == ["page.event0"] and last.next_before is None
