"""Alembic environment: runs against the engine surveykit hands over, or the one its settings name."""

from __future__ import annotations

from alembic import context

import surveykit.models  # noqa: F401  (registers every table on the metadata)
from surveykit.db import Base

config = context.config
target_metadata = Base.metadata


def _engine():
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    # Plain `alembic -c development.ini ...`: build the engine the application would build.
    from pyramid.paster import get_appsettings

    from surveykit.config import load_settings
    from surveykit.db import make_engine

    return make_engine(load_settings(get_appsettings(config.config_file_name)))


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
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
