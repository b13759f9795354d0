"""PostgreSQL: the search index carries each mail's address, and the
newest-first index covers it (terms, received time, address), so a clerk's
search finds only their section's mail inside the index instead of
filtering everyone's matches afterwards. SQLite is unchanged.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

from mailintake.records import search

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE message_search ADD COLUMN IF NOT EXISTS address_id integer")
    op.execute("UPDATE message_search s SET address_id = m.address_id FROM messages m WHERE m.id = s.message_id")
    op.execute(f"DROP INDEX IF EXISTS {search.TIME_INDEX}")
    search.create_time_index(op.get_bind())


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    had_index = search.time_index(op.get_bind())
    op.execute(f"DROP INDEX IF EXISTS {search.TIME_INDEX}")
    op.execute("ALTER TABLE message_search DROP COLUMN IF EXISTS address_id")
    if had_index:
        search.create_time_index(op.get_bind(), with_address=False)
