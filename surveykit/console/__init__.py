"""The web console: server-rendered pages for coordinators, analysts and admins at ``/console/``.

Every page is a thin view over the same services as the API, behind the same security policy: the
browser signs in with a cookie bound to a login session (``surveykit.accounts.browser``), each view
declares a permission (``console_view``), each state-changing request carries a CSRF token.

A new page: a route in ``routes.py``, a ``console_view`` in a module of its area, a template
extending ``base.jinja2``, a menu entry in ``navigation.py`` and its line in
tests/test_route_matrix.py.
"""

from __future__ import annotations

from typing import Any

from pyramid.events import NewResponse
from pyramid.static import static_view

from surveykit.security import Permission

TEMPLATES = "surveykit.console:templates"
TRANSLATION_DOMAIN = "surveykit"


def includeme(config: Any) -> None:
    from surveykit.console.routes import ROUTES
    from surveykit.console.web import LoginSessionCSRFPolicy, add_security_headers, flash_session_factory

    settings = config.get_settings()
    config.add_settings(
        {
            "jinja2.i18n.domain": TRANSLATION_DOMAIN,
            "jinja2.trim_blocks": "true",
            "jinja2.lstrip_blocks": "true",
            "jinja2.undefined": "strict",
            "jinja2.filters": "format_time = surveykit.console.templating:format_time",
            "jinja2.globals": "\n".join(
                [
                    "console_navigation = surveykit.console.navigation:navigation",
                    "console_flashes = surveykit.console.web:pop_flashes",
                ]
            ),
        }
    )
    config.include("pyramid_jinja2")
    config.add_jinja2_search_path(TEMPLATES, name=".jinja2")
    config.set_session_factory(flash_session_factory(settings))
    config.set_csrf_storage_policy(LoginSessionCSRFPolicy())
    config.add_subscriber(add_security_headers, NewResponse)
    for route in ROUTES:
        config.add_route(route.name, route.pattern, factory=route.factory)
    config.add_view(
        static_view("surveykit.console:static", use_subpath=True, cache_max_age=3600),
        route_name="console.static",
        request_method="GET",
        permission=Permission.PUBLIC,
    )
    config.scan("surveykit.console")
