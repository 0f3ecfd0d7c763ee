"""Codebook and codings: a study's codes and the coded passages of interview answers.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("guid", sa.String(length=36), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("colour", sa.String(length=7), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("merged_into_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active','retired','merged')", name=op.f("ck_codes_status_known")),
        sa.CheckConstraint(
            "(status = 'merged') = (merged_into_id IS NOT NULL)",
            name=op.f("ck_codes_merged_names_its_target"),
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_codes_study_id_studies"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["codes.id"], name=op.f("fk_codes_parent_id_codes"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["merged_into_id"], ["codes.id"], name=op.f("fk_codes_merged_into_id_codes"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_codes")),
        sa.UniqueConstraint("guid", name=op.f("uq_codes_guid")),
    )
    with op.batch_alter_table("codes") as batch:
        batch.create_index(batch.f("ix_codes_study_id"), ["study_id"], unique=False)
        batch.create_index(batch.f("ix_codes_parent_id"), ["parent_id"], unique=False)
    op.create_table(
        "codings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("guid", sa.String(length=36), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.Column("code_id", sa.Integer(), nullable=False),
        sa.Column("original_code_id", sa.Integer(), nullable=True),
        sa.Column("interview_uuid", sa.String(length=36), nullable=False),
        sa.Column("question_id", sa.String(length=64), nullable=False),
        sa.Column("quote_id", sa.String(length=36), nullable=True),
        sa.Column("start_offset", sa.Integer(), nullable=False),
        sa.Column("end_offset", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("coder_id", sa.Integer(), nullable=False),
        sa.Column("coder", sa.String(length=64), nullable=False),
        sa.Column("anchor", sa.String(length=8), nullable=False),
        sa.Column("anchored_revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("anchor IN ('current','moved','vanished')", name=op.f("ck_codings_anchor_known")),
        sa.CheckConstraint(
            "start_offset >= 0 AND end_offset > start_offset", name=op.f("ck_codings_passage_not_empty")
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_codings_study_id_studies"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["code_id"], ["codes.id"], name=op.f("fk_codings_code_id_codes"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["original_code_id"],
            ["codes.id"],
            name=op.f("fk_codings_original_code_id_codes"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["interview_uuid"],
            ["interviews.uuid"],
            name=op.f("fk_codings_interview_uuid_interviews"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["coder_id"], ["users.id"], name=op.f("fk_codings_coder_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_codings")),
        sa.UniqueConstraint("guid", name=op.f("uq_codings_guid")),
    )
    with op.batch_alter_table("codings") as batch:
        batch.create_index(batch.f("ix_codings_code_id"), ["code_id"], unique=False)
        batch.create_index(batch.f("ix_codings_interview_uuid"), ["interview_uuid"], unique=False)
        batch.create_index(batch.f("ix_codings_coder_id"), ["coder_id"], unique=False)
        batch.create_index("ix_codings_study_id_country_code", ["study_id", "country_code"], unique=False)


def downgrade() -> None:
    op.drop_table("codings")
    op.drop_table("codes")
