"""PostgreSQL: the search index carries each mail's received time, with a
GIN index over terms and time (btree_gin, a trusted extension shipped with
PostgreSQL), so that a search looks at the newest mail first. Where the
extension cannot be created the plain GIN index serves as before;
`mailintake db search-index` builds it later. SQLite is unchanged.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

from mailintake.records import search

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE message_search ADD COLUMN IF NOT EXISTS received_at timestamp")
    op.execute("UPDATE message_search s SET received_at = m.received_at FROM messages m WHERE m.id = s.message_id")
    search.create_time_index(op.get_bind(), with_address=False)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX IF EXISTS {search.TIME_INDEX}")
    op.execute("ALTER TABLE message_search DROP COLUMN IF EXISTS received_at")
