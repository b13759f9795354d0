"""Values a sign-in may use once, kept in the database so that every web
process (and every node) agrees: a request's state or ID is put when the
request leaves and taken when its answer comes back; an assertion ID or a
hand-off nonce is claimed when it is first seen."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import SignInOnce, utcnow


def _key(purpose: str, value: str) -> str:
    return hashlib.sha256(f"{purpose}\0{value}".encode()).hexdigest()


class OnceStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, purpose: str, value: str, data: str, lifetime: dt.timedelta) -> None:
        now = utcnow()
        with Session(self.engine) as session, session.begin():
            session.execute(delete(SignInOnce).where(SignInOnce.expires_at < now))
            session.add(
                SignInOnce(key_sha256=_key(purpose, value), purpose=purpose, data=data, expires_at=now + lifetime)
            )

    def take(self, purpose: str, value: str) -> str | None:
        """The data put under ``value``, once; None when it never was, was
        taken already or has expired."""
        with Session(self.engine) as session, session.begin():
            row = session.get(SignInOnce, _key(purpose, value), with_for_update=True)
            if row is None:
                return None
            session.delete(row)
            return row.data if row.expires_at >= utcnow() else None

    def claim(self, purpose: str, value: str, lifetime: dt.timedelta) -> bool:
        """True the first time ``value`` is claimed within ``lifetime``."""
        try:
            self.put(purpose, value, "", lifetime)
        except IntegrityError:
            return False
        return True
