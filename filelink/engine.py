"""Picking up complete files and delivering them exactly once.

A file's journey, each step committed in the journal before the next (the
files of one scan take each step together: one commit for all their
claims, one for their final names, one for their completions):

1. **claim**: the journal records the transfer, then the file is renamed from
   the outbox into the engine's work area (same file system, atomic), so the
   sender can no longer change it; its size and sha256 are recorded.
2. **convert** (if the route asks): into a second work file, validated whole;
   a file that does not convert goes to the sender's error folder with the
   reason, and nothing is delivered.
3. **deliver** to each destination: written under a temporary dot-name in the
   inbox, fsynced, then the final name is recorded and created with
   ``link()`` (which never replaces an existing file) and the temporary
   name removed. Readers see a final name only once the file is complete.
4. **archive**: the work file moves to the archive, the transfer is done.

After a crash, unfinished transfers resume from their journal state; the
inode shared by the temporary and the final name tells whether a link
happened, so nothing is delivered twice or lost.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from .config import Config, Route
from .convert import converted
from .errors import ConversionError, DeliveryRefused, NotAFile
from .files import copy_file, free_name, fsync_dir, move_to_error, name_problem, sha256_of
from .jobs import prune_archive, run_job
from .journal import Journal, Transfer
from .pickup import Pickup
from .status import route_status, write_status
from .transfer_log import TransferLog

log = logging.getLogger(__name__)

# Files claimed, linked and finished together (three journal commits).
BATCH_SIZE = 200


class Engine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.routes = {route.id: route for route in config.routes}
        config.work_dir.mkdir(parents=True, exist_ok=True)
        config.archive_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(config.journal_path)
        self.transfer_log = TransferLog(config)
        self.pickup = Pickup(config, self.transfer_log)
        self._hashes: dict[str, tuple[int, str]] = {}
        self._last_prune = 0.0
        self._last_status = 0.0

    def close(self) -> None:
        self.journal.close()
        self.transfer_log.close()

    # -- the loop ------------------------------------------------------------------

    def run(self, stop: threading.Event, wake: threading.Event | None = None) -> None:
        """Until ``stop``: scan, deliver, then sleep until woken by the
        watcher or until the next rescan (file systems shared over the
        network miss events, so the rescan is what guarantees pick-up)."""
        wake = wake or threading.Event()
        self.resume()
        while not stop.is_set():
            self.scan_once()
            if time.monotonic() - self._last_status >= 1.0:  # not once per inotify event
                self.write_status()
                self._last_status = time.monotonic()
            wake.wait(self._sleep_seconds())
            wake.clear()

    def _sleep_seconds(self) -> float:
        windows = [r.stable_seconds / 4 for r in self.config.enabled_routes if r.completeness == "stable"]
        return max(0.05, min([self.config.rescan_seconds, *windows]))

    def resume(self) -> None:
        """Finish what a previous run left (crash or stop)."""
        for transfer in self.journal.unfinished():
            self.process(transfer, ignore_backoff=True)

    def scan_once(self) -> int:
        handled = 0
        for route in self.config.enabled_routes:
            ready = self.complete_files(route)
            for start in range(0, len(ready), BATCH_SIZE):
                transfers = self.claim_batch(route, ready[start : start + BATCH_SIZE])
                self.process_batch(route, transfers)
                handled += len(transfers)
        for transfer in self.journal.unfinished():
            self.process(transfer)
        self._prune_archive()
        return handled

    # -- pick-up -------------------------------------------------------------------

    def complete_files(self, route: Route) -> list[Path]:
        """Files of ``route``'s outbox that are complete by its strategy;
        symlinks, folders and special files go to the error folder."""
        return self.pickup.complete_files(route)

    def claim(self, route: Route, path: Path) -> Transfer | None:
        claimed = self.claim_batch(route, [path])
        return claimed[0] if claimed else None

    def claim_batch(self, route: Route, paths: list[Path]) -> list[Transfer]:
        """The journal records every claim in one commit; the renames follow."""
        transfers = []
        for path in paths:
            problem = name_problem(path.name)
            if problem is not None:
                self.pickup.refuse(route, path, problem)
                continue
            transfer_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(6)
            transfers.append(Transfer(transfer_id, route.id, path.name, str(path), "claiming", None, None, 0, None, ""))
        self.journal.begin_claims(
            [(t.id, route.id, t.name, Path(t.source_path), route.destinations) for t in transfers]
        )
        return transfers

    # -- one transfer, from any state to done ------------------------------------

    def _work(self, transfer_id: str, suffix: str = ".data") -> Path:
        return self.config.work_dir / f"{transfer_id}{suffix}"

    def process(self, transfer: Transfer, ignore_backoff: bool = False) -> None:
        route = self.routes.get(transfer.route)
        if route is None or not route.enabled:
            return  # kept in the journal until the route comes back
        if not ignore_backoff and transfer.next_attempt_at:
            if dt.datetime.fromisoformat(transfer.next_attempt_at) > dt.datetime.now(dt.UTC):
                return
        try:
            if not self._take_from_outbox(transfer, route):
                return
            payload = self._payload(transfer, route)
            if payload is None:
                return
            if route.pre and not run_job("pre", route, transfer, payload, self.transfer_log):
                raise DeliveryRefused("前処理コマンドが失敗しました")
            for delivery in self.journal.deliveries(transfer.id):
                if delivery.state != "delivered":  # 'delivered' only once the transfer is done
                    self._deliver(transfer, route, delivery.destination, delivery.state, delivery.final_name, payload)
            if route.post:
                run_job("post", route, transfer, payload, self.transfer_log)
            self._archive(transfer, route)
        except (OSError, DeliveryRefused) as exc:
            self._retry_later(transfer, route, exc)

    def process_batch(self, route: Route, transfers: list[Transfer]) -> None:
        """The files of one scan together, through the same journal states as
        :meth:`process` but with one commit for all their chosen names and
        one for all their completions, and each inbox's folder made durable
        once. Routes with commands or ``on_conflict = "error"`` go one by one."""
        if route.pre or route.post or route.on_conflict == "error" or len(transfers) < 2:
            for transfer in transfers:
                self.process(transfer)
            return
        started = time.monotonic()
        copied: list[tuple[Transfer, Path]] = []
        for transfer in transfers:
            try:
                if not self._take_from_outbox(transfer, route) or (payload := self._payload(transfer, route)) is None:
                    continue
                for temporary in (self._temporary(route, d, transfer) for d in route.destinations):
                    temporary.unlink(missing_ok=True)  # a partial copy from before a crash
                    copy_file(payload, temporary)
                copied.append((transfer, payload))
            except OSError as exc:
                self._retry_later(transfer, route, exc)
        chosen = [
            (
                transfer,
                payload,
                destination,
                free_name(self.config.inbox(route, destination), transfer.name, route.on_conflict),
            )
            for transfer, payload in copied
            for destination in route.destinations
        ]
        self.journal.linking_many([(t.id, destination, name) for t, _, destination, name in chosen])
        failed: set[str] = set()
        for transfer, payload, destination, name in chosen:
            try:
                self._link(transfer, route, destination, name, payload)
            except (OSError, DeliveryRefused) as exc:
                if transfer.id not in failed:
                    failed.add(transfer.id)
                    self._retry_later(transfer, route, exc)
        for destination in route.destinations:
            fsync_dir(self.config.inbox(route, destination))
        done = [transfer for transfer, _ in copied if transfer.id not in failed]
        for transfer, _, destination, name in chosen:
            if transfer.id not in failed:
                self._delivered(transfer, route, destination, name, started)
        for transfer in done:
            self._move_to_archive(transfer, route)
        self.journal.finish_many([(t.id, t.size or 0, t.sha256 or "") for t in done])
        for transfer in done:
            self._hashes.pop(transfer.id, None)

    def _link(self, transfer: Transfer, route: Route, destination: str, name: str, payload: Path) -> None:
        """A batch's link of a recorded name; a name taken meanwhile goes the
        one-file way, which picks the next free one and logs it."""
        temporary = self._temporary(route, destination, transfer)
        try:
            os.link(temporary, self.config.inbox(route, destination) / name)
        except FileExistsError:
            self._deliver(transfer, route, destination, "linking", name, payload)
            return
        temporary.unlink()

    def _take_from_outbox(self, transfer: Transfer, route: Route) -> bool:
        work = self._work(transfer.id)
        if not work.exists():
            archived = next(iter((self.config.archive_dir / route.id).glob(f"*/{transfer.id}.data")), None)
            if archived is not None:
                # Archived just before a crash: delivered; a new file of the
                # same name in the outbox is not this transfer's.
                transfer.size, transfer.sha256 = sha256_of(archived)
                self.journal.finish(transfer.id, transfer.size, transfer.sha256)
                return False
            source = Path(transfer.source_path)
            try:
                os.rename(source, work)
            except FileNotFoundError:
                self.journal.forget(transfer.id)  # the sender took it back before the claim
                return False
            # No fsync here: if a crash loses the rename, the file is back in
            # the outbox and the journal's 'claiming' entry renames it again.
            if route.completeness == "done-file":
                Path(str(source) + route.done_suffix).unlink(missing_ok=True)
        if transfer.id not in self._hashes:  # a retry does not read a large file again
            # What was renamed is whatever the outbox entry was by then: the
            # sender may have swapped the checked file for a link or a FIFO.
            # The work folder is the engine's own, so once it is checked
            # here, nobody can swap it again.
            try:
                self._hashes[transfer.id] = sha256_of(work)
            except NotAFile as exc:
                self._to_error(transfer, route, str(exc))
                return False
        transfer.size, transfer.sha256 = self._hashes[transfer.id]
        return True

    def _payload(self, transfer: Transfer, route: Route) -> Path | None:
        work = self._work(transfer.id)
        if not route.convert:
            return work
        try:
            return converted(work, route.convert)
        except ConversionError as exc:
            self._to_error(transfer, route, f"文字コード変換（{route.convert}）ができません: {exc}")
            return None

    def _temporary(self, route: Route, destination: str, transfer: Transfer) -> Path:
        return self.config.inbox(route, destination) / f".filelink-{transfer.id}.tmp"

    def _deliver(
        self,
        transfer: Transfer,
        route: Route,
        destination: str,
        state: str,
        final_name: str | None,
        payload: Path,
    ) -> None:
        inbox = self.config.inbox(route, destination)
        temporary = self._temporary(route, destination, transfer)
        started = time.monotonic()
        if state == "linking" and final_name is not None:
            if not temporary.exists():
                # The link happened and the temporary name went before the
                # crash; the receiver may even have taken the file already.
                self._delivered(transfer, route, destination, final_name, started, "recovered")
                return
            final = inbox / final_name
            if final.exists() and os.path.samefile(temporary, final):
                temporary.unlink()
                fsync_dir(inbox)
                self._delivered(transfer, route, destination, final_name, started, "recovered")
                return
        else:
            temporary.unlink(missing_ok=True)  # a partial copy from before a crash
            if route.on_conflict == "error" and (inbox / transfer.name).exists():
                raise DeliveryRefused.name_taken(destination, transfer.name)
            copy_file(payload, temporary)
        while True:
            name = free_name(inbox, transfer.name, route.on_conflict)
            self.journal.linking(transfer.id, destination, name)
            try:
                os.link(temporary, inbox / name)
                break
            except FileExistsError:
                if route.on_conflict == "error":
                    # Back to pending before the temporary name goes: a
                    # 'linking' entry without it would count as delivered.
                    self.journal.reset_delivery(transfer.id, destination)
                    temporary.unlink()
                    raise DeliveryRefused.name_taken(destination, name) from None
        temporary.unlink()
        fsync_dir(inbox)
        self._delivered(transfer, route, destination, name, started)

    def _delivered(
        self,
        transfer: Transfer,
        route: Route,
        destination: str,
        final_name: str,
        started: float,
        result: str = "delivered",
    ) -> None:
        # The journal needs no entry here: 'linking' with the temporary name
        # gone already means delivered; the transfer's 'done' records it.
        self.transfer_log.write(
            result=result,
            route=route.id,
            transfer=transfer.id,
            file=transfer.name,
            source=route.source,
            destination=destination,
            delivered_as=final_name,
            size=transfer.size,
            sha256=transfer.sha256,
            seconds=round(time.monotonic() - started, 3),
        )

    def _archive(self, transfer: Transfer, route: Route) -> None:
        self._move_to_archive(transfer, route)
        self.journal.finish(transfer.id, transfer.size or 0, transfer.sha256 or "")
        self._hashes.pop(transfer.id, None)

    def _move_to_archive(self, transfer: Transfer, route: Route) -> None:
        folder = self.config.archive_dir / route.id / dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        work = self._work(transfer.id)
        if work.exists():
            os.rename(work, folder / f"{transfer.id}.data")
        self._work(transfer.id, ".out").unlink(missing_ok=True)

    def _to_error(self, transfer: Transfer, route: Route, reason: str) -> None:
        """Refuse a claimed file: it goes to the sender's error folder."""
        move_to_error(
            self.config, self._work(transfer.id), f"{transfer.id}-{transfer.name}", route, reason, transfer.name
        )
        self.journal.set_state(transfer.id, "error", reason)
        self._hashes.pop(transfer.id, None)
        self.transfer_log.write(
            result="error", route=route.id, transfer=transfer.id, file=transfer.name, source=route.source, reason=reason
        )
        log.warning("%s: %s refused: %s", route.id, transfer.name, reason)

    def _retry_later(self, transfer: Transfer, route: Route, exc: BaseException) -> None:
        current = self.journal.get(transfer.id)
        attempts = (current.attempts if current else transfer.attempts) + 1
        delay = min(2.0**attempts, self.config.max_attempts_backoff)
        retry_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        self.journal.failed_attempt(transfer.id, str(exc), retry_at)
        self.transfer_log.write(
            result="retry",
            route=route.id,
            transfer=transfer.id,
            file=transfer.name,
            source=route.source,
            attempt=attempts,
            retry_in=delay,
            reason=str(exc),
        )
        log.warning(
            "%s: %s not delivered yet (attempt %d, retry in %.0fs): %s", route.id, transfer.name, attempts, delay, exc
        )

    def _prune_archive(self) -> None:
        if time.monotonic() - self._last_prune < 3600:
            return
        self._last_prune = time.monotonic()
        prune_archive(self.config)

    # -- status --------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        return route_status(self.config, self.journal)

    def write_status(self) -> None:
        """status.json for other programs (the mailintake status page)."""
        write_status(self.config, self.status())
