"""文書分類 carry the 保存期間 their documents are kept for, so the
registration form fills it in when a clerk picks the 分類. Existing 分類
have none (the clerk chooses, as before).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("classifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retention", sa.String(length=50), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("classifications", schema=None) as batch_op:
        batch_op.drop_column("retention")
