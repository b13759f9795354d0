"""The ``database`` blob store: attachments and originals as rows, their
bytes in 1 MiB pieces. Empty until ``blob_store = database`` or
``mailintake blobs move --to database``; the ``files`` store is untouched.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_files",
        sa.Column("kind", sa.String(length=1), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "sha256", name=op.f("stored_files_pkey")),
    )
    op.create_table(
        "stored_chunks",
        sa.Column("kind", sa.String(length=1), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "sha256", "seq", name=op.f("stored_chunks_pkey")),
    )


def downgrade() -> None:
    op.drop_table("stored_chunks")
    op.drop_table("stored_files")
