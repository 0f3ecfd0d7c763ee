"""The console's pages for everyone, admins, analysts and instruments (WebTest): each action does
what its API twin does, errors appear next to the field at fault, and nothing changes on an error.
"""

from __future__ import annotations

import re
from typing import Any

import webtest
from console_support import HTML, csrf_for, csrf_in, sign_in
from instrument_samples import minimal_definition
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_sync_support import make_conflict

from surveykit.accounts import browser, passwords, services
from surveykit.accounts.models import AuthSession, Grant, User
from surveykit.audit import services as audit
from surveykit.audit.models import AuditEvent
from surveykit.instruments import services as instruments
from surveykit.participants import services as registry
from surveykit.studies import services as studies

PASSWORD = "console pages password"
_PASSWORD_HASH = passwords.hash_password(PASSWORD)


def with_password(user: User) -> User:
    user.password_hash = _PASSWORD_HASH
    return user


def events(dbsession: Session, action: str) -> list[AuditEvent]:
    dbsession.expire_all()
    return list(
        dbsession.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def error_of(page: Any, field: str) -> str | None:
    found = re.search(rf'<p class="error" id="error-{field}">([^<]*)</p>', page.text)
    return found.group(1) if found else None


def admin_signed_in(testapp: webtest.TestApp, accounts: Any) -> tuple[User, str]:
    admin = accounts.user("root-admin", "admin", None)
    return admin, sign_in(testapp, accounts, admin)


def post(testapp: webtest.TestApp, session_id: str, accounts: Any, url: str, **form: str) -> Any:
    return testapp.post(
        url, {"csrf_token": csrf_for(accounts, session_id), **form}, headers=HTML, expect_errors=True
    )


def open_sessions(dbsession: Session, user: User) -> int:
    dbsession.expire_all()
    return dbsession.scalar(
        select(func.count())
        .select_from(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
    )


# --- my password --------------------------------------------------------------------------------


def test_changing_my_password_keeps_this_sign_in_and_ends_the_others(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    user = with_password(accounts.user("amina", "coordinator", countries=["KE"]))
    other_session = sign_in(testapp, accounts, user)  # e.g. another browser
    this_session = sign_in(testapp, accounts, user)
    page = testapp.get("/console/account/password", headers=HTML)
    new = "a brand new passphrase"
    response = testapp.post(
        "/console/account/password",
        {
            "csrf_token": csrf_in(page),
            "current_password": PASSWORD,
            "new_password": new,
            "confirm_password": new,
        },
        headers=HTML,
    )
    assert response.status_int == 303 and response.headers["Location"].endswith("/console/account")
    assert "Your password is changed" in testapp.get(response.headers["Location"], headers=HTML).text
    dbsession.expire_all()
    assert passwords.verify_password(dbsession.get(User, user.id).password_hash, new)
    assert dbsession.get(AuthSession, this_session).revoked_at is None
    assert dbsession.get(AuthSession, other_session).revoked_at is not None
    [changed] = events(dbsession, "user.password_change")
    assert (changed.outcome, changed.target, changed.details["sessions_ended"]) == ("success", "amina", 1)


def test_password_errors_are_shown_next_to_their_field_and_change_nothing(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    user = with_password(accounts.user("amina", "coordinator", countries=["KE"]))
    session_id = sign_in(testapp, accounts, user)
    url = "/console/account/password"
    wrong = post(
        testapp,
        session_id,
        accounts,
        url,
        current_password="nope",
        new_password="x" * 20,
        confirm_password="x" * 20,
    )
    assert (
        wrong.status_int == 422
        and error_of(wrong, "current_password") == "This is not your current password."
    )
    differ = post(
        testapp,
        session_id,
        accounts,
        url,
        current_password=PASSWORD,
        new_password="x" * 20,
        confirm_password="y" * 20,
    )
    assert error_of(differ, "confirm_password") == "The two new passwords differ."
    short = post(
        testapp,
        session_id,
        accounts,
        url,
        current_password=PASSWORD,
        new_password="short",
        confirm_password="short",
    )
    assert short.status_int == 422 and "12" in error_of(short, "new_password")
    dbsession.expire_all()
    assert dbsession.get(User, user.id).password_hash == _PASSWORD_HASH
    assert [event.outcome for event in events(dbsession, "user.password_change")] == ["refused"]


# --- accounts (admins) --------------------------------------------------------------------------


def test_an_admin_adds_an_account_with_a_password(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    _, session_id = admin_signed_in(testapp, accounts)
    response = post(
        testapp, session_id, accounts, "/console/admin/users", username="baraka", password=PASSWORD
    )
    assert response.status_int == 303 and response.headers["Location"].endswith("/console/admin/users/baraka")
    assert "Account baraka created." in testapp.get(response.headers["Location"], headers=HTML).text
    created = services.get_user(dbsession, "baraka")
    assert passwords.verify_password(created.password_hash, PASSWORD)
    assert events(dbsession, "user.create")[-1].target == "baraka"


def test_an_invalid_username_is_shown_next_to_the_field_and_nothing_is_created(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    _, session_id = admin_signed_in(testapp, accounts)
    before = dbsession.scalar(select(func.count()).select_from(User))
    response = post(testapp, session_id, accounts, "/console/admin/users", username="Not Valid!", password="")
    assert response.status_int == 422
    assert "username must be" in error_of(response, "username")
    assert 'value="Not Valid!"' in response.text
    short = post(
        testapp, session_id, accounts, "/console/admin/users", username="valid-name", password="short"
    )
    assert short.status_int == 422 and error_of(short, "password")
    assert dbsession.scalar(select(func.count()).select_from(User)) == before


def test_a_generated_password_is_shown_once_and_never_stored_in_a_cookie(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    _, session_id = admin_signed_in(testapp, accounts)
    response = post(testapp, session_id, accounts, "/console/admin/users", username="chausiku", password="")
    assert response.status_int == 200 and response.headers["Cache-Control"] == "no-store"
    shown = re.search(r'<span class="secret" id="new-password">([^<]+)</span>', response.text).group(1)
    assert passwords.verify_password(services.get_user(dbsession, "chausiku").password_hash, shown)
    assert all(shown not in value for key, value in response.headerlist if key == "Set-Cookie")
    assert shown not in testapp.get("/console/admin/users/chausiku", headers=HTML).text


def test_an_admin_grants_and_revokes(testapp: webtest.TestApp, accounts: Any, dbsession: Session) -> None:
    _, session_id = admin_signed_in(testapp, accounts)
    person = accounts.user("daudi", "fieldworker", "ocsea", ["KE"])
    url = "/console/admin/users/daudi/grants"
    unknown = post(testapp, session_id, accounts, url, role="analyst", study="ocsea", countries="KE, ZZ")
    assert unknown.status_int == 422 and "ZZ" in error_of(unknown, "countries")
    no_study = post(testapp, session_id, accounts, url, role="analyst", study="", countries="")
    assert error_of(no_study, "study") == "Choose a study."
    not_admin = post(testapp, session_id, accounts, url, role="analyst", study="*", countries="")
    assert "only an admin grant" in error_of(not_admin, "study")
    assert len(dbsession.scalars(select(Grant).where(Grant.user_id == person.id)).all()) == 1
    added = post(testapp, session_id, accounts, url, role="analyst", study="ocsea", countries="ke,tz")
    assert added.status_int == 303
    grant = dbsession.scalar(select(Grant).where(Grant.user_id == person.id, Grant.role == "analyst"))
    assert grant.countries == ["KE", "TZ"]
    page = testapp.get("/console/admin/users/daudi", headers=HTML)
    assert "KE, TZ" in page.text and 'data-confirm="Revoke this grant?"' in page.text
    grant_id = grant.id
    revoked = post(testapp, session_id, accounts, f"{url}/{grant_id}/revoke")
    assert revoked.status_int == 303
    dbsession.expire_all()
    assert dbsession.get(Grant, grant_id) is None
    assert [e.action for e in events(dbsession, "grant.add")] == ["grant.add"]
    assert events(dbsession, "grant.remove")[-1].details["grant"] == grant_id


def test_deactivating_ends_the_accounts_sessions_but_not_ones_own(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    admin, session_id = admin_signed_in(testapp, accounts)
    person = accounts.user("esther", "analyst", "ocsea", ["KE"])
    accounts.token(person)
    assert open_sessions(dbsession, person) == 1
    response = post(testapp, session_id, accounts, "/console/admin/users/esther/deactivate")
    assert response.status_int == 303
    dbsession.expire_all()
    assert not dbsession.get(User, person.id).active and open_sessions(dbsession, person) == 0
    itself = post(testapp, session_id, accounts, "/console/admin/users/root-admin/deactivate")
    assert itself.status_int == 422 and "your own account" in itself.text
    dbsession.expire_all()
    assert dbsession.get(User, admin.id).active


def test_resetting_a_password_shows_it_once_and_ends_the_persons_sign_ins(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    _, session_id = admin_signed_in(testapp, accounts)
    person = with_password(accounts.user("faraji", "analyst", "ocsea", ["KE"]))
    accounts.token(person)
    response = post(testapp, session_id, accounts, "/console/admin/users/faraji/password")
    assert response.status_int == 200 and response.headers["Cache-Control"] == "no-store"
    shown = re.search(r'id="new-password">([^<]+)<', response.text).group(1)
    dbsession.expire_all()
    assert passwords.verify_password(dbsession.get(User, person.id).password_hash, shown)
    assert open_sessions(dbsession, person) == 0
    assert events(dbsession, "user.password_reset")[-1].details["sessions_ended"] == 1


def test_an_admin_sees_a_lock_and_unlocks_it(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session, settings: dict[str, Any]
) -> None:
    with_password(accounts.user("gift", "analyst", "ocsea", ["KE"]))
    dbsession.flush()
    for _ in range(settings["surveykit.lockout_threshold"]):
        page = testapp.get("/console/sign-in", headers=HTML)
        testapp.post(
            "/console/sign-in",
            {"csrf_token": csrf_in(page), "username": "gift", "password": "wrong!"},
            headers=HTML,
            expect_errors=True,
        )
    testapp.reset()
    _, session_id = admin_signed_in(testapp, accounts)
    listing = testapp.get("/console/admin/users", headers=HTML)
    assert re.search(
        r'<a href="/console/admin/users/gift">gift</a></td>\s*<td>\s*<span class="badge warn">locked until',
        listing.text,
    )
    page = testapp.get("/console/admin/users/gift", headers=HTML)
    assert "locked until" in page.text and "Unlock the account" in page.text
    response = post(testapp, session_id, accounts, "/console/admin/users/gift/unlock")
    assert response.status_int == 303
    after = testapp.get("/console/admin/users/gift", headers=HTML)
    assert "gift can sign in again." in after.text and "active, not locked" in after.text
    assert events(dbsession, "user.unlock")[-1].details["was_locked_until"] is not None
    # And gift can sign in with the right password at once.
    testapp.reset()
    page = testapp.get("/console/sign-in", headers=HTML)
    signed = testapp.post(
        "/console/sign-in",
        {"csrf_token": csrf_in(page), "username": "gift", "password": PASSWORD},
        headers=HTML,
    )
    assert signed.status_int == 303 and browser.COOKIE_NAME in testapp.cookies


def test_unknown_accounts_are_a_404_page(testapp: webtest.TestApp, accounts: Any) -> None:
    _, session_id = admin_signed_in(testapp, accounts)
    page = testapp.get("/console/admin/users/nobody-here", headers=HTML, status=404)
    assert "There is no account named nobody-here." in page.text
    assert post(testapp, session_id, accounts, "/console/admin/users/nobody-here/unlock").status_int == 404


# --- the audit log ------------------------------------------------------------------------------


def test_the_audit_log_filters_and_pages(testapp: webtest.TestApp, accounts: Any, dbsession: Session) -> None:
    for number in range(60):
        audit.record(
            dbsession, "test.event", actor="auditor-a" if number % 2 else "auditor-b", target=f"t{number}"
        )
    dbsession.flush()
    admin_signed_in(testapp, accounts)
    first = testapp.get(
        "/console/admin/audit", params={"actor": "auditor-a", "action": "test.*"}, headers=HTML
    )
    targets = re.findall(r"<td>(t\d+)</td>", first.text)
    assert targets == [f"t{n}" for n in range(59, 0, -2)][:30]  # all 30 fit in one page of 50
    assert 'rel="next"' not in first.text
    everything = testapp.get("/console/admin/audit", params={"action": "test.event"}, headers=HTML)
    assert len(re.findall(r"<td>(t\d+)</td>", everything.text)) == 50
    next_url = re.search(r'<a href="([^"]+)" rel="next">', everything.text).group(1).replace("&amp;", "&")
    assert "action=test.event" in next_url
    second = testapp.get(next_url, headers=HTML)
    assert re.findall(r"<td>(t\d+)</td>", second.text) == [f"t{n}" for n in range(9, -1, -1)]
    assert 'rel="prev"' in second.text


def test_a_bad_audit_filter_is_shown_next_to_its_field(testapp: webtest.TestApp, accounts: Any) -> None:
    admin_signed_in(testapp, accounts)
    page = testapp.get(
        "/console/admin/audit",
        params={"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"},
        headers=HTML,
        status=422,
    )
    assert error_of(page, "until") == "must be later than since"
    page = testapp.get("/console/admin/audit", params={"since": "yesterday"}, headers=HTML, status=422)
    assert error_of(page, "since")


# --- workbooks ----------------------------------------------------------------------------------


def _add_planned(dbsession: Session, country: str) -> None:
    study = studies.get_study(dbsession, "ocsea")
    try:
        studies.get_activity(dbsession, study, "RA1")
    except studies.ActivityNotFound:
        studies.add_activity(dbsession, study, "RA1", "Duty bearers")
    registry.register_interview(dbsession, study, country, "RA1", [registry.NewParticipant("Ministry")], "t")
    dbsession.flush()


def test_an_analyst_sees_only_the_workbooks_of_their_grants(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    analyst = accounts.user("hawa", "analyst", "ocsea", ["KE"])
    accounts.study("other", ("KE",))
    sign_in(testapp, accounts, analyst)
    page = testapp.get("/console/exports", headers=HTML)
    links = re.findall(r'href="(/console/exports/[^"]+)"', page.text)
    assert links == ["/console/exports/ocsea/KE.xlsx"]
    assert "Whole study" not in page.text
    study_admin = accounts.user("imani", "admin", "ocsea")
    sign_in(testapp, accounts, study_admin)
    links = re.findall(r'href="(/console/exports/[^"]+)"', testapp.get("/console/exports", headers=HTML).text)
    assert links == [f"/console/exports/ocsea/{code}.xlsx" for code in ("KE", "KH", "TZ", "ALL")]


def test_workbooks_show_when_they_were_last_exported_and_whether_data_changed(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    analyst = accounts.user("juma", "analyst", "ocsea", ["KE"])
    _add_planned(dbsession, "KE")
    sign_in(testapp, accounts, analyst)

    def ke_row() -> str:
        page = testapp.get("/console/exports", headers=HTML).text
        return re.search(r"<tr>\s*<td>Country KE \(KE\)</td>(.*?)</tr>", page, re.S).group(1)

    assert "never" in ke_row()
    download = testapp.get("/console/exports/ocsea/KE.xlsx")
    assert download.content_type.endswith("spreadsheetml.sheet")
    assert download.headers["Content-Disposition"].startswith("attachment;")
    etag = download.headers["ETag"].strip('"')
    row = ke_row()
    assert "by juma" in row and "unchanged" in row and etag[:12] in row
    make_conflict(dbsession, analyst.id, "ocsea", "KE")  # records synced from the field meanwhile
    dbsession.flush()
    row = ke_row()
    assert "data changed" in row and etag[:12] not in row
    assert events(dbsession, "export.download")[-1].details["etag"] == etag


# --- instruments --------------------------------------------------------------------------------


def test_instruments_list_their_versions_and_a_coordinator_retires_one(
    testapp: webtest.TestApp, accounts: Any, dbsession: Session
) -> None:
    definition = minimal_definition("ocsea-debrief")
    definition["study"] = "ocsea"
    accounts.study("ocsea")
    instruments.publish(dbsession, instruments.validate_definition(definition))
    definition["title"]["en"] = "Debrief, second edition"
    instruments.publish(dbsession, instruments.validate_definition(definition))
    accounts.study("other", ("KE",))
    elsewhere = minimal_definition("other-debrief")
    elsewhere["study"] = "other"
    instruments.publish(dbsession, instruments.validate_definition(elsewhere))
    dbsession.flush()
    analyst = accounts.user("kesi", "analyst", "ocsea", ["KE"])
    sign_in(testapp, accounts, analyst)
    listing = testapp.get("/console/instruments", headers=HTML)
    assert "Debrief, second edition" in listing.text and "in use" in listing.text
    assert "other-debrief" not in listing.text  # another study's instrument is not shown
    testapp.get("/console/instruments/other-debrief", headers=HTML, status=403)
    detail = testapp.get("/console/instruments/ocsea-debrief", headers=HTML)
    assert re.findall(r'<td class="number">(\d)', detail.text) == ["2", "1"]
    assert "Retire this instrument" not in detail.text  # an analyst reads, does not retire
    coordinator = accounts.user("lulu", "coordinator", "ocsea", ["KE"])
    session_id = sign_in(testapp, accounts, coordinator)
    detail = testapp.get("/console/instruments/ocsea-debrief", headers=HTML)
    assert 'data-confirm="Retire this instrument?' in detail.text
    response = post(testapp, session_id, accounts, "/console/instruments/ocsea-debrief/retire")
    assert response.status_int == 303
    assert instruments.get_instrument(dbsession, "ocsea-debrief").retired_at is not None
    assert "retired on" in testapp.get("/console/instruments/ocsea-debrief", headers=HTML).text
    assert events(dbsession, "instrument.retire")[-1].target == "ocsea-debrief"
    assert testapp.get("/console/instruments/no-such", headers=HTML, status=404).content_type == "text/html"
