"""Logging for every process of the service: one format, one line per event."""

from __future__ import annotations

import logging

from .config import Settings


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiosmtpd logs every command at INFO; our own log says what matters.
    if settings.log_level != "DEBUG":
        logging.getLogger("mail.log").setLevel(logging.WARNING)
