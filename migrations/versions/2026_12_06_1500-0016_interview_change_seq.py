"""interviews.change_seq is dropped: the change feed alone says where a record's last change is.

The push wrote each interview's feed position into its row, so the row could only be written once
the study's feed counter was taken; the counter stays locked until commit, so every concurrent push
to the study waited for these rows (the largest of a push) to be written. Nothing read the column:
the pull and every client read positions from ``change_log``. Without it, a push writes its records
before it takes the counter. ``participants.change_seq`` stays (the registry API shows it).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite (3.35 and later) drops a plain column in place: no table rebuild is needed.
    op.drop_column("interviews", "change_seq")


def downgrade() -> None:
    # The positions are not kept: each record gets that of its latest feed entry back.
    op.add_column("interviews", sa.Column("change_seq", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE interviews SET change_seq = COALESCE((SELECT MAX(c.seq) FROM change_log c "
        "WHERE c.study_id = interviews.study_id AND c.kind = 'interview' AND c.key = interviews.uuid), 0)"
    )
