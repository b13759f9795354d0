"""Wiring: the objects one process needs, built from settings in one place."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine

from .blobs import BlobStore, OriginalStore, open_stores
from .config import Settings
from .db import make_engine
from .intake.addresses import AddressService
from .intake.spool import Spool
from .people.accounts import AccountService
from .people.sessions import SessionManager
from .people.sso import SingleSignOn, build_sso
from .people.tokens import TokenService
from .records.audit import AuditLog
from .records.inbox import Inbox
from .records.messages import MessageStore
from .records.registry import Registry
from .schema import ensure_current


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
    accounts: AccountService
    sessions: SessionManager
    inbox: Inbox
    registry: Registry
    audit: AuditLog
    sso: SingleSignOn

    def close(self) -> None:
        self.engine.dispose()


def build_services(settings: Settings, create_tables: bool = True) -> Services:
    """``create_tables`` creates the schema in an empty database and refuses
    one at another revision (:class:`~.schema.SchemaMismatch`); ``False``
    lets the relay start while the database is down."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings)
    if create_tables:
        ensure_current(engine)
    spool = Spool(settings.spool_dir)
    spool.ensure()
    accounts = AccountService(engine)
    blobs, originals = open_stores(settings, engine)
    return Services(
        settings=settings,
        engine=engine,
        spool=spool,
        blobs=blobs,
        originals=originals,
        addresses=AddressService(engine, settings.address_snapshot),
        tokens=TokenService(engine),
        messages=MessageStore(engine),
        accounts=accounts,
        sessions=SessionManager(engine, accounts, dt.timedelta(hours=settings.session_hours)),
        inbox=Inbox(engine),
        registry=Registry(
            engine,
            number_format=settings.receipt_number_format,
            retention_periods=settings.retention_periods,
        ),
        audit=AuditLog(engine),
        sso=build_sso(settings, engine),
    )
