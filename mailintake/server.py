"""Running the service: the SMTP relay with its ingester, the web/API server,
or both in one process (``mailintake serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from .config import Settings
from .handoff import push
from .intake.smtp import SmtpRelay
from .intake.worker import IngestSupervisor
from .schema import ensure_current
from .services import Services, build_services
from .web.app import create_app
from .web_siblings import WebSiblings

log = logging.getLogger(__name__)


# How long a message being received at shutdown may take to reach its 250,
# and how long the web server waits for requests in progress. Together with
# the ingester's stop they keep a stop well under systemd's 10 s default.
SHUTDOWN_GRACE_SECONDS = 4.0
# Page threads of the web process (anyio's default is 40).
WEB_THREADS = 16


class _WebServer(uvicorn.Server):
    """uvicorn without its own signal handling: run_service owns the
    signals, so that one SIGTERM stops relay, ingester and web together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_service(
    settings: Settings,
    *,
    smtp: bool = True,
    web: bool = True,
    on_ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    listening: socket.socket | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or until ``stop`` is set, when given).

    The relay starts even when the database is down: it needs only the
    spool and the address snapshot. A database at another schema revision
    is refused (:class:`~.schema.SchemaMismatch`) before anything listens.
    ``listening``: the web socket of a sibling process (see web_siblings).
    """
    stop = stop or _stop_on_signals()
    services = build_services(settings, create_tables=False)
    try:
        _prepare_database(services)
    except BaseException:
        services.close()
        raise

    ingester: IngestSupervisor | None = None
    relay: SmtpRelay | None = None
    web_task: asyncio.Task[None] | None = None
    server: uvicorn.Server | None = None
    pusher: tuple[threading.Thread, threading.Event] | None = None
    siblings: WebSiblings | None = None
    try:
        if smtp:
            ingester = IngestSupervisor(settings)
            relay = SmtpRelay(settings, services.spool, ingester.wake)
            await relay.start()  # recovers the spool before anything ingests it
            ingester.start()
            _announce(on_ready, f"SMTP relay on {relay.address_text}")
        if web and listening is None and not smtp and settings.web_processes > 1:
            siblings = WebSiblings.start(settings)
            listening = siblings.listening
        if web:
            server, web_task = await _start_web(services, listening)
            _announce(on_ready, f"web/API on http://{settings.http_host}:{settings.http_port}/")
        if siblings is not None:
            _announce(on_ready, f"{settings.web_processes} web processes")
        if web and settings.handoff_push_dir is not None:
            # One pusher per installation: the web process (mailintake web or serve).
            pusher = push.start(services.engine, services.blobs, services.originals, settings.handoff_push_dir)
            _announce(on_ready, f"push mode into {settings.handoff_push_dir}")
        _announce(on_ready, f"data in {settings.data_dir}")

        stop_task = asyncio.create_task(stop.wait())
        waiting: set[asyncio.Future[Any]] = {stop_task}
        if web_task is not None:
            waiting.add(web_task)
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
    finally:
        if pusher is not None:
            pusher[1].set()  # it stops between two packages
        if siblings is not None:
            siblings.request_stop()  # they finish their requests while this one does
        await _shut_down(server, web_task, relay, ingester)
        if siblings is not None:
            await asyncio.to_thread(siblings.wait, SHUTDOWN_GRACE_SECONDS + 2)
        if pusher is not None:
            await asyncio.to_thread(pusher[0].join, SHUTDOWN_GRACE_SECONDS)
        services.close()
    log.info("stopped")


async def _start_web(
    services: Services, listening: socket.socket | None = None
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """The web/API server, listening when this returns (a bind error raises)."""
    settings = services.settings
    # Pages run in threads, each holding a database connection while it
    # works: no more threads than the pool has connections, so a burst of
    # clerks queues for a thread instead of timing out on the pool.
    anyio.to_thread.current_default_thread_limiter().total_tokens = WEB_THREADS
    config = uvicorn.Config(
        create_app(services),
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        # Our logging configuration: one format, each line once.
        log_config=None,
        lifespan="off",
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or "",
        proxy_headers=bool(settings.trusted_proxies),
    )
    server = _WebServer(config)
    web_task = asyncio.create_task(server.serve(sockets=[listening] if listening is not None else None))
    while not server.started and not web_task.done():
        await asyncio.sleep(0.02)
    if web_task.done():
        web_task.result()  # raises the bind error
    return server, web_task


def _stop_on_signals() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_signal, sig, stop)
    return stop


def _on_signal(signum: int, stop: asyncio.Event) -> None:
    if not stop.is_set():
        log.info("%s received; stopping", signal.Signals(signum).name)
    stop.set()


async def _shut_down(
    server: uvicorn.Server | None,
    web_task: asyncio.Task[None] | None,
    relay: SmtpRelay | None,
    ingester: IngestSupervisor | None,
) -> None:
    """Stop taking work everywhere at once, then let each part finish: the
    relay its messages in progress, the web server its requests, the
    ingester its batch."""
    if server is not None:
        server.should_exit = True
    ingester_stopped = asyncio.create_task(asyncio.to_thread(ingester.stop)) if ingester is not None else None
    if relay is not None:
        await relay.drain(SHUTDOWN_GRACE_SECONDS)
        await relay.stop()
    if web_task is not None:
        await asyncio.gather(web_task, return_exceptions=True)
    if ingester_stopped is not None:
        await ingester_stopped


def _prepare_database(services: Services) -> None:
    try:
        ensure_current(services.engine)
    except SQLAlchemyError as exc:
        # The ingester creates it once the database is back.
        log.warning("database unavailable at start-up (%s); mail is spooled meanwhile", type(exc).__name__)
        return
    if not services.settings.address_snapshot.exists():
        services.addresses.write_snapshot()


def _announce(on_ready: Callable[[str], None] | None, text: str) -> None:
    log.info("%s", text)
    if on_ready is not None:
        on_ready(text)
