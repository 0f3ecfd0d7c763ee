"""Instruments and their immutable published versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 18:12:46.738971
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instruments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("activity", sa.String(length=3), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("current_version >= 1", name=op.f("ck_instruments_current_version_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instruments")),
        sa.UniqueConstraint("slug", name=op.f("uq_instruments_slug")),
    )
    op.create_table(
        "instrument_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.String(length=200), nullable=True),
        sa.CheckConstraint("version >= 1", name=op.f("ck_instrument_versions_version_positive")),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_instrument_versions_instrument_id_instruments"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument_versions")),
        sa.UniqueConstraint(
            "instrument_id", "version", name=op.f("uq_instrument_versions_instrument_id_version")
        ),
    )

    _forbid_changes_to_versions()


# Published versions are immutable: the database itself refuses UPDATE and DELETE on them, so no code
# path (or hand-written SQL) can rewrite what a tablet already downloaded under a content hash.
def _forbid_changes_to_versions() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER trg_instrument_versions_no_{action.lower()} BEFORE {action} "
                "ON instrument_versions BEGIN "
                "SELECT RAISE(ABORT, 'published instrument versions are immutable'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION instrument_versions_immutable() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'published instrument versions are immutable'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER trg_instrument_versions_immutable BEFORE UPDATE OR DELETE "
            "ON instrument_versions FOR EACH ROW EXECUTE FUNCTION instrument_versions_immutable()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER trg_instrument_versions_immutable ON instrument_versions")
        op.execute("DROP FUNCTION instrument_versions_immutable()")
    op.drop_table("instrument_versions")
    op.drop_table("instruments")
