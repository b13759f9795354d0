"""収受 fields the clerks asked for: 文書日付, 受付方法, 要回答, the sender's
組織名 beside the name, and the sender directory that prefills them.

Registrations made before this revision were all taken from mail
(受付方法 電子メール) and asked for an answer exactly when they had a 回答期限.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sender_directory",
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("organisation", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("sender_directory_pkey")),
    )
    with op.batch_alter_table("registrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_required", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("sender_org", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("document_date", sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column("receipt_method", sa.String(length=20), server_default="電子メール", nullable=False)
        )
    op.execute(sa.text("UPDATE registrations SET reply_required = (reply_due IS NOT NULL)"))


def downgrade() -> None:
    with op.batch_alter_table("registrations", schema=None) as batch_op:
        batch_op.drop_column("receipt_method")
        batch_op.drop_column("document_date")
        batch_op.drop_column("sender_org")
        batch_op.drop_column("reply_required")
    op.drop_table("sender_directory")
