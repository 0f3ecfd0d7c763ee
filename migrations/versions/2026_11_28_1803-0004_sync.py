"""Sync: interview records, their revisions and conflicts, and quotes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 18:33:48.259486
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "interviews",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.Column("activity", sa.String(length=3), nullable=False),
        sa.Column("interview_number", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("instrument_slug", sa.String(length=64), nullable=False),
        sa.Column("instrument_version", sa.Integer(), nullable=False),
        sa.Column("interviewer_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.Column("change_seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('draft','complete')", name=op.f("ck_interviews_status_known")),
        sa.CheckConstraint("revision >= 1", name=op.f("ck_interviews_revision_positive")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_interviews_device_id_devices"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["interviewer_id"],
            ["users.id"],
            name=op.f("fk_interviews_interviewer_id_users"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_interviews_study_id_studies"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_interviews")),
        sa.UniqueConstraint(
            "study_id",
            "activity",
            "country_code",
            "interview_number",
            name=op.f("uq_interviews_study_id_activity_country_code_interview_number"),
        ),
    )
    with op.batch_alter_table("interviews", schema=None) as batch_op:
        batch_op.create_index(
            "ix_interviews_study_id_country_code", ["study_id", "country_code"], unique=False
        )

    op.create_table(
        "interview_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interview_uuid", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.Column("base_revision", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("resolution_revision", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "(kind = 'accepted' AND revision IS NOT NULL) OR (kind = 'conflict' AND revision IS NULL)",
            name=op.f("ck_interview_revisions_revision_matches_kind"),
        ),
        sa.CheckConstraint("kind IN ('accepted','conflict')", name=op.f("ck_interview_revisions_kind_known")),
        sa.CheckConstraint(
            "resolution IS NULL OR resolution IN ('keep_current','take_incoming','merged')",
            name=op.f("ck_interview_revisions_resolution_known"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_interview_revisions_device_id_devices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["interview_uuid"],
            ["interviews.uuid"],
            name=op.f("fk_interview_revisions_interview_uuid_interviews"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_interview_revisions_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interview_revisions")),
        sa.UniqueConstraint(
            "interview_uuid",
            "base_revision",
            "content_hash",
            name=op.f("uq_interview_revisions_interview_uuid_base_revision_content_hash"),
        ),
        sa.UniqueConstraint(
            "interview_uuid", "revision", name=op.f("uq_interview_revisions_interview_uuid_revision")
        ),
    )
    with op.batch_alter_table("interview_revisions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_interview_revisions_kind_resolved_at", ["kind", "resolved_at"], unique=False
        )

    op.create_table(
        "quotes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("interview_uuid", sa.String(length=36), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("question_id", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("start_offset", sa.Integer(), nullable=True),
        sa.Column("end_offset", sa.Integer(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["interview_uuid"],
            ["interviews.uuid"],
            name=op.f("fk_quotes_interview_uuid_interviews"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_quotes_study_id_studies"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quotes")),
    )
    with op.batch_alter_table("quotes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quotes_interview_uuid"), ["interview_uuid"], unique=False)
        batch_op.create_index("ix_quotes_study_id_country_code", ["study_id", "country_code"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quotes", schema=None) as batch_op:
        batch_op.drop_index("ix_quotes_study_id_country_code")
        batch_op.drop_index(batch_op.f("ix_quotes_interview_uuid"))

    op.drop_table("quotes")
    with op.batch_alter_table("interview_revisions", schema=None) as batch_op:
        batch_op.drop_index("ix_interview_revisions_kind_resolved_at")

    op.drop_table("interview_revisions")
    with op.batch_alter_table("interviews", schema=None) as batch_op:
        batch_op.drop_index("ix_interviews_study_id_country_code")

    op.drop_table("interviews")
