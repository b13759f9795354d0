"""Hand-off to the document system: registration events in commit order,
acknowledgements, push-mode progress, 先方文書番号 and 回答期限, 分類コード,
and API token scopes.

Registrations made before this revision get their events here, in the order
they were made, so a document system that starts reading the feed receives
them too. Tokens made before keep what they could do: read messages.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "handoff_push",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("writing_seq", sa.BigInteger(), nullable=True),
        sa.Column("writing_name", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("handoff_push_pkey")),
    )
    op.create_table(
        "registration_events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registration_id"], ["registrations.id"], name=op.f("registration_events_registration_id_fkey")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("registration_events_pkey")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_registration_events_registration_id"), "registration_events", ["registration_id"], unique=False
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.String(length=200), server_default="messages:read", nullable=False))
        batch_op.add_column(sa.Column("section_ids", sa.JSON(), nullable=True))
    with op.batch_alter_table("classifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code", sa.String(length=50), server_default="", nullable=False))
    with op.batch_alter_table("registrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender_reference", sa.String(length=200), server_default="", nullable=False))
        batch_op.add_column(sa.Column("reply_due", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("last_event_seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("acked_seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("acked_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("acked_by", sa.String(length=200), server_default="", nullable=False))
    _events_for_earlier_registrations()


def _events_for_earlier_registrations() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, registered_at, cancelled_at FROM registrations ORDER BY registered_at, id")
    ).all()
    happened = [(row.registered_at, row.id, "registered") for row in rows]
    happened += [(row.cancelled_at, row.id, "cancelled") for row in rows if row.cancelled_at is not None]
    for at, registration_id, event in sorted(happened, key=lambda h: (h[0], h[2] != "registered", h[1])):
        conn.execute(
            sa.text("INSERT INTO registration_events (registration_id, event, at) VALUES (:r, :e, :at)"),
            {"r": registration_id, "e": event, "at": at},
        )
    conn.execute(
        sa.text(
            "UPDATE registrations SET last_event_seq = "
            "(SELECT max(seq) FROM registration_events WHERE registration_id = registrations.id)"
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("registrations", schema=None) as batch_op:
        batch_op.drop_column("acked_by")
        batch_op.drop_column("acked_at")
        batch_op.drop_column("acked_seq")
        batch_op.drop_column("last_event_seq")
        batch_op.drop_column("reply_due")
        batch_op.drop_column("sender_reference")
    with op.batch_alter_table("classifications", schema=None) as batch_op:
        batch_op.drop_column("code")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("section_ids")
        batch_op.drop_column("scopes")
    op.drop_index(op.f("ix_registration_events_registration_id"), table_name="registration_events")
    op.drop_table("registration_events")
    op.drop_table("handoff_push")
