"""Re-enrolment races on a real, committing database (threads, as two app threads or processes would):
two activations of one code, and an activation racing a revocation."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import webtest
from sqlalchemy import select
from support_db import CommittingApp, settings_for

from surveykit.accounts import services as accounts
from surveykit.accounts.models import AuthSession, Device
from surveykit.accounts.tokens import TokenSettings
from surveykit.audit.models import AuditEvent
from surveykit.studies import services as studies

ROUNDS = 3
THREADS = 4


class Server(CommittingApp):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.policy = accounts.AccountPolicy.from_settings(settings)
        self.client = webtest.TestApp(self.app, extra_environ={"HTTP_HOST": "surveykit.test"})
        self._count = 0
        with self.factory() as session:
            study = studies.create_study(session, "ocsea")
            studies.add_country(session, study, "KE", "Kenya")
            coordinator = accounts.create_user(session, "coord", None, self.policy)
            accounts.add_grant(session, coordinator, "coordinator", "ocsea", ["KE"], "tests")
            session.flush()
            pair = accounts.start_session(
                session, coordinator, TokenSettings.from_settings(settings), self.policy
            )
            session.commit()
        self.coordinator = {"Authorization": f"Bearer {pair.access_token}"}

    def active_device(self) -> str:
        self._count += 1
        with self.factory() as session:
            user = accounts.create_user(session, f"fieldworker{self._count}", None, self.policy)
            accounts.add_grant(session, user, "fieldworker", "ocsea", ["KE"], "tests")
            session.flush()
            _device, code = accounts.enrol_device(session, user, "tablet", "tests", self.policy)
            device, _pair = accounts.activate_device(
                session, code, TokenSettings.from_settings(self.settings), self.policy
            )
            session.commit()
            return device.id

    def reenrolment_code(self, device_id: str) -> str:
        response = self.client.post(f"/api/v1/devices/{device_id}/enrolment", headers=self.coordinator)
        return response.json["enrolment_code"]

    def at_once(self, calls: list[Callable[[], Any]]) -> list[Any]:
        barrier = threading.Barrier(len(calls))
        answers: list[Any] = [None] * len(calls)

        def run(index: int) -> None:
            barrier.wait()
            answers[index] = calls[index]()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        return answers

    def activate(self, code: str) -> Callable[[], tuple[int, Any]]:
        def call() -> tuple[int, Any]:
            response = self.client.post(
                "/api/v1/devices/activate",
                json.dumps({"code": code}).encode(),
                headers={"Content-Type": "application/json"},
                expect_errors=True,
            )
            return response.status_int, response.json

        return call

    def revoke(self, device_id: str) -> Callable[[], tuple[int, Any]]:
        def call() -> tuple[int, Any]:
            response = self.client.delete(
                f"/api/v1/devices/{device_id}", headers=self.coordinator, expect_errors=True
            )
            return response.status_int, response.json

        return call

    def live_sessions(self, device_id: str) -> list[str]:
        with self.factory() as session:
            return list(
                session.scalars(
                    select(AuthSession.id).where(
                        AuthSession.device_id == device_id, AuthSession.revoked_at.is_(None)
                    )
                )
            )


@pytest.fixture
def server(fresh_database: Callable[[], str], tmp_path: Path) -> Iterator[Server]:
    server = Server(settings_for(fresh_database(), tmp_path))
    yield server
    server.engine.dispose()


def test_of_several_activations_of_one_code_exactly_one_wins(server: Server) -> None:
    for _round in range(ROUNDS):
        device_id = server.active_device()
        code = server.reenrolment_code(device_id)
        answers = server.at_once([server.activate(code) for _ in range(THREADS)])
        winners = [body for status, body in answers if status == 200]
        losers = [body for status, body in answers if status != 200]
        assert len(winners) == 1, answers
        assert winners[0]["device_id"] == device_id
        assert {(body["status"], body["code"]) for body in losers} == {(401, "enrolment_refused")}
        # Only the winner's session is live: a losing activation ended nothing and started nothing.
        me = server.client.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {winners[0]['access_token']}"}
        )
        assert me.json["device_id"] == device_id
        assert len(server.live_sessions(device_id)) == 1
    with server.factory() as session:
        outcomes = list(
            session.scalars(select(AuditEvent.outcome).where(AuditEvent.action == "device.activate"))
        )
    assert outcomes.count("success") == ROUNDS  # one per round (the first activations are not requests)
    assert outcomes.count("refused") == ROUNDS * (THREADS - 1)


def test_an_activation_racing_a_revocation_leaves_the_device_revoked_without_a_session(
    server: Server,
) -> None:
    for _round in range(ROUNDS):
        device_id = server.active_device()
        code = server.reenrolment_code(device_id)
        activation, revocation = server.at_once([server.activate(code), server.revoke(device_id)])
        assert revocation[0] == 200, revocation
        assert activation[0] in (200, 401), activation
        # Whichever came first, the device ends revoked, with no live session and no usable code.
        assert server.live_sessions(device_id) == []
        with server.factory() as session:
            device = session.get(Device, device_id)
            assert device.revoked_at is not None and device.enrolment_code_hash is None
        if activation[0] == 200:
            me = server.client.get(
                "/api/v1/me",
                headers={"Authorization": f"Bearer {activation[1]['access_token']}"},
                expect_errors=True,
            )
            assert me.status_int == 401
        # And a revoked device stays revoked.
        again = server.client.post(
            f"/api/v1/devices/{device_id}/enrolment", headers=server.coordinator, expect_errors=True
        )
        assert (again.status_int, again.json["code"]) == (409, "device_revoked")
