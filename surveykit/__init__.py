"""surveykit: the server behind offline field research."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from surveykit import logs  # noqa: F401  (gives every log record the request id the inis' formats name)
from surveykit.config import load_settings

if TYPE_CHECKING:
    from pyramid.router import Router


def main(global_config: dict[str, Any] | None = None, **ini_settings: Any) -> Router:
    """Pyramid app factory (the ``paste.app_factory`` entry point): .ini values, then environment."""
    return make_app(load_settings(ini_settings))


def make_app(settings: dict[str, Any]) -> Router:
    """The WSGI application for settings already passed through ``load_settings``."""
    # Imported here, not at the top: the command line's start-up (``--help``) needs no Pyramid.
    from pyramid.config import Configurator
    from pyramid.events import BeforeTraversal

    settings = dict(settings)
    settings.setdefault("retry.activate_hook", "surveykit.web.retry_attempts")
    with Configurator(settings=settings) as config:
        config.include("surveykit.logs")
        config.include("surveykit.db")
        config.include("surveykit.security")
        config.add_tween("surveykit.web.body_limit_tween_factory")
        config.add_subscriber("surveykit.web.refuse_unusable_url_text", BeforeTraversal)
        config.include("surveykit.accounts")
        config.include("surveykit.audit")
        config.include("surveykit.instruments")
        config.include("surveykit.studies")
        config.include("surveykit.participants")
        config.include("surveykit.sync")
        config.include("surveykit.exports")
        config.include("surveykit.analysis")
        config.include("surveykit.health")
        config.include("surveykit.fieldapp")
        config.include("surveykit.openapi")
        config.include("surveykit.console")
        config.scan("surveykit.errors")
    return config.make_wsgi_app()
