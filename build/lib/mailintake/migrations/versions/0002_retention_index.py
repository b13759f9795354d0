"""An index for the retention purge; named unique constraints on SQLite.

The purge looks for unregistered mail older than a cut-off at any address.
A SQLite database made before migrations existed has its single-column
unique constraints unnamed; batch mode can only drop a constraint by name,
so those small tables are copied once with the names of the naming
convention (the names PostgreSQL gives them anyway).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES_WITH_UNIQUE_COLUMNS = ("addresses", "api_tokens", "sections", "users")
# As in mailintake.models at this revision (frozen here on purpose).
UNIQUE_NAMES = {"uq": "%(table_name)s_%(column_0_name)s_key"}


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for table in TABLES_WITH_UNIQUE_COLUMNS:
            with op.batch_alter_table(table, recreate="always", naming_convention=UNIQUE_NAMES):
                pass
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_status_received", ["status", "received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_status_received")
