"""File primitives of the engine: which names are still being written,
which names a share refuses, opening a claimed file without following a
link, hashing, copying, and making a folder's entries durable."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NotAFile

if TYPE_CHECKING:
    from .config import Config, Route

REASON_SUFFIX = ".reason.txt"

TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".filepart", ".crdownload", ".swp")


def is_temporary(name: str) -> bool:
    """Names writers use while a file is incomplete (temp-name-then-rename)."""
    lowered = name.lower()
    return name.startswith((".", "~$")) or lowered.endswith(TEMP_SUFFIXES)


def name_problem(name: str) -> str | None:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "ファイル名に制御文字が含まれています"
    if len(name.encode("utf-8", "surrogateescape")) > 240:
        return "ファイル名が長すぎます"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "ファイル名が UTF-8 ではありません（SMB の文字コード設定を確認してください）"
    return None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_claimed(path: Path) -> int:
    """Open a file the engine has claimed, never through a link and never
    waiting (a FIFO would block the scan for good); the descriptor is of a
    regular file with one name, or :class:`NotAFile` says what it is."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotAFile("シンボリックリンクは受け付けません") from exc
        raise
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "通常のファイルではないもの（FIFO・デバイスなど）は受け付けません"
    elif st.st_nlink != 1:
        # Another name would let someone change (or have chosen) the bytes
        # after the claim, or point at a file the sender cannot read.
        problem = "ほかの名前（ハードリンク）を持つファイルは受け付けません"
    if problem is not None:
        os.close(fd)
        raise NotAFile(problem)
    os.set_blocking(fd, True)
    return fd


def sha256_of(path: Path) -> tuple[int, str]:
    with os.fdopen(open_claimed(path), "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256")
        return os.fstat(fh.fileno()).st_size, digest.hexdigest()


def copy_file(source: Path, target: Path) -> None:
    """Copy into a new file (never an existing one) and fsync it; constant memory."""
    with os.fdopen(open_claimed(source), "rb") as src:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = os.fstat(src.fileno()).st_size
            offset = 0
            while offset < size:
                sent = os.sendfile(fd, src.fileno(), offset, min(size - offset, 1 << 30))
                if sent == 0:
                    break
                offset += sent
            os.fchmod(fd, 0o640)
            os.fsync(fd)
        finally:
            os.close(fd)


def free_name(inbox: Path, name: str, on_conflict: str) -> str:
    """``name``, or with "error" the name as it is (the caller refuses a
    taken one), else the first ``stem.N.ext`` not in ``inbox``."""
    if on_conflict == "error" or not (inbox / name).exists():
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    generation = 1
    while True:
        candidate = f"{stem}.{generation}.{ext}" if ext else f"{stem}.{generation}"
        if not (inbox / candidate).exists():
            return candidate
        generation += 1


def move_to_error(config: Config, path: Path, target_name: str, route: Route, reason: str, original: str) -> None:
    """A refused file (or outbox entry, moved as it is) into the sender's
    error folder, with the reason beside it in Japanese."""
    target = config.error_dir(route.source) / target_name
    os.rename(path, target)
    text = f"元のファイル名: {original}\n理由: {reason}\n日時: {dt.datetime.now(dt.UTC).isoformat()}\n"
    reason_path = target.parent / (target.name + REASON_SUFFIX)
    fd = os.open(reason_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
