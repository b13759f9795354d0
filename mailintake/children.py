"""Child processes that only their supervisor stops (the ingest worker, the
further web processes): a plain ``python -m module fd...``, given its
settings on standard input, that ignores terminal signals, so that Ctrl-C
or a SIGTERM to the whole process group reaches only the supervisor, which
stops each child at a safe point."""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys

from .config import Settings

TERMINAL_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def spawn(module: str, fds: tuple[int, ...], settings: Settings) -> subprocess.Popen[bytes]:
    """Start ``python -m module *fds`` with ``fds`` passed and ``settings`` on its stdin."""
    # Blocked across fork and exec, so a signal to the process group during
    # the child's start-up cannot kill it before it ignores them.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINAL_SIGNALS)
    try:
        process = subprocess.Popen([sys.executable, "-m", module, *map(str, fds)], stdin=subprocess.PIPE, pass_fds=fds)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    assert process.stdin is not None
    with process.stdin:
        try:
            pickle.dump(settings, process.stdin)
        except BrokenPipeError:
            pass  # it died at once: its supervisor sees to it
    return process


def start_as_child() -> Settings:
    """First thing in a child: ignore terminal signals (they were blocked
    since the fork), then read the settings."""
    for signum in TERMINAL_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, TERMINAL_SIGNALS)
    settings: Settings = pickle.load(sys.stdin.buffer)
    return settings
