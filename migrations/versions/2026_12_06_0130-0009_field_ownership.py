"""Registry field ownership and field conflicts.

``participants.coordinator_fields`` names the fields a coordinator changed that no pushed record has
carried since; ``field_conflicts`` keeps a pushed value of such a field instead of applying it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("participants") as batch:
        batch.add_column(sa.Column("coordinator_fields", sa.String(200), nullable=False, server_default=""))
    op.create_table(
        "field_conflicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(32), nullable=False),
        sa.Column("incoming_value", sa.JSON(), nullable=True),
        sa.Column("base_value", sa.JSON(), nullable=True),
        sa.Column("registry_value", sa.JSON(), nullable=True),
        sa.Column("interview_uuid", sa.String(36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(36), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(200), nullable=True),
        sa.Column("resolution", sa.String(16), nullable=True),
        sa.CheckConstraint(
            "field IN ('agency','position','consent_given','consent_date','consent_recorded_how')",
            name=op.f("ck_field_conflicts_field_known"),
        ),
        sa.CheckConstraint(
            "resolution IS NULL OR resolution IN ('keep_current','take_incoming')",
            name=op.f("ck_field_conflicts_resolution_known"),
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_field_conflicts_participant_id_participants"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["interview_uuid"],
            ["interviews.uuid"],
            name=op.f("fk_field_conflicts_interview_uuid_interviews"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_field_conflicts_user_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_field_conflicts_device_id_devices"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_field_conflicts")),
    )
    op.create_index(op.f("ix_field_conflicts_participant_id"), "field_conflicts", ["participant_id"])
    op.create_index("ix_field_conflicts_resolved_at", "field_conflicts", ["resolved_at"])


def downgrade() -> None:
    op.drop_index("ix_field_conflicts_resolved_at", table_name="field_conflicts")
    op.drop_index(op.f("ix_field_conflicts_participant_id"), table_name="field_conflicts")
    op.drop_table("field_conflicts")
    with op.batch_alter_table("participants") as batch:
        batch.drop_column("coordinator_fields")
