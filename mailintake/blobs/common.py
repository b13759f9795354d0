"""What both stores share: the size of a piece read or written at once, and
the one check every sha256 key passes before it names anything."""

from __future__ import annotations

# A 30 MB mail is never whole in memory: it moves in pieces of this size.
CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


def check_sha256(sha256: str) -> str:
    if len(sha256) != 64 or not set(sha256) <= _HEX:
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256
