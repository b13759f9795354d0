"""The index of the list's status counts covers mail only (not the MTA
probe's messages), so counting a section's 未処理 up to the cap reads the
index alone instead of a thousand table rows.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

NAME = "ix_messages_address_status_received"
COLUMNS = ["address_id", "status", "received_at", "id"]
# probe_id is always NULL in the new index; SQLite 3.40 reads the table for
# the partial index's condition unless the column is in the index.
LISTED = [*COLUMNS, "probe_id"]


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(NAME)
        batch_op.create_index(
            NAME,
            LISTED,
            unique=False,
            postgresql_where=sa.text("probe_id IS NULL"),
            sqlite_where=sa.text("probe_id IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(NAME)
        batch_op.create_index(NAME, COLUMNS, unique=False)
