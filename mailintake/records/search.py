"""Japanese full-text search without a word segmenter.

Japanese has no spaces between words and most words are two kanji, so text
is indexed as overlapping character bigrams (会議資料 → 会議 議資 資料 料),
the last character of each run standing alone so that a one-character query
finds it. A query becomes a phrase of its own bigrams, which matches exactly
the texts that contain it; space-separated words must all match. Text and
query are normalised alike (NFKC, case-folded, 〜 and ～ unified), so ｶﾀｶﾅ
finds カタカナ and 〜 finds ～.

SQLite: an FTS5 table with the unicode61 tokenizer over our bigram terms
(FTS5's own trigram tokenizer needs three characters, and SQLite 3.40's LIKE
on it is broken); a one-character query is a prefix query, read from FTS5's
index of first characters (``prefix = '1'``), and a list page asks FTS5 only
for the ids from the lowest one received in its time span. PostgreSQL: a
``tsvector`` column with a GIN index in the 'simple' configuration (pg_trgm
cannot index two-character words); each character of the text is also a
lexeme of its own, without a position, so a one-character query is one
exact lexeme (a prefix query gathers every bigram that starts with the
character before it can stop early) and phrases never match it; and,
beside it a GIN index over the terms and each mail's received time
(btree_gin, a trusted extension that ships with PostgreSQL): a list page
looks for matches in the newest week, then fortnight, month… until the page
is full, instead of collecting every match of a common word first
(:func:`matches_since`).

The index is filled by the ingester's process while the spool is empty, in
small batches, never inside an ingestion transaction (indexing there halved
SMTP throughput; a separate indexer process cost 60 MB of memory and, on
SQLite, write-lock contention with ingestion). Messages not reached yet are
found by a substring scan of the newest few, so a search never misses
fresh mail.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, Integer, bindparam, column, or_, select, table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from ..mail import charsets
from ..models import Message
from .messages import contains_text

MAX_INDEXED_CHARS = 20_000
BATCH = 500
# Ids the indexer looks back over: a transaction that committed a lower id
# after a higher one (two writers at once) is still picked up.
LOOKBACK = 2_000


def normalize(value: str) -> str:
    return unicodedata.normalize("NFKC", charsets.normalize(value)).casefold()


def _runs(value: str) -> list[str]:
    return normalize(value).split()


def index_terms(parts: Iterable[str]) -> str:
    """The space-separated bigram terms stored for one message."""
    terms: list[str] = []
    for part in parts:
        for run in _runs(part[:MAX_INDEXED_CHARS]):
            terms.extend(run[i : i + 2] for i in range(len(run) - 1))
            terms.append(run[-1])
    return " ".join(terms)


def query_runs(query: str) -> list[list[str]]:
    """Per space-separated word: its bigrams (or the single character),
    without terms of punctuation only, which neither engine indexes."""
    out = []
    for run in _runs(query):
        terms = [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
        terms = [t for t in terms if any(ch.isalnum() for ch in t)]
        if terms:
            out.append(terms)
    return out


# -- schema: created by the migrations (mailintake/migrations) ---------------------


# PostgreSQL: the lexemes of ``v`` and each character as a lexeme without a
# position. Every bigram begins with a character of the text and the last
# one of a run stands alone, so their first characters are the text's.
WITH_CHARACTERS = (
    "v || array_to_tsvector(ARRAY(SELECT DISTINCT left(lexeme, 1) FROM unnest(v) WHERE positions IS NOT NULL))"
)


def _indexed_column(dialect: str) -> str:
    return "rowid" if dialect == "sqlite" else "message_id"


# -- indexing ----------------------------------------------------------------------


def watermark(conn: Connection) -> int:
    value = conn.execute(text("SELECT last_message_id FROM search_state WHERE id = 1")).scalar()
    return int(value or 0)


def index_pending(engine: Engine, batch: int = BATCH) -> int:
    """Index up to ``batch`` messages not yet in the index; returns how many."""
    with engine.begin() as conn:
        mark = watermark(conn)
        column = _indexed_column(conn.dialect.name)
        # Candidates come from a bounded range of the primary key (the
        # look-back zone plus one batch), so each pass costs the same however
        # large the table and whatever the planner's statistics say.
        rows = conn.execute(
            text(
                "SELECT m.id, m.address_id, m.received_at, m.subject, m.from_name, m.from_address, m.text_body"
                " FROM (SELECT id FROM messages WHERE id > :low ORDER BY id LIMIT :window) c"
                " JOIN messages m ON m.id = c.id"
                # NOT EXISTS, not NOT IN: PostgreSQL runs NOT IN over a large
                # table as a nested subplan (quadratic); this is an anti-join.
                f" WHERE NOT EXISTS (SELECT 1 FROM message_search s WHERE s.{column} = m.id)"
                " ORDER BY m.id LIMIT :batch"
            ),
            {"low": max(0, mark - LOOKBACK), "window": LOOKBACK + batch, "batch": batch},
        ).all()
        if not rows:
            return 0
        names: dict[int, list[str]] = {}
        for message_id, filename in conn.execute(
            text("SELECT message_id, filename FROM attachments WHERE message_id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": [row.id for row in rows]},
        ):
            names.setdefault(message_id, []).append(filename)
        values = [
            {
                "id": row.id,
                "address_id": row.address_id,
                "received_at": row.received_at,
                "terms": index_terms(
                    [row.subject, row.from_name, row.from_address, row.text_body, *names.get(row.id, [])]
                ),
            }
            for row in rows
        ]
        if conn.dialect.name == "sqlite":
            conn.execute(
                text("INSERT INTO message_search(rowid, terms) VALUES (:id, :terms)"),
                [{"id": v["id"], "terms": v["terms"]} for v in values],
            )
        else:
            conn.execute(
                text(
                    "INSERT INTO message_search(message_id, terms, received_at, address_id)"
                    f" SELECT :id, {WITH_CHARACTERS}, :received_at, :address_id"
                    " FROM to_tsvector('simple', :terms) AS v"
                ),
                values,
            )
        new_mark = max(mark, max(row.id for row in rows))
        updated = conn.execute(text("UPDATE search_state SET last_message_id = :m WHERE id = 1"), {"m": new_mark})
        if updated.rowcount == 0:
            conn.execute(text("INSERT INTO search_state (id, last_message_id) VALUES (1, :m)"), {"m": new_mark})
        return len(rows)


def remove(conn: Connection, message_ids: list[int]) -> None:
    """Drop messages about to be deleted from the index (PostgreSQL's rows
    cascade with the message; SQLite's FTS5 rows have no foreign key)."""
    if conn.dialect.name == "sqlite" and message_ids:
        conn.execute(
            text("DELETE FROM message_search WHERE rowid IN :ids").bindparams(bindparam("ids", expanding=True)),
            {"ids": message_ids},
        )


def index_all(engine: Engine) -> int:
    total = 0
    while n := index_pending(engine):
        total += n
    return total


# -- querying ----------------------------------------------------------------------


def condition(conn: Connection, query: str) -> ColumnElement[bool] | None:
    """A WHERE condition on messages for ``query``, or None when the query
    has no searchable characters. Indexed messages are matched through the
    index; the few above the indexer's watermark by a substring scan."""
    runs = query_runs(query)
    if not runs:
        return None
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # For this transaction, room to hash the matching ids: a common
        # two-character word matches a quarter of all mail, and without the
        # hash PostgreSQL runs the index subquery once per listed row.
        conn.execute(text("SET LOCAL work_mem = '256MB'"))
    return or_(_index_condition(dialect, runs), fresh_condition(conn, query))


def fresh_condition(conn: Connection, query: str) -> ColumnElement[bool]:
    """The messages the indexer has not reached yet that contain ``query``:
    a best effort (no NFKC, no case folding) for the seconds before the
    indexer catches up."""
    # Stored text has the decoder's normalisation (charsets.normalize), not NFKC.
    words = [w for w in charsets.normalize(query).split() if any(ch.isalnum() for ch in w)]
    columns = [Message.subject, Message.from_name, Message.from_address, Message.text_body]
    return (Message.id > watermark(conn)) & _all([contains_text(columns, word) for word in words])


def _all(conditions: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    out = conditions[0]
    for item in conditions[1:]:
        out = out & item
    return out


def _index_condition(dialect: str, runs: list[list[str]]) -> ColumnElement[bool]:
    if dialect == "sqlite":
        expression = " AND ".join(_fts5_term(run) for run in runs)
        return text(  # type: ignore[return-value]
            "messages.id IN (SELECT rowid FROM message_search WHERE message_search MATCH :fts)"
        ).bindparams(bindparam("fts", expression))
    tsquery, params = _tsquery(runs)
    return text(  # type: ignore[return-value]
        f"messages.id IN (SELECT message_id FROM message_search WHERE terms @@ ({tsquery}))"
    ).bindparams(**params)


def _tsquery(runs: list[list[str]]) -> tuple[str, dict[str, Any]]:
    # phraseto_tsquery parses the bigram string exactly as to_tsvector did,
    # so both sides agree on lexemes and positions.
    parts: list[str] = []
    params: dict[str, Any] = {}
    for i, run in enumerate(runs):
        if len(run) == 1 and len(run[0]) == 1:
            # A literal, not parsed: the character lexemes were stored as given.
            parts.append(f"CAST(:tsq{i} AS tsquery)")
            params[f"tsq{i}"] = _tsquery_lexeme(run[0])
        else:
            parts.append(f"phraseto_tsquery('simple', :tsq{i})")
            params[f"tsq{i}"] = " ".join(run)
    return " && ".join(parts), params


def _tsquery_lexeme(char: str) -> str:
    return "'" + char.replace("'", "''").replace("\\", "\\\\") + "'"


def _fts5_term(run: list[str]) -> str:
    if len(run) == 1 and len(run[0]) == 1:
        return f"{_fts5_string(run[0])} *"  # one character: any term starting with it
    return " + ".join(_fts5_string(term) for term in run)  # adjacent terms: a phrase


def _fts5_string(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


# -- Newest matches first, by time window ----------------------------------------

TIME_INDEX = "ix_message_search_terms_time"


def time_index(conn: Connection) -> bool:
    """Whether searches here can look at the newest mail first: on SQLite
    always (FTS5 seeks by id), on PostgreSQL with the time index."""
    if conn.dialect.name == "sqlite":
        return True
    return (
        conn.execute(
            text("SELECT 1 FROM pg_indexes WHERE indexname = :index AND schemaname = current_schema()"),
            {"index": TIME_INDEX},
        ).first()
        is not None
    )


def index_kind(conn: Connection) -> str:
    """What a search uses here: fts5 (SQLite), gin+time or gin (PostgreSQL)."""
    if conn.dialect.name == "sqlite":
        return "fts5"
    return "gin+time" if time_index(conn) else "gin"


def create_time_index(conn: Connection, with_address: bool = True) -> bool:
    """The index over terms, received time and address (btree_gin is a
    trusted extension: a database owner may create it); False leaves the
    plain GIN path in use. ``with_address`` False: as revision 0008 made it."""
    if conn.dialect.name != "postgresql":
        return False
    if time_index(conn):
        return True
    # In public where there is one: an extension is per database, the
    # service's tables may live in a schema of their own.
    public = conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = 'public'")).first()
    try:
        with conn.begin_nested():
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS btree_gin" + (" SCHEMA public" if public else "")))
            # The address too: a clerk's search then finds only the mail of
            # their section's addresses inside the index.
            columns = "terms, received_at, address_id" if with_address else "terms, received_at"
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {TIME_INDEX} ON message_search USING gin ({columns})"))
    except DBAPIError:
        return False  # not allowed here; `mailintake db search-index` can be run by the database owner
    return True


def matches_since(
    dialect: str,
    query: str,
    since: dt.datetime,
    before: dt.datetime | None = None,
    address_ids: list[int] | None = None,
) -> Any:
    """The indexed matches of ``query`` received from ``since`` (and up to
    ``before``; at ``address_ids`` when given), as a CTE of ``message_id``
    for a list query to join. The caller has seen :func:`time_index` and
    searchable characters."""
    if dialect == "sqlite":
        return _fts5_matches_since(query, since)
    tsquery, params = _tsquery(query_runs(query))
    bounds = " AND received_at >= :since"
    params["since"] = _naive_utc(since)
    if before is not None:
        bounds += " AND received_at <= :before"
        params["before"] = _naive_utc(before)
    binds: list[Any] = []
    if address_ids is not None:
        bounds += " AND address_id IN :addresses"
        binds.append(bindparam("addresses", list(address_ids), expanding=True))
    return (
        text(f"SELECT message_id FROM message_search WHERE terms @@ ({tsquery}){bounds}")
        .bindparams(*binds, **params)
        .columns(message_id=Integer)
        .cte("matches_since")
    )


def _fts5_matches_since(query: str, since: dt.datetime) -> Any:
    """FTS5 knows no time, only ids: its matches from the lowest id of the
    mail received since ``since`` (a superset; the list query applies time
    and addresses). Ids follow arrival, so that is a short tail of each
    term's list instead of all of it."""
    expression = " AND ".join(_fts5_term(run) for run in query_runs(query))
    # The time index's range, not the whole table in id order (the planner's choice for min).
    lowest = text(
        "message_search.rowid >= (SELECT min(id) FROM messages INDEXED BY ix_messages_received"
        " WHERE received_at >= :since)"
    ).bindparams(bindparam("since", since, type_=Message.__table__.c.received_at.type))
    fts = table("message_search", column("rowid", Integer))
    return (
        select(fts.c.rowid.label("message_id"))
        .where(text("message_search MATCH :fts").bindparams(fts=expression), lowest)
        .cte("matches_since")
    )


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment
