"""Sign-in attempts in the database: the throttle's counts are shared by
every web process and node. Counts kept in memory before are not carried
over (they lapse within five minutes anyway).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signin_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("signin_attempts_pkey")),
    )
    op.create_index("ix_signin_attempts_key_at", "signin_attempts", ["key", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_signin_attempts_key_at", table_name="signin_attempts")
    op.drop_table("signin_attempts")
