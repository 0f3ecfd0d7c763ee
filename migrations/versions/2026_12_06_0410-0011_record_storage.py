"""Interview records stored for a cheap push: compressed with lz4 and kept in the row on PostgreSQL.

A record (about 5 KB of JSON) is written twice per push, in ``interviews`` and as a revision. With
PostgreSQL's defaults each copy is compressed with pglz and, still above the 2 KB row target, moved
to the table's TOAST relation in two chunks, each with its own TOAST index entry. lz4 compresses
several times faster, and a row target of 4,080 bytes keeps a compressed record in the row itself
(larger ones still go to TOAST). Rows stored before keep their form until rewritten; both are read
alike. ``participants.change_seq`` loses its index: nothing looks a participant up by it, and each
push that registers a participant paid for the entry.

SQLite stores rows its own way: only the index is dropped there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 04:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

RECORD_TABLES = ("interviews", "interview_revisions")
ROW_TARGET = 4080  # bytes: half a page, so two rows with a compressed record fit one


# A server built without lz4 keeps pglz; the check runs in the database, so ``--sql`` works too.
SET_LZ4 = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'
               AND 'lz4' = ANY(enumvals)) THEN
        EXECUTE 'ALTER TABLE {table} ALTER COLUMN record SET COMPRESSION lz4';
    END IF;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in RECORD_TABLES:
            op.execute(f"ALTER TABLE {table} SET (toast_tuple_target = {ROW_TARGET})")
            op.execute(SET_LZ4.format(table=table))
    with op.batch_alter_table("participants") as batch:
        batch.drop_index("ix_participants_change_seq")


def downgrade() -> None:
    with op.batch_alter_table("participants") as batch:
        batch.create_index("ix_participants_change_seq", ["change_seq"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for table in RECORD_TABLES:
            op.execute(f"ALTER TABLE {table} RESET (toast_tuple_target)")
            op.execute(f"ALTER TABLE {table} ALTER COLUMN record SET COMPRESSION DEFAULT")
