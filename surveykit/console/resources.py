"""Contexts of the console's own pages (pages over a domain resource use that package's context)."""

from __future__ import annotations

from typing import Any

from pyramid.authorization import Allow, Authenticated

from surveykit.security import Permission


class ConsoleHomeResource:
    """The start page: every signed-in person (what it shows depends on their grants)."""

    __acl__ = [(Allow, Authenticated, Permission.ACCOUNT_READ)]

    def __init__(self, request: Any) -> None:
        self.request = request


class InstrumentsPageResource:
    """The instrument list: everyone signed in (filtered by study); retiring is checked per instrument."""

    __acl__ = [(Allow, Authenticated, Permission.INSTRUMENTS_READ)]

    def __init__(self, request: Any) -> None:
        self.request = request
