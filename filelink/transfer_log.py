"""The transfer log: one JSON line per delivery, for the administrators."""

from __future__ import annotations

import datetime as dt
import json
import logging
from logging.handlers import RotatingFileHandler
from typing import Any

from .config import Config


class TransferLog:
    """One JSON line per delivery, rotated by size."""

    def __init__(self, config: Config) -> None:
        self.logger = logging.getLogger(f"filelink.transfers.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.handler = RotatingFileHandler(
            config.log_path, maxBytes=config.log_max_bytes, backupCount=config.log_backups, encoding="utf-8"
        )
        self.logger.addHandler(self.handler)

    def write(self, **fields: Any) -> None:
        fields.setdefault("time", dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"))
        self.logger.info(json.dumps(fields, ensure_ascii=False))
        self.handler.flush()

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()
