"""The console's navigation: one entry per area, shown to those whose grants open it.

The menu only guides: each page still declares its permission and the security policy decides.
Add an entry here when you add an area (keep ``visible`` in line with the page's permission).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyramid.request import Request

from surveykit.accounts.identity import Identity
from surveykit.console.web import _, translate


@dataclass(frozen=True)
class NavItem:
    route_name: str
    label: str
    visible: Callable[[Identity], bool]


def _anyone(identity: Identity) -> bool:
    return True


def _global_admin(identity: Identity) -> bool:
    return identity.is_global_admin


def _exports_reader(identity: Identity) -> bool:
    return identity.has_role({"analyst", "coordinator", "admin"})


def _analyst(identity: Identity) -> bool:
    return identity.has_role({"analyst", "coordinator", "admin"})


def _fieldwork(identity: Identity) -> bool:
    return identity.has_role({"coordinator", "analyst", "admin"})


NAV: list[NavItem] = [
    NavItem("console.home", _("Start"), _anyone),
    # consolecoord: progress, registry, tablets and conflicts, per study and country
    NavItem("console.fieldwork", _("Fieldwork"), _fieldwork),
    NavItem("console.analysis", _("Analysis"), _analyst),
    NavItem("console.exports", _("Workbooks"), _exports_reader),
    NavItem("console.instruments", _("Instruments"), _anyone),
    NavItem("console.users", _("Accounts"), _global_admin),
    NavItem("console.audit", _("Audit log"), _global_admin),
    NavItem("console.account", _("My account"), _anyone),
]


def navigation(request: Request) -> list[dict[str, object]]:
    """The menu entries for this request's caller, the current one marked."""
    identity = request.identity
    if identity is None:
        return []
    current = request.matched_route.name if request.matched_route is not None else None
    return [
        {
            "url": request.route_path(item.route_name),
            "label": translate(request, item.label),
            "current": item.route_name == current,
        }
        for item in NAV
        if item.visible(identity)
    ]
