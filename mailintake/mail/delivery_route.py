"""配送経路: a mail's ``Received:`` headers as hops, oldest first.

Here mail-parser is the better tool, and it is used as it is: it splits each
``Received:`` header into its from/by/with/id/for clauses and date (RFC 5321
4.4), orders the hops and works out the delay between them. The body and
attachment decoding stays our own layer over the standard library, where
mail-parser loses Japanese mail (see README "Decoding" and bench/decode).

The newest hop is the last server before this service: the organisation's
own MTA, whose time is the evidence a clerk may need when a deadline is
disputed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import mailparser

MAX_HEADER_BYTES = 256 * 1024
MAX_HOPS = 50

# mail-parser reports every header it cannot split as a warning; the page
# shows what it could read, and the raw header stays in the source view.
logging.getLogger("mailparser").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Hop:
    number: int
    sender: str  # "from": the host that handed the mail over
    receiver: str  # "by": the host that took it
    protocol: str  # "with": SMTP, ESMTPS, …
    at: dt.datetime | None
    delay_seconds: float | None


def header_block(chunks: Iterable[bytes]) -> bytes:
    """The header block at the start of a mail (at most MAX_HEADER_BYTES)."""
    head = b""
    for chunk in chunks:
        head += chunk
        for end in (b"\r\n\r\n", b"\n\n"):
            cut = head.find(end)
            if cut >= 0:
                return head[: cut + len(end)]
        if len(head) >= MAX_HEADER_BYTES:
            break
    return head[:MAX_HEADER_BYTES]


def hops(head: bytes) -> list[Hop]:
    """The hops of ``head``, oldest first; [] when there are none or they
    cannot be read."""
    if b"received:" not in head.lower():
        return []
    try:
        received = mailparser.parse_from_bytes(head.rstrip(b"\r\n") + b"\r\n\r\n").received
    except Exception:  # a third-party parser on hostile input: no route, never a broken page
        return []
    out: list[Hop] = []
    for item in (received or [])[:MAX_HOPS]:
        if not isinstance(item, dict) or not (item.get("from") or item.get("by") or item.get("date_utc")):
            continue
        out.append(
            Hop(
                number=len(out) + 1,
                sender=_text(item.get("from")),
                receiver=_text(item.get("by")),
                protocol=_text(item.get("with")),
                at=_moment(item.get("date_utc")),
                delay_seconds=float(item["delay"]) if isinstance(item.get("delay"), int | float) else None,
            )
        )
    return out


def _text(value: object) -> str:
    return " ".join(str(value).split())[:300] if value else ""


def _moment(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
