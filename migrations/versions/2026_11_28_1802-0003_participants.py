"""Participant registry: research activities, interview-number counters, device number blocks, change feed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 18:27:51.756095
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "change_log",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_change_log_study_id_studies"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("study_id", "seq", name=op.f("pk_change_log")),
    )
    with op.batch_alter_table("change_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_change_log_study_id_country_code_seq", ["study_id", "country_code", "seq"], unique=False
        )

    op.create_table(
        "interview_number_counters",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("activity", sa.String(length=3), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.Column("next_number", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "next_number >= 1", name=op.f("ck_interview_number_counters_next_number_positive")
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_interview_number_counters_study_id_studies"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint(
            "study_id", "activity", "country_code", name=op.f("pk_interview_number_counters")
        ),
    )
    op.create_table(
        "participants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("activity", sa.String(length=3), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.Column("interview_number", sa.Integer(), nullable=False),
        sa.Column("letter", sa.String(length=1), nullable=False),
        sa.Column("pid", sa.String(length=20), nullable=False),
        sa.Column("agency", sa.String(length=500), nullable=False),
        sa.Column("position", sa.String(length=300), nullable=True),
        sa.Column("consent_given", sa.Boolean(), nullable=True),
        sa.Column("consent_date", sa.Date(), nullable=True),
        sa.Column("consent_recorded_how", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("change_seq", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('planned','interviewed','withdrawn')", name=op.f("ck_participants_status_known")
        ),
        sa.CheckConstraint("interview_number >= 1", name=op.f("ck_participants_interview_number_positive")),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_participants_study_id_studies"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participants")),
        sa.UniqueConstraint(
            "study_id",
            "activity",
            "country_code",
            "interview_number",
            "letter",
            name=op.f("uq_participants_study_id_activity_country_code_interview_number_letter"),
        ),
        sa.UniqueConstraint("study_id", "pid", name=op.f("uq_participants_study_id_pid")),
    )
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_participants_change_seq"), ["change_seq"], unique=False)

    op.create_table(
        "research_activities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=3), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.CheckConstraint(
            "code IN ('RA1','RA2','RA3','RA4','RA5','RA6','RA7','RA8','RA9')",
            name=op.f("ck_research_activities_code_known"),
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_research_activities_study_id_studies"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_research_activities")),
        sa.UniqueConstraint("study_id", "code", name=op.f("uq_research_activities_study_id_code")),
    )
    op.create_table(
        "study_change_counters",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_study_change_counters_study_id_studies"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("study_id", name=op.f("pk_study_change_counters")),
    )
    op.create_table(
        "number_blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("activity", sa.String(length=3), nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.Column("first_number", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "first_number >= 1 AND last_number >= first_number", name=op.f("ck_number_blocks_range_valid")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_number_blocks_device_id_devices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_number_blocks_study_id_studies"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_number_blocks")),
    )
    with op.batch_alter_table("number_blocks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_number_blocks_device_id"), ["device_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("number_blocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_number_blocks_device_id"))

    op.drop_table("number_blocks")
    op.drop_table("study_change_counters")
    op.drop_table("research_activities")
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_participants_change_seq"))

    op.drop_table("participants")
    op.drop_table("interview_number_counters")
    with op.batch_alter_table("change_log", schema=None) as batch_op:
        batch_op.drop_index("ix_change_log_study_id_country_code_seq")

    op.drop_table("change_log")
