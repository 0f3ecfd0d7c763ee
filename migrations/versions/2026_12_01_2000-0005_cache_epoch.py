"""The cache epoch: one number that triggers renew whenever a remembered access or catalogue fact changes.

See ``surveykit.cache_epoch`` for why. Every trigger here replaces the value with a new random one in
the changing transaction; updates that do not matter to an access check (a device's last-seen time,
failed-login counters, a refresh token's rotation) leave it alone.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RANDOM_BIGINT = "floor(random() * 9.2e18)::bigint - 4600000000000000000"

# (table, event, columns whose change matters on UPDATE; None: every row change)
WATCHED: list[tuple[str, str, tuple[str, ...] | None]] = [
    ("auth_sessions", "UPDATE", ("revoked_at", "user_id", "device_id")),
    ("auth_sessions", "DELETE", None),
    ("users", "UPDATE", ("active", "username")),
    ("users", "DELETE", None),
    ("devices", "UPDATE", ("revoked_at", "user_id")),
    ("devices", "DELETE", None),
    ("grants", "INSERT", None),
    ("grants", "UPDATE", None),
    ("grants", "DELETE", None),
    ("studies", "UPDATE", ("slug",)),
    ("studies", "DELETE", None),
    ("instruments", "INSERT", None),
    ("instruments", "UPDATE", None),
    ("instruments", "DELETE", None),
    ("instrument_versions", "INSERT", None),
]


def _name(table: str, event: str) -> str:
    return f"trg_{table}_renews_cache_epoch_on_{event.lower()}"


def upgrade() -> None:
    op.create_table(
        "cache_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_cache_epoch_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cache_epoch")),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("INSERT INTO cache_epoch (id, value) VALUES (1, random())")
    else:
        op.execute(f"INSERT INTO cache_epoch (id, value) VALUES (1, {RANDOM_BIGINT})")
        op.execute(
            "CREATE FUNCTION renew_cache_epoch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"UPDATE cache_epoch SET value = {RANDOM_BIGINT} WHERE id = 1; RETURN NULL; END $$"
        )
    for table, event, columns in WATCHED:
        if sqlite:
            distinct = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns or ())
            op.execute(
                f"CREATE TRIGGER {_name(table, event)} AFTER {event}"
                f"{' OF ' + ', '.join(columns) if columns else ''} ON {table} FOR EACH ROW"
                f"{' WHEN ' + distinct if distinct else ''} "
                "BEGIN UPDATE cache_epoch SET value = random() WHERE id = 1; END"
            )
        else:
            distinct = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns or ())
            op.execute(
                f"CREATE TRIGGER {_name(table, event)} AFTER {event}"
                f"{' OF ' + ', '.join(columns) if columns else ''} ON {table} FOR EACH ROW"
                f"{' WHEN (' + distinct + ')' if distinct else ''} EXECUTE FUNCTION renew_cache_epoch()"
            )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, event, _columns in WATCHED:
        op.execute(f"DROP TRIGGER {_name(table, event)}" + ("" if sqlite else f" ON {table}"))
    if not sqlite:
        op.execute("DROP FUNCTION renew_cache_epoch()")
    op.drop_table("cache_epoch")
