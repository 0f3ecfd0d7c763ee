"""Devices are bound to the study and countries they were enrolled for (``devices.scope``).

A device session used to carry every fieldworker grant of its owner, so a coordinator who enrolled
a tablet for someone also working elsewhere reached, through it, what they could not reach
themselves. Existing devices are bound to what their owner's fieldworker grants cover today (one
entry per study; ``countries`` null for every country), which is what they could reach until now.

The trigger that renews the cache epoch when a device changes (migration 0005) now also watches
``scope``: a remembered identity must not outlive a change of what its device may reach.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TRIGGER = "trg_devices_renews_cache_epoch_on_update"

_devices = sa.table(
    "devices", sa.column("id", sa.String), sa.column("user_id", sa.Integer), sa.column("scope", sa.JSON)
)
_grants = sa.table(
    "grants",
    sa.column("user_id", sa.Integer),
    sa.column("role", sa.String),
    sa.column("study_id", sa.Integer),
    sa.column("countries", sa.JSON),
)


def _create_trigger(columns: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)
        op.execute(
            f"CREATE TRIGGER {TRIGGER} AFTER UPDATE OF {', '.join(columns)} ON devices FOR EACH ROW "
            f"WHEN {changed} BEGIN UPDATE cache_epoch SET value = random() WHERE id = 1; END"
        )
    else:
        # PostgreSQL's json type has no equality operator: compare the text.
        changed = " OR ".join(
            f"OLD.{c}::text IS DISTINCT FROM NEW.{c}::text"
            if c == "scope"
            else f"OLD.{c} IS DISTINCT FROM NEW.{c}"
            for c in columns
        )
        op.execute(
            f"CREATE TRIGGER {TRIGGER} AFTER UPDATE OF {', '.join(columns)} ON devices FOR EACH ROW "
            f"WHEN ({changed}) EXECUTE FUNCTION renew_cache_epoch()"
        )


def _drop_trigger() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute(f"DROP TRIGGER {TRIGGER}" + ("" if sqlite else " ON devices"))


def _owners_coverage(bind: sa.Connection) -> dict[int, list[dict]]:
    """User id -> the scope their fieldworker grants cover, one entry per study."""
    by_user: dict[int, dict[int, set[str] | None]] = {}
    rows = bind.execute(
        sa.select(_grants.c.user_id, _grants.c.study_id, _grants.c.countries).where(
            _grants.c.role == "fieldworker", _grants.c.study_id.is_not(None)
        )
    )
    for user_id, study_id, countries in rows:
        studies = by_user.setdefault(user_id, {})
        if countries is None or (study_id in studies and studies[study_id] is None):
            studies[study_id] = None
        else:
            studies[study_id] = studies.get(study_id, set()) | set(countries)
    return {
        user_id: [
            {"study_id": study_id, "countries": sorted(countries) if countries is not None else None}
            for study_id, countries in sorted(studies.items())
        ]
        for user_id, studies in by_user.items()
    }


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # SQLite adds a NOT NULL column only with a default; every new device names its scope.
        op.add_column("devices", sa.Column("scope", sa.JSON(), nullable=False, server_default="[]"))
    else:
        op.add_column("devices", sa.Column("scope", sa.JSON(), nullable=True))
    if context.is_offline_mode():
        # Offline SQL (`alembic ... upgrade head --sql`) cannot read the grants this computes in
        # Python: devices that already exist get no scope and must be re-enrolled. Run the upgrade
        # online (`surveykit db upgrade`) to keep them working.
        op.execute("UPDATE devices SET scope = '[]'")
    else:
        coverage = _owners_coverage(bind)
        for device_id, user_id in bind.execute(sa.select(_devices.c.id, _devices.c.user_id)).all():
            bind.execute(
                _devices.update().where(_devices.c.id == device_id).values(scope=coverage.get(user_id, []))
            )
    if bind.dialect.name != "sqlite":
        op.alter_column("devices", "scope", nullable=False)
    _drop_trigger()
    _create_trigger(("revoked_at", "user_id", "scope"))


def downgrade() -> None:
    _drop_trigger()
    _create_trigger(("revoked_at", "user_id"))
    op.drop_column("devices", "scope")
