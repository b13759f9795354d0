"""Which files of an outbox are complete, by the route's strategy:
renamed into place, announced by a done-file, or unchanged for a while."""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .config import Config, Route
from .files import is_temporary, move_to_error
from .transfer_log import TransferLog

log = logging.getLogger(__name__)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


class Pickup:
    def __init__(self, config: Config, transfer_log: TransferLog) -> None:
        self.config = config
        self.transfer_log = transfer_log
        self._seen: dict[Path, _Seen] = {}

    def refuse(self, route: Route, path: Path, reason: str) -> None:
        """An outbox entry that is not a file we take, moved to the error
        folder as it is (a symlink moves as a link, never followed)."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        safe = "".join(ch if ch.isprintable() and ch not in "/\\" else "_" for ch in path.name)[:200]
        try:
            move_to_error(self.config, path, f"{stamp}-{safe}", route, reason, path.name)
        except OSError as exc:
            log.error("%s: cannot move %s to the error folder: %s", route.id, path, exc)
            return
        self.transfer_log.write(result="refused", route=route.id, file=path.name, source=route.source, reason=reason)
        log.warning("%s: %s refused: %s", route.id, path.name, reason)

    def complete_files(self, route: Route) -> list[Path]:
        """Files of ``route``'s outbox that are complete by its strategy;
        symlinks, folders and special files go to the error folder."""
        outbox = self.config.outbox(route)
        try:
            entries = sorted(os.scandir(outbox), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        names = {entry.name for entry in entries}
        ready = []
        now = time.monotonic()
        for entry in entries:
            name = entry.name
            if is_temporary(name):
                continue
            if route.completeness == "done-file" and name.endswith(route.done_suffix):
                continue
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                kind = "シンボリックリンク" if stat.S_ISLNK(st.st_mode) else "通常のファイルではないもの"
                self.refuse(route, Path(entry.path), f"{kind}は受け付けません")
                continue
            if not fnmatch.fnmatch(name, route.pattern):
                continue
            if route.completeness == "done-file" and name + route.done_suffix not in names:
                continue
            if route.completeness == "stable" and not self._stable(Path(entry.path), st, route, now):
                continue
            ready.append(Path(entry.path))
        return ready

    def _stable(self, path: Path, st: os.stat_result, route: Route, now: float) -> bool:
        seen = self._seen.get(path)
        if seen is None or (seen.size, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
            self._seen[path] = _Seen(st.st_size, st.st_mtime_ns, now)
            return False
        return now - seen.since >= route.stable_seconds
