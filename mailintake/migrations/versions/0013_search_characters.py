"""PostgreSQL: every character of an indexed mail also becomes a lexeme of
its own, without a position, so a one-character search is one exact lexeme
instead of a prefix over every bigram that starts with it. Phrases never
match a lexeme without a position, so other searches are unchanged. SQLite
is unchanged (FTS5's prefix query is quick there).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Each bigram begins with a character of the text and the last character of
# a run stands alone, so the first characters of the lexemes are the text's
# characters (those the parser kept).
_CHARACTERS = "ARRAY(SELECT DISTINCT left(lexeme, 1) FROM unnest(terms) WHERE positions IS NOT NULL)"


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(f"UPDATE message_search SET terms = terms || array_to_tsvector({_CHARACTERS})")


def downgrade() -> None:
    # Kept: the previous release's one-character query (every lexeme that
    # starts with the character) finds the same mail with them, and an
    # upgrade again adds those of mail indexed meanwhile.
    pass
