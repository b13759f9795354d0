"""Alembic environment: always driven by mailintake.schema, which hands over
an open connection (no alembic.ini, no URL in a file)."""

from __future__ import annotations

from alembic import context

from mailintake.models import Base
from mailintake.schema import include_object, render_item

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode copies the table, which is
    # a plain ALTER on PostgreSQL.
    render_as_batch=True,
    include_object=include_object,
    render_item=render_item,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
