"""Running the service: the SMTP relay with its ingester, the web/API server,
or both in one process (``mailintake serve``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from .app import create_app
from .config import Settings
from .ingest_process import IngestSupervisor
from .schema import ensure_current
from .services import Services, build_services
from .smtp import SmtpRelay

log = logging.getLogger(__name__)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiosmtpd logs every command at INFO; our own log says what matters.
    if settings.log_level != "DEBUG":
        logging.getLogger("mail.log").setLevel(logging.WARNING)


async def run_service(
    settings: Settings,
    *,
    smtp: bool = True,
    web: bool = True,
    on_ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or until ``stop`` is set, when given).

    The relay starts even when the database is down: it needs only the
    spool and the address snapshot. A database at another schema revision
    is refused (:class:`~.schema.SchemaMismatch`) before anything listens.
    """
    services = build_services(settings, create_tables=False)
    try:
        _prepare_database(services)
    except BaseException:
        services.close()
        raise
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

    ingester: IngestSupervisor | None = None
    relay: SmtpRelay | None = None
    web_task: asyncio.Task[None] | None = None
    server: uvicorn.Server | None = None
    try:
        if smtp:
            ingester = IngestSupervisor(settings)
            relay = SmtpRelay(settings, services.spool, ingester.wake)
            await relay.start()  # recovers the spool before anything ingests it
            ingester.start()
            _announce(on_ready, f"SMTP relay on {relay.address_text}")
        if web:
            config = uvicorn.Config(
                create_app(services),
                host=settings.http_host,
                port=settings.http_port,
                log_level=settings.log_level.lower(),
                lifespan="off",
                access_log=False,
            )
            server = uvicorn.Server(config)
            web_task = asyncio.create_task(server.serve())
            while not server.started and not web_task.done():
                await asyncio.sleep(0.02)
            if web_task.done():
                web_task.result()  # raises the bind error
            _announce(on_ready, f"web/API on http://{settings.http_host}:{settings.http_port}/")
        _announce(on_ready, f"data in {settings.data_dir}")

        stop_task = asyncio.create_task(stop.wait())
        waiting: set[asyncio.Future[Any]] = {stop_task}
        if web_task is not None:
            waiting.add(web_task)
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
    finally:
        if server is not None and web_task is not None:
            server.should_exit = True
            await asyncio.gather(web_task, return_exceptions=True)
        if relay is not None:
            await relay.stop()
        if ingester is not None:
            await asyncio.to_thread(ingester.stop)
        services.close()


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
