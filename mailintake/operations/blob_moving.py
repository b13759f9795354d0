"""Move what is stored from one blob store to another (``files`` ⇄
``database``): every original and attachment the database refers to is
copied, its sha256 checked on the way, and optionally removed from the
source once the target has it.

Safe to run while the service runs and to run again: a file the target
already has is skipped, and one that arrives in the source meanwhile is
taken by the next run (after switching ``blob_store``, run it once more).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import Engine, distinct, func, select

from ..blobs import BlobStore, OriginalStore
from ..models import Attachment, Message


class ChecksumMismatch(Exception):
    """A stored file's bytes do not hash to its name."""


@dataclass
class MoveResult:
    copied: int = 0
    present: int = 0
    removed: int = 0
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = f"移した {self.copied} 件、移動先に既にあった {self.present} 件、元から削除した {self.removed} 件"
        if self.missing:
            text += f"、どちらにもない {len(self.missing)} 件"
        if self.damaged:
            text += f"、内容がハッシュと合わない {len(self.damaged)} 件（移していません）"
        return text


def move(
    engine: Engine,
    source: tuple[BlobStore, OriginalStore],
    target: tuple[BlobStore, OriginalStore],
    *,
    remove_source: bool = False,
    progress: Callable[[int], object] = lambda _n: None,
) -> MoveResult:
    result = MoveResult()
    (source_blobs, source_originals), (target_blobs, target_originals) = source, target
    with engine.connect() as conn:
        originals = conn.execute(select(Message.raw_sha256, Message.raw_size).distinct()).all()
        attachments = conn.scalars(select(Attachment.sha256).distinct()).all()

    def copy_original(sha256: str, size: int) -> None:
        target_originals.keep_chunks(sha256, size, _verified(source_originals.chunks(sha256, size), sha256))

    def copy_attachment(sha256: str, _size: int) -> None:
        target_blobs.put_stream(_verified(source_blobs.chunks(sha256), sha256))

    for items, source_store, target_store, copy in (
        ([(s, size) for s, size in originals], source_originals, target_originals, copy_original),
        ([(s, 0) for s in attachments], source_blobs, target_blobs, copy_attachment),
    ):
        for sha256, size in items:
            progress(1)
            if target_store.exists(sha256):
                result.present += 1
            elif not source_store.exists(sha256):
                result.missing.append(sha256)
                continue
            else:
                try:
                    copy(sha256, size)
                except ChecksumMismatch:
                    result.damaged.append(sha256)
                    continue
                result.copied += 1
            if remove_source:
                result.removed += source_store.remove([sha256])
    return result


def to_move(engine: Engine) -> int:
    """How many files a move looks at (for a progress bar)."""
    with engine.connect() as conn:
        originals = conn.scalar(select(func.count(distinct(Message.raw_sha256))))
        attachments = conn.scalar(select(func.count(distinct(Attachment.sha256))))
    return int(originals or 0) + int(attachments or 0)


def _verified(chunks: Iterable[bytes], sha256: str) -> Iterator[bytes]:
    """The chunks as they come; after the last, a :class:`ChecksumMismatch`
    if they do not hash to ``sha256`` — raised inside the target's write,
    so that write is abandoned."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != sha256:
        raise ChecksumMismatch(sha256)
