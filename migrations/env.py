"""Alembic environment: runs against the engine surveykit hands over, or the one its settings name."""

from __future__ import annotations

from alembic import context

import surveykit.models  # noqa: F401  (registers every table on the metadata)
from surveykit.db import Base

config = context.config
target_metadata = Base.metadata


def _app_settings(production_checks: bool = True):
    # Plain `alembic -c development.ini ...`: the settings the application would use (ini, then
    # SURVEYKIT_* environment variables).
    from pyramid.paster import get_appsettings

    from surveykit.config import load_settings

    return load_settings(get_appsettings(config.config_file_name), production_checks=production_checks)


def _engine():
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    from surveykit.db import make_engine

    return make_engine(_app_settings())


def _offline_url() -> str:
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine.url
    # Writing SQL for review signs nothing: the production secret need not be set for it.
    return (
        config.get_main_option("sqlalchemy.url") or _app_settings(production_checks=False)["sqlalchemy.url"]
    )


def run_migrations_offline() -> None:
    """``alembic ... upgrade head --sql``: the SQL for a DBA to review, no database needed."""
    url = _offline_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=str(url).startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with _engine().connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things in place; batch mode copies the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
