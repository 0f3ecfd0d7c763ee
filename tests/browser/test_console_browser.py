"""The console in Chromium: signing in, changing one's password, an admin unlocking a locked account,
an analyst downloading a workbook, instruments. Every page visited is checked with axe-core, and the
main pages are photographed for docs/console.md (scripts/update-screenshots.sh)."""

from __future__ import annotations

from typing import Any

import openpyxl
from console_helpers import accept_confirmations, console_login, sign_out
from instrument_samples import minimal_definition
from playwright.sync_api import expect
from sqlalchemy import select

from surveykit.accounts import browser
from surveykit.accounts.models import User
from surveykit.instruments import services as instruments
from surveykit.participants import services as registry
from surveykit.studies import services as studies

PASSWORD = "browser password one"
VIEWPORT = {"width": 1280, "height": 800}


def _people(live_server: Any) -> None:
    """Everyone the journeys need, made once per module (the server is shared)."""
    with live_server.accounts() as accounts:
        if accounts.session.scalar(select(User.id).where(User.username == "admin")):
            return
        accounts.study("ocsea", ("KE", "TZ"))
        accounts.user("admin", "admin", None, password=PASSWORD)
        accounts.user("amina", "coordinator", "ocsea", ["KE"], password=PASSWORD)
        accounts.user("hawa", "analyst", "ocsea", ["KE"], password=PASSWORD)
        accounts.user("juma", "analyst", "ocsea", ["TZ"], password=PASSWORD)
        session = accounts.session
        study = studies.get_study(session, "ocsea")
        studies.add_activity(session, study, "RA1", "Duty bearers")
        registry.register_interview(
            session, study, "KE", "RA1", [registry.NewParticipant("Ministry of ICT")], "tests"
        )
        definition = minimal_definition("ocsea-debrief")
        definition["study"] = "ocsea"
        instruments.publish(session, instruments.validate_definition(definition), "admin")


def test_signing_in_and_out(
    live_server: Any, new_context: Any, assert_accessible: Any, screenshot: Any
) -> None:
    _people(live_server)
    page = new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{live_server.url}/")  # the server's address leads to the console
    assert page.url.endswith("/console/sign-in?next=%2Fconsole%2F")
    assert_accessible(page)
    screenshot(page, "console-signin")
    page.fill("#field-username", "amina")
    page.fill("#field-password", "not my password")
    page.click("main button[type=submit]")
    assert page.inner_text("#error-password") == "Wrong username or password."
    assert page.get_attribute("#field-password", "aria-invalid") == "true"
    assert_accessible(page)
    page.fill("#field-password", PASSWORD)
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert page.url.endswith("/console/")
    assert "Signed in as amina" in page.inner_text("header")
    cookie = next(c for c in page.context.cookies() if c["name"] == browser.COOKIE_NAME)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # Scripts cannot read it.
    assert browser.COOKIE_NAME not in page.evaluate("() => document.cookie")
    assert_accessible(page)
    screenshot(page, "console-home")
    response = page.goto(f"{live_server.url}/console/no-such-page")
    assert response.status == 404 and "Page not found" in page.inner_text("h1")
    assert_accessible(page)
    response = page.goto(f"{live_server.url}/console/admin/audit")  # a coordinator is no admin
    assert response.status == 403 and "Not allowed" in page.inner_text("h1")
    assert_accessible(page)
    sign_out(page)
    assert "/console/sign-in" in page.url and "You have signed out." in page.inner_text("main")
    page.goto(f"{live_server.url}/console/account")
    assert "/console/sign-in?next=" in page.url


def test_changing_my_password(
    live_server: Any, new_context: Any, assert_accessible: Any, screenshot: Any
) -> None:
    _people(live_server)
    with live_server.accounts() as accounts:
        accounts.user("baraka", "coordinator", "ocsea", ["TZ"], password=PASSWORD)
    page = new_context(viewport=VIEWPORT).new_page()
    console_login(page, live_server, "baraka", PASSWORD)
    page.click("nav >> text=My account")
    assert "coordinator" in page.inner_text("table") and "TZ" in page.inner_text("table")
    assert_accessible(page)
    screenshot(page, "console-account")
    page.click("main >> text=Change my password")
    page.fill("#field-current_password", PASSWORD)
    page.fill("#field-new_password", "too short")
    page.fill("#field-confirm_password", "too short")
    page.click("main button[type=submit]")
    assert "12" in page.inner_text("#error-new_password")
    assert_accessible(page)
    new = "a much longer new passphrase"
    page.fill("#field-current_password", PASSWORD)
    page.fill("#field-new_password", new)
    page.fill("#field-confirm_password", new)
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert "Your password is changed" in page.inner_text("main")
    sign_out(page)
    console_login(page, live_server, "baraka", new)
    assert "Signed in as baraka" in page.inner_text("header")


def test_an_admin_unlocks_a_locked_account(
    live_server: Any, new_context: Any, assert_accessible: Any, screenshot: Any
) -> None:
    _people(live_server)
    with live_server.accounts() as accounts:
        accounts.user("chausiku", "analyst", "ocsea", ["KE"], password=PASSWORD)
    person = new_context(viewport=VIEWPORT).new_page()
    for _ in range(live_server.settings["surveykit.lockout_threshold"]):
        console_login(person, live_server, "chausiku", "a wrong guess")
    console_login(person, live_server, "chausiku", PASSWORD)
    assert "this account is locked" in person.inner_text("main .form-error")
    assert_accessible(person)

    admin = new_context(viewport=VIEWPORT).new_page()
    asked = accept_confirmations(admin)
    console_login(admin, live_server, "admin", PASSWORD)
    admin.click("nav >> text=Accounts")
    row = admin.locator("tr", has_text="chausiku")
    assert "locked until" in row.inner_text()
    assert_accessible(admin)
    screenshot(admin, "console-users", full_page=True)
    row.locator("a", has_text="chausiku").click()
    assert "locked until" in admin.inner_text("#lock-state")
    assert_accessible(admin)
    screenshot(admin, "console-user", full_page=True)
    with admin.expect_navigation():
        admin.click("text=Unlock the account")
    assert "chausiku can sign in again." in admin.inner_text("main")
    assert admin.inner_text("#lock-state") == "active, not locked"
    # A new password, generated and shown once (after a confirmation).
    with admin.expect_navigation():
        admin.click("text=Reset the password")
    assert asked == ["Give this account a new password? Its sign-ins end."]
    shown = admin.inner_text("#new-password")
    assert_accessible(admin)
    admin.click("nav >> text=Audit log")
    admin.fill("#field-action", "user.*")
    with admin.expect_navigation():
        admin.click("main button[type=submit]")
    actions = admin.inner_text("table")
    assert "user.unlock" in actions and "user.password_reset" in actions
    assert_accessible(admin)
    screenshot(admin, "console-audit")

    console_login(person, live_server, "chausiku", shown)
    assert "Signed in as chausiku" in person.inner_text("header")


def test_an_analyst_downloads_a_workbook(
    live_server: Any, new_context: Any, assert_accessible: Any, screenshot: Any, tmp_path: Any
) -> None:
    _people(live_server)
    page = new_context(viewport=VIEWPORT, accept_downloads=True).new_page()
    console_login(page, live_server, "hawa", PASSWORD)
    page.click("nav >> text=Workbooks")
    links = page.locator("main a[download]")
    expect(links).to_have_count(1)  # KE only: no TZ, no whole-study workbook for a KE analyst
    assert "never" in page.inner_text("table")
    assert_accessible(page)
    with page.expect_download() as download_info:
        links.first.click()
    download = download_info.value
    assert download.suggested_filename.endswith(".xlsx") and "KE" in download.suggested_filename
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    book = openpyxl.load_workbook(target, read_only=True)
    assert book.sheetnames[:2] == ["Summary", "Participants"]
    summary = [cell for row in book["Summary"].iter_rows(values_only=True) for cell in row if cell]
    assert any("Country KE" in str(cell) for cell in summary), summary[:20]
    book.close()
    page.reload()
    row = page.inner_text("table tbody tr")
    assert "by hawa" in row and "unchanged" in row
    screenshot(page, "console-workbooks")


def test_instruments_and_retiring_one(
    live_server: Any, new_context: Any, assert_accessible: Any, screenshot: Any
) -> None:
    _people(live_server)
    page = new_context(viewport=VIEWPORT).new_page()
    asked = accept_confirmations(page)
    console_login(page, live_server, "amina", PASSWORD)
    page.click("nav >> text=Instruments")
    assert "ocsea-debrief" in page.inner_text("table")
    assert_accessible(page)
    screenshot(page, "console-instruments")
    page.click("table a")
    assert_accessible(page)
    # On a tablet's screen too: nothing wider than the screen but the tables, which scroll inside.
    page.set_viewport_size({"width": 768, "height": 1024})
    page.goto(f"{live_server.url}/console/instruments")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    page.go_back()
    with page.expect_navigation():
        page.click("text=Retire this instrument")
    assert asked and asked[0].startswith("Retire this instrument?")
    assert "is retired" in page.inner_text("main .flash")
    assert "retired on" in page.inner_text("main dl")
    assert_accessible(page)
