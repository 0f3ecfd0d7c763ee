"""Indexes for the progress dashboard and the registry's pages (issue 16).

- interviews: (study_id, country_code, activity, status) replaces (study_id, country_code): the
  dashboard counts records by country, activity and status from the index alone, without reading
  the records themselves;
- participants: (study_id, country_code, activity, interview_number, letter, status): a country's
  registry in ID order, so a keyset page is one range read however deep, and the dashboard's
  registry counts come from the index alone.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 04:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_interviews_study_id_country_code", table_name="interviews")
    op.create_index(
        "ix_interviews_study_country_activity_status",
        "interviews",
        ["study_id", "country_code", "activity", "status"],
    )
    op.create_index(
        "ix_participants_country_order",
        "participants",
        ["study_id", "country_code", "activity", "interview_number", "letter", "status"],
    )


def downgrade() -> None:
    op.drop_index("ix_participants_country_order", table_name="participants")
    op.drop_index("ix_interviews_study_country_activity_status", table_name="interviews")
    op.create_index("ix_interviews_study_id_country_code", "interviews", ["study_id", "country_code"])
