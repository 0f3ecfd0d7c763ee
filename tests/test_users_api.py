"""Accounts and grants managed through the API by admins of every study (what the console's admin
pages offer): create, grant, remove a grant, deactivate; each audited, bad input refused unchanged."""

from __future__ import annotations

import json
from typing import Any

import webtest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from surveykit.accounts import passwords
from surveykit.accounts.models import AuthSession, Grant, User
from surveykit.audit.models import AuditEvent

PASSWORD = "a long enough password"


def _send(testapp: webtest.TestApp, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    return testapp.request(
        url,
        method=method,
        body=json.dumps(body).encode() if body is not None else b"",
        headers={**headers, **({"Content-Type": "application/json"} if body is not None else {})},
        expect_errors=True,
    )


def _actions(session: Session) -> list[tuple[str, str | None]]:
    return [
        (e.action, e.target)
        for e in session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.like("user.%") | AuditEvent.action.like("grant.%"))
            .order_by(AuditEvent.id)
        )
    ]


def _state(session: Session) -> tuple[Any, ...]:
    return (
        session.scalar(select(func.count()).select_from(User)),
        session.scalar(select(func.count()).select_from(Grant)),
        session.scalar(select(func.count()).select_from(AuthSession).where(AuthSession.revoked_at.is_(None))),
    )


def test_an_admin_creates_an_account_and_grants_it_a_role(testapp, dbsession, accounts) -> None:
    accounts.study("ocsea", ("KE", "TZ"))
    admin = accounts.headers("admin")
    created = _send(testapp, "POST", "/api/v1/users", {"username": "amina", "password": PASSWORD}, admin)
    assert created.status_int == 201, created.text
    assert created.json["username"] == "amina" and created.json["grants"] == [] and created.json["active"]
    assert "password" not in created.json
    generated = _send(testapp, "POST", "/api/v1/users", {"username": "baraka"}, admin)
    assert generated.status_int == 201 and generated.headers["Cache-Control"] == "no-store"
    stored = dbsession.scalar(select(User.password_hash).where(User.username == "baraka"))
    assert passwords.verify_password(stored, generated.json["password"])

    grant = _send(
        testapp,
        "POST",
        "/api/v1/users/amina/grants",
        {"role": "coordinator", "study": "ocsea", "countries": ["TZ", "KE"]},
        admin,
    )
    assert grant.status_int == 201, grant.text
    assert grant.json == {
        "id": grant.json["id"],
        "role": "coordinator",
        "study": "ocsea",
        "countries": ["KE", "TZ"],
    }
    everything = _send(
        testapp, "POST", "/api/v1/users/baraka/grants", {"role": "admin", "study": None}, admin
    )
    assert everything.json["study"] == "*" and everything.json["countries"] == "*"
    # The new coordinator logs in and sees the grant.
    login = _send(testapp, "POST", "/api/v1/auth/token", {"username": "amina", "password": PASSWORD}, {})
    me = testapp.get("/api/v1/me", headers={"Authorization": f"Bearer {login.json['access_token']}"}).json
    assert me["grants"] == [{"role": "coordinator", "study": "ocsea", "countries": ["KE", "TZ"]}]

    removed = _send(testapp, "DELETE", f"/api/v1/users/amina/grants/{grant.json['id']}", None, admin)
    assert removed.status_int == 200 and removed.json["grants"] == []
    assert _actions(dbsession) == [
        ("user.create", "amina"),
        ("user.create", "baraka"),
        ("grant.add", "amina"),
        ("grant.add", "baraka"),
        ("grant.remove", "amina"),
    ]
    added = dbsession.scalars(
        select(AuditEvent).where(AuditEvent.action == "grant.add").order_by(AuditEvent.id)
    ).first()
    assert added.details["countries"] == ["KE", "TZ"] and added.details["role"] == "coordinator"
    created_event = dbsession.scalars(
        select(AuditEvent).where(AuditEvent.action == "user.create").order_by(AuditEvent.id)
    ).all()
    assert [e.details for e in created_event] == [{"generated": False}, {"generated": True}]


def test_bad_accounts_and_grants_are_refused_unchanged(testapp, dbsession, accounts) -> None:
    accounts.study("ocsea", ("KE",))
    admin = accounts.headers("admin")
    _send(testapp, "POST", "/api/v1/users", {"username": "amina", "password": PASSWORD}, admin)
    before = _state(dbsession)
    cases = [
        ("POST", "/api/v1/users", {"username": "amina", "password": PASSWORD}, 409, "username"),
        ("POST", "/api/v1/users", {"username": "Not Valid"}, 422, "username"),
        ("POST", "/api/v1/users", {"username": "shorty", "password": "short"}, 422, "password"),
        ("POST", "/api/v1/users", {"username": "named", "name": "J. Otieno"}, 422, "name"),
        ("POST", "/api/v1/users/amina/grants", {"role": "boss", "study": "ocsea"}, 422, "role"),
        ("POST", "/api/v1/users/amina/grants", {"role": "analyst", "study": "nope"}, 422, "study"),
        ("POST", "/api/v1/users/amina/grants", {"role": "analyst", "study": "Bad Slug"}, 422, "study"),
        ("POST", "/api/v1/users/amina/grants", {"role": "analyst"}, 422, "study"),
        (
            "POST",
            "/api/v1/users/amina/grants",
            {"role": "analyst", "study": "ocsea", "countries": ["ZZ"]},
            422,
            "countries",
        ),
        (
            "POST",
            "/api/v1/users/amina/grants",
            {"role": "analyst", "study": "ocsea", "countries": []},
            422,
            "countries",
        ),
        ("POST", "/api/v1/users/nobody/grants", {"role": "analyst", "study": "ocsea"}, 404, "username"),
        ("DELETE", "/api/v1/users/amina/grants/999999", None, 404, "grant_id"),
        ("DELETE", "/api/v1/users/amina/grants/x", None, 404, None),
        ("POST", "/api/v1/users/nobody/deactivate", None, 404, "username"),
    ]
    for method, url, body, status, path in cases:
        answer = _send(testapp, method, url, body, admin)
        assert answer.status_int == status, (url, body, answer.text)
        assert set(answer.json) == {"status", "code", "message", "details"}
        if path is not None:
            assert path in [d["path"] for d in answer.json["details"]], (url, body, answer.json)
    assert _state(dbsession) == before
    assert _actions(dbsession) == [("user.create", "amina")]


def test_deactivating_ends_every_session_but_not_ones_own(testapp, dbsession, accounts) -> None:
    admin_user = accounts.user("root", "admin", None)
    admin = {"Authorization": f"Bearer {accounts.token(admin_user)}"}
    amina = accounts.user("amina", "coordinator", "ocsea", ["KE"])
    token = accounts.token(amina)
    answer = _send(testapp, "POST", "/api/v1/users/amina/deactivate", None, admin)
    assert answer.status_int == 200 and answer.json["active"] is False
    assert testapp.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}, status=401)
    own = _send(testapp, "POST", "/api/v1/users/root/deactivate", None, admin)
    assert own.status_int == 422 and own.json["details"][0]["path"] == "username"
    assert dbsession.scalar(select(User.active).where(User.username == "root")) is True
    assert ("user.deactivate", "amina") in _actions(dbsession)


def test_only_admins_of_every_study_manage_accounts(testapp, dbsession, accounts) -> None:
    accounts.user("amina", "coordinator", "ocsea", ["KE"])
    before = _state(dbsession)
    for headers in (
        {},
        accounts.headers("admin", "ocsea"),
        accounts.headers("coordinator", "ocsea", ["KE"]),
    ):
        expected = 401 if not headers else 403
        before = _state(dbsession)
        for method, url, body in (
            ("POST", "/api/v1/users", {"username": "intruder", "password": PASSWORD}),
            ("POST", "/api/v1/users/amina/grants", {"role": "admin"}),
            ("POST", "/api/v1/users/amina/deactivate", None),
            ("DELETE", "/api/v1/users/amina/grants/1", None),
            ("GET", "/api/v1/users", None),
        ):
            assert _send(testapp, method, url, body, headers).status_int == expected, (headers, url)
        assert _state(dbsession) == before
