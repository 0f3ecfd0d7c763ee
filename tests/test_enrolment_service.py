"""The tablet services the API and the console share: enrolment within the device scope rules, the
devices and field researchers of a country, and the QR code."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from sqlalchemy.orm import Session

from surveykit.accounts import enrolment, services
from surveykit.accounts.identity import GrantScope, Identity


def _coordinator(user: Any, countries: tuple[str, ...] | None, study: str = "ocsea") -> Identity:
    return Identity(user.id, user.username, "session", None, (GrantScope("coordinator", study, countries),))


def test_a_coordinator_enrols_only_within_its_countries(accounts: Any, dbsession: Session) -> None:
    study = accounts.study("ocsea", ("KE", "TZ"))
    boss = _coordinator(accounts.user("boss-ke", "coordinator", "ocsea", ["KE"]), ("KE",))
    accounts.user("field-ke", "fieldworker", "ocsea", ["KE"])
    accounts.user("field-tz", "fieldworker", "ocsea", ["TZ"])
    accounts.user("field-both", "fieldworker", "ocsea", ["KE", "TZ"])
    enrolled = enrolment.enrol_for(dbsession, boss, "field-ke", "KE tablet 1", accounts.policy)
    assert enrolled.device.scope == [{"study_id": study.id, "countries": ["KE"]}]
    assert enrolled.device.enrolled_by == "boss-ke" and len(enrolled.code) == 11
    # Someone else's field researcher, and a username that does not exist, read the same.
    for username, reason in (("field-tz", "out_of_scope"), ("nobody-here", "unknown_user")):
        with pytest.raises(enrolment.EnrolmentDenied) as raised:
            enrolment.enrol_for(dbsession, boss, username, "x", accounts.policy)
        assert raised.value.status == 403 and raised.value.audit == {"reason": reason}
        assert "not a fieldworker in a study and country you coordinate" in raised.value.message
    # A researcher of both countries gets a KE-only tablet; asking for TZ is beyond the coordinator.
    both = enrolment.enrol_for(dbsession, boss, "field-both", "shared", accounts.policy)
    assert both.device.scope == [{"study_id": study.id, "countries": ["KE"]}]
    with pytest.raises(enrolment.EnrolmentDenied) as raised:
        enrolment.enrol_for(dbsession, boss, "field-both", "x", accounts.policy, "ocsea", ["TZ"])
    assert raised.value.status == 403 and raised.value.field == "countries"
    with pytest.raises(enrolment.EnrolmentDenied) as raised:
        enrolment.enrol_for(dbsession, boss, "field-ke", " ", accounts.policy)
    assert raised.value.status == 422 and raised.value.field == "label"


def test_the_devices_and_field_researchers_of_a_country(accounts: Any, dbsession: Session) -> None:
    study = accounts.study("ocsea", ("KE", "TZ"))
    boss_ke = _coordinator(accounts.user("boss2-ke", "coordinator", "ocsea", ["KE"]), ("KE",))
    boss_tz = _coordinator(accounts.user("boss2-tz", "coordinator", "ocsea", ["TZ"]), ("TZ",))
    accounts.user("fw-ke", "fieldworker", "ocsea", ["KE"])
    accounts.user("fw-tz", "fieldworker", "ocsea", ["TZ"])
    gone = accounts.user("fw-gone", "fieldworker", "ocsea", ["KE"])
    services.deactivate_user(dbsession, gone)
    ke = enrolment.enrol_for(dbsession, boss_ke, "fw-ke", "KE tablet", accounts.policy)
    tz = enrolment.enrol_for(dbsession, boss_tz, "fw-tz", "TZ tablet", accounts.policy)
    assert [d.id for d, _ in enrolment.country_devices(dbsession, boss_ke, study, "KE")] == [ke.device.id]
    assert enrolment.country_devices(dbsession, boss_ke, study, "TZ") == []
    assert [d.id for d, _ in enrolment.country_devices(dbsession, boss_tz, study, "TZ")] == [tz.device.id]
    assert enrolment.country_fieldworkers(dbsession, boss_ke, study, "KE") == ["fw-ke"]
    assert enrolment.country_fieldworkers(dbsession, boss_ke, study, "TZ") == []
    assert enrolment.managed_device(dbsession, boss_ke, ke.device.id) is ke.device
    with pytest.raises(enrolment.EnrolmentDenied) as raised:
        enrolment.managed_device(dbsession, boss_ke, tz.device.id)
    assert raised.value.status == 403
    with pytest.raises(enrolment.EnrolmentDenied) as raised:
        enrolment.managed_device(dbsession, boss_ke, "no-such-device")
    assert raised.value.status == 404
    services.revoke_device(dbsession, ke.device)
    with pytest.raises(enrolment.EnrolmentDenied) as raised:
        enrolment.reenrol(dbsession, boss_ke, ke.device, accounts.policy)
    assert raised.value.status == 409


def test_the_qr_code_holds_the_payload() -> None:
    import segno

    payload = services.enrolment_payload("http://127.0.0.1:6543", "ABCDE-FGHJK")
    qr = enrolment.qr_code(payload)
    assert qr["payload"] == payload and qr["svg"].startswith("<svg")
    png = base64.b64decode(qr["png_base64"])
    assert png.startswith(b"\x89PNG")
    # The same symbol as the payload's own, at the documented scale and border.
    expected = io.BytesIO()
    segno.make(payload, error="m").save(expected, kind="png", scale=6, border=4)
    assert png == expected.getvalue()
