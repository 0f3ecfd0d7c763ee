"""Attempt counters for login and activation throttling and the per-address lockout.

The lockout moves from the account (``users.failed_logins``, ``users.locked_until``: anyone could lock
anyone out) to one counter per account and client address, kept beside the per-address throttles.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 01:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempt_counters",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("client_addr", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "client_addr", "username", name=op.f("pk_attempt_counters")),
    )
    op.create_index("ix_attempt_counters_window_ends_at", "attempt_counters", ["window_ends_at"])
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): rebuilding the table would lose its triggers.
    op.drop_column("users", "failed_logins")
    op.drop_column("users", "locked_until")


def downgrade() -> None:
    op.add_column("users", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "users", sa.Column("failed_logins", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.drop_index("ix_attempt_counters_window_ends_at", table_name="attempt_counters")
    op.drop_table("attempt_counters")
