"""inotify (through watchdog) as a hint that an outbox changed. Events can
be lost (queue overflow, changes made on another host of a network share),
so the engine rescans periodically whatever the watcher says."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)


class _Wake(FileSystemEventHandler):
    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.wake.set()


class _StopRace(logging.Filter):
    """watchdog logs an error when an inotify event is read while its
    thread is being stopped: at our stop that is expected (the files stay
    in the outbox for the next scan), not a fault for the journal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


_INOTIFY_LOG = logging.getLogger("watchdog.observers.inotify")


class OutboxWatcher:
    def __init__(self, folders: list[Path], wake: threading.Event) -> None:
        self.observer: Any = Observer()
        handler = _Wake(wake)
        for folder in folders:
            if folder.is_dir():
                self.observer.schedule(handler, str(folder), recursive=False)
            else:
                log.warning("outbox %s does not exist (run filelink init)", folder)

    def start(self) -> None:
        self.observer.start()

    def stop(self) -> None:
        stopping = _StopRace()
        _INOTIFY_LOG.addFilter(stopping)
        try:
            self.observer.stop()
            self.observer.join(10)
        finally:
            _INOTIFY_LOG.removeFilter(stopping)
