"""Steps the console's browser tests share."""

from __future__ import annotations

from typing import Any


def console_login(page: Any, live_server: Any, username: str, password: str) -> None:
    """Sign in through the form, as a person would, and wait for the page it leads to."""
    page.goto(f"{live_server.url}/console/sign-in")
    page.fill("#field-username", username)
    page.fill("#field-password", password)
    with page.expect_navigation():
        page.click("main button[type=submit]")


def sign_out(page: Any) -> None:
    with page.expect_navigation():
        page.click("header .who button[type=submit]")


def accept_confirmations(page: Any) -> list[str]:
    """Accept every confirm() the page asks; returns the questions asked, for the test to check."""
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return asked
