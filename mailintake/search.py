"""Japanese full-text search without a word segmenter.

Japanese has no spaces between words and most words are two kanji, so text
is indexed as overlapping character bigrams (会議資料 → 会議 議資 資料), plus
the last character of each run so that one-character queries work. A query
becomes a phrase of its own bigrams, which matches exactly the texts that
contain it; words separated by spaces must all match. Text and query are
normalised alike (NFKC, case-folded, route-dependent characters unified),
so ｶﾀｶﾅ finds カタカナ and 〜 finds ～.

SQLite: an FTS5 table (unicode61 tokenizer, not trigram: trigram needs three
characters and SQLite 3.40's LIKE on it is broken). PostgreSQL: a
``tsvector`` column with a GIN index ('simple' configuration; pg_trgm cannot
index two-character words).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.sql.elements import ColumnElement

from . import charsets

MAX_INDEXED_CHARS = 20_000


def normalize(value: str) -> str:
    return unicodedata.normalize("NFKC", charsets.normalize(value)).casefold()


def _runs(value: str) -> list[str]:
    return normalize(value).split()


def index_terms(parts: Iterable[str]) -> str:
    """The space-separated bigram terms stored for a message."""
    terms: list[str] = []
    for part in parts:
        for run in _runs(part[:MAX_INDEXED_CHARS]):
            if len(run) == 1:
                terms.append(run)
                continue
            terms.extend(run[i : i + 2] for i in range(len(run) - 1))
            terms.append(run[-1])
    return " ".join(terms)


def _query_runs(query: str) -> list[list[str]]:
    """Per space-separated word: its bigrams (or the single character),
    leaving out terms of punctuation only, which neither engine indexes."""
    out = []
    for run in _runs(query):
        terms = [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
        terms = [t for t in terms if any(ch.isalnum() for ch in t)]
        if terms:
            out.append(terms)
    return out


def create_index(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.execute(
            text(
                "CREATE VIRTUAL TABLE IF NOT EXISTS message_search "
                "USING fts5(terms, tokenize = 'unicode61 remove_diacritics 0')"
            )
        )
    else:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS message_search ("
                " message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,"
                " terms tsvector NOT NULL)"
            )
        )
        conn.execute(text("CREATE INDEX IF NOT EXISTS ix_message_search_terms ON message_search USING gin (terms)"))


def add_to_index(conn: Connection, rows: list[tuple[int, str]]) -> None:
    """``rows``: (message id, index_terms(...))."""
    if not rows:
        return
    values = [{"id": message_id, "terms": terms} for message_id, terms in rows]
    if conn.dialect.name == "sqlite":
        conn.execute(text("INSERT INTO message_search(rowid, terms) VALUES (:id, :terms)"), values)
    else:
        conn.execute(
            text("INSERT INTO message_search(message_id, terms) VALUES (:id, to_tsvector('simple', :terms))"), values
        )


def matching_ids(dialect: str, query: str) -> ColumnElement[bool] | None:
    """A condition on ``messages.id`` for ``query``; None when the query has
    no searchable characters."""
    runs = _query_runs(query)
    if not runs:
        return None
    if dialect == "sqlite":
        expression = " AND ".join(_fts5_term(run) for run in runs)
        return text("messages.id IN (SELECT rowid FROM message_search WHERE message_search MATCH :expr)").bindparams(
            bindparam("expr", expression)
        )  # type: ignore[return-value]
    # phraseto_tsquery parses the bigram string exactly as to_tsvector did,
    # so both sides agree on the lexemes and their positions.
    parts, params = [], {}
    for i, run in enumerate(runs):
        if len(run) == 1 and len(run[0]) == 1:
            parts.append(f"to_tsquery('simple', :q{i})")
            params[f"q{i}"] = f"{run[0]}:*"
        else:
            parts.append(f"phraseto_tsquery('simple', :q{i})")
            params[f"q{i}"] = " ".join(run)
    condition = text(
        "messages.id IN (SELECT message_id FROM message_search WHERE terms @@ (" + " && ".join(parts) + "))"
    ).bindparams(**params)
    return condition  # type: ignore[return-value]


def _fts5_term(run: list[str]) -> str:
    if len(run) == 1 and len(run[0]) == 1:
        return f"{_fts5_string(run[0])} *"  # one character: any term starting with it
    return " + ".join(_fts5_string(term) for term in run)  # adjacent terms: a phrase


def _fts5_string(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def rebuild(engine: Engine) -> int:
    """Index every stored message again (after a restore)."""
    count = 0
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM message_search"))
        names: dict[int, list[str]] = {}
        for message_id, filename in conn.execute(text("SELECT message_id, filename FROM attachments")).all():
            names.setdefault(message_id, []).append(filename)
        rows = conn.execute(text("SELECT id, subject, from_name, from_address, text_body FROM messages")).all()
        for start in range(0, len(rows), 500):
            batch = [
                (
                    row.id,
                    index_terms([row.subject, row.from_name, row.from_address, row.text_body, *names.get(row.id, [])]),
                )
                for row in rows[start : start + 500]
            ]
            add_to_index(conn, batch)
            count += len(batch)
    return count
