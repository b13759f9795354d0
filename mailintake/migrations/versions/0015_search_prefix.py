"""SQLite: the search table keeps an index of each term's first character,
so a one-character search reads one list instead of merging every bigram
that starts with the character (FTS5's ``prefix`` option; PostgreSQL got
the same from 0013's character lexemes). FTS5 cannot add it to a table in
place: the table is rebuilt from its own terms, ids kept.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TOKENIZE = "tokenize = 'unicode61 remove_diacritics 0'"


def upgrade() -> None:
    _rebuild(f"{TOKENIZE}, prefix = '1'")


def downgrade() -> None:
    _rebuild(TOKENIZE)


def _rebuild(options: str) -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    op.execute("DROP TABLE IF EXISTS message_search_rebuilt")
    op.execute(f"CREATE VIRTUAL TABLE message_search_rebuilt USING fts5(terms, {options})")
    op.execute("INSERT INTO message_search_rebuilt(rowid, terms) SELECT rowid, terms FROM message_search")
    op.execute("DROP TABLE message_search")
    op.execute("ALTER TABLE message_search_rebuilt RENAME TO message_search")
