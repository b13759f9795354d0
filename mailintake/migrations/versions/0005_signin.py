"""Single sign-on: one-time values of sign-ins (OIDC state, SAML request
and assertion IDs, hand-off nonces), what single sign-out needs on each
session, and the people of 異動情報 for accounts made at first sign-in.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signin_once",
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_sha256", name=op.f("signin_once_pkey")),
    )
    op.create_index(op.f("ix_signin_once_expires_at"), "signin_once", ["expires_at"], unique=False)
    op.create_table(
        "directory_people",
        sa.Column("staff_number", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("section_codes", sa.String(length=500), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("staff_number", name=op.f("directory_people_pkey")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signout_hint", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_column("signout_hint")
    op.drop_table("directory_people")
    op.drop_index(op.f("ix_signin_once_expires_at"), table_name="signin_once")
    op.drop_table("signin_once")
