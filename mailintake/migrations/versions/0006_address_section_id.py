"""Addresses refer to their section by id.

Each address's section name becomes the id of the section of that name; a
name no section row carries yet (addresses made before sections were rows)
becomes a section with the usual 文書記号, so that no clerk loses sight of
mail. The placeholder section 「未設定」 of addresses deleted while their
mail was arriving becomes no section (system administrators see that mail).
Renaming a section no longer touches its addresses.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PLACEHOLDER = "未設定"


def _symbol(name: str) -> str:
    for suffix in ("課", "室", "係"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def upgrade() -> None:
    bind = op.get_bind()
    named = set(bind.execute(sa.text("SELECT DISTINCT section FROM addresses")).scalars())
    existing = set(bind.execute(sa.text("SELECT name FROM sections")).scalars())
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for name in sorted(named - existing - {PLACEHOLDER, ""}):
        bind.execute(
            sa.text("INSERT INTO sections (name, symbol, created_at) VALUES (:name, :symbol, :now)"),
            {"name": name, "symbol": _symbol(name), "now": now},
        )
    with op.batch_alter_table("addresses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("section_id", sa.Integer(), nullable=True))
    bind.execute(
        sa.text("UPDATE addresses SET section_id = (SELECT s.id FROM sections s WHERE s.name = addresses.section)")
    )
    with op.batch_alter_table("addresses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_addresses_section_id"), ["section_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("addresses_section_id_fkey"), "sections", ["section_id"], ["id"])
        batch_op.drop_column("section")


def downgrade() -> None:
    with op.batch_alter_table("addresses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("section", sa.String(length=200), server_default="", nullable=False))
    op.get_bind().execute(
        sa.text(
            "UPDATE addresses SET section = COALESCE("
            "(SELECT s.name FROM sections s WHERE s.id = addresses.section_id), :placeholder)"
        ),
        {"placeholder": PLACEHOLDER},
    )
    with op.batch_alter_table("addresses", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("addresses_section_id_fkey"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_addresses_section_id"))
        batch_op.drop_column("section_id")
