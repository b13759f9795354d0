"""Wiring: the objects one process needs, built from settings in one place."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from .addresses import AddressService
from .blobs import BlobStore, OriginalStore
from .config import Settings
from .db import create_schema, make_engine
from .messages import MessageStore
from .spool import Spool
from .tokens import TokenService


@dataclass
class Services:
    settings: Settings
    engine: Engine
    spool: Spool
    blobs: BlobStore
    originals: OriginalStore
    addresses: AddressService
    tokens: TokenService
    messages: MessageStore

    def close(self) -> None:
        self.engine.dispose()


def build_services(settings: Settings, create_tables: bool = True) -> Services:
    """``create_tables=False`` lets the relay start while the database is down."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings)
    if create_tables:
        create_schema(engine)
    spool = Spool(settings.spool_dir)
    spool.ensure()
    return Services(
        settings=settings,
        engine=engine,
        spool=spool,
        blobs=BlobStore(settings.blob_dir),
        originals=OriginalStore(settings.originals_dir),
        addresses=AddressService(engine, settings.address_snapshot),
        tokens=TokenService(engine),
        messages=MessageStore(engine),
    )
