"""The further processes of ``mailintake web`` when ``web_processes`` is
more than one.

A web process runs its pages in threads that share one interpreter lock,
so however many clerks wait it uses about one core. Siblings that accept
on the same listening socket use the others. The first process binds the
socket, starts the siblings and supervises them: a sibling that dies is
started again. Each sibling is a plain ``python -m mailintake.web_siblings``
given the socket and the read end of a stop pipe; it ignores terminal
signals and stops (finishing its requests in progress) when the pipe turns
readable: a byte from the first process, or end of file when that process
is gone, even after ``kill -9``. So Ctrl-C, a SIGTERM to the first process
or to the whole group stop all of them, and nothing is left behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time

import uvicorn

from .children import spawn, start_as_child
from .config import Settings

log = logging.getLogger(__name__)

# Seconds a sibling may take to start before a second death counts as a loop.
_RESTART_PAUSE = 1.0


class WebSiblings:
    def __init__(self, settings: Settings, listening: socket.socket) -> None:
        self.settings = settings
        self.listening = listening
        self._stop_r, self._stop_w = os.pipe()
        self._processes: list[subprocess.Popen[bytes]] = []
        self._stopping = False
        self._watching: asyncio.Task[None] | None = None
        self.restarts = 0

    @classmethod
    def start(cls, settings: Settings) -> WebSiblings:
        """Bind the web port (a bind error raises), start the others on it
        and watch them; call from the first process's event loop."""
        # Binding needs no app: each process gives its own to uvicorn.
        listening = uvicorn.Config(app="", host=settings.http_host, port=settings.http_port).bind_socket()
        siblings = cls(settings, listening)
        siblings._processes = [siblings._spawn() for _ in range(settings.web_processes - 1)]
        siblings._watching = asyncio.create_task(siblings._watch())
        return siblings

    def _spawn(self) -> subprocess.Popen[bytes]:
        # If it dies at once, _watch() starts it again.
        return spawn("mailintake.web_siblings", (self.listening.fileno(), self._stop_r), self.settings)

    async def _watch(self) -> None:
        """Start again any sibling that died, until stopped."""
        while not self._stopping:
            await asyncio.sleep(_RESTART_PAUSE)
            for i, process in enumerate(self._processes):
                if process.poll() is not None and not self._stopping:
                    log.error("web process %d ended (exit %s); starting it again", process.pid, process.returncode)
                    self.restarts += 1
                    self._processes[i] = self._spawn()

    def request_stop(self) -> None:
        self._stopping = True
        if self._watching is not None:
            self._watching.cancel()
        try:
            os.write(self._stop_w, b"S")
        except OSError:
            pass

    def wait(self, timeout: float) -> None:
        """Wait for every sibling to finish its requests; kill any that do not."""
        deadline = time.monotonic() + timeout
        for process in self._processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("web process %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        self.listening.close()


def sibling_main(argv: list[str]) -> None:
    # Only the first process stops this one; and only it pushes to the document system.
    settings = start_as_child().replace(handoff_push_dir=None)
    listening = socket.socket(fileno=int(argv[0]))
    stop_fd = int(argv[1])

    from .logs import configure_logging

    configure_logging(settings)
    asyncio.run(_serve(settings, listening, stop_fd))


async def _serve(settings: Settings, listening: socket.socket, stop_fd: int) -> None:
    from .server import run_service

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stop() -> None:
        # Never read: the first process's one byte (or end of file) stays
        # readable for every sibling.
        loop.remove_reader(stop_fd)
        stop.set()

    loop.add_reader(stop_fd, on_stop)
    await run_service(settings, smtp=False, web=True, stop=stop, listening=listening)


if __name__ == "__main__":
    sibling_main(sys.argv[1:])
