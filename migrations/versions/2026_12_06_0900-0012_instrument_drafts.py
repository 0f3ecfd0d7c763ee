"""Instrument drafts: uploaded instrument files, kept with their problems until published or deleted.

The studio's console pages upload, re-check, preview, compare and publish them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instrument_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=True),
        sa.Column("study", sa.String(length=64), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=True),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=200), nullable=False),
        sa.Column("uploader_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["uploader_id"],
            ["users.id"],
            name=op.f("fk_instrument_drafts_uploader_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument_drafts")),
    )
    with op.batch_alter_table("instrument_drafts") as batch:
        batch.create_index(batch.f("ix_instrument_drafts_slug"), ["slug"], unique=False)
        batch.create_index(batch.f("ix_instrument_drafts_study"), ["study"], unique=False)
        batch.create_index(batch.f("ix_instrument_drafts_uploader_id"), ["uploader_id"], unique=False)


def downgrade() -> None:
    op.drop_table("instrument_drafts")
