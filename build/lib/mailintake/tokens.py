"""API tokens for the document system and tooling.

A token is shown once, when created; only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .errors import BadRequest, NotFound, Unauthorized
from .models import ApiToken

TOKEN_PREFIX = "mit_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise BadRequest("a token needs a name")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with Session(self.engine) as session:
            if session.scalar(select(ApiToken).where(ApiToken.name == name)):
                raise BadRequest(f"a token named {name!r} exists already")
            session.add(ApiToken(name=name, token_sha256=_digest(token)))
            session.commit()
        return token

    def revoke(self, name: str) -> None:
        with Session(self.engine) as session:
            row = session.scalar(select(ApiToken).where(ApiToken.name == name))
            if row is None:
                raise NotFound(f"no token named {name!r}")
            row.revoked = True
            session.commit()

    def list(self) -> list[tuple[str, bool]]:
        with Session(self.engine) as session:
            return [(t.name, t.revoked) for t in session.scalars(select(ApiToken).order_by(ApiToken.name))]

    def authenticate(self, authorization: str | None) -> str:
        """Return the token's name for a valid ``Authorization: Bearer`` value."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token")
        with Session(self.engine) as session:
            row = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(token.strip())))
            if row is None or row.revoked:
                raise Unauthorized("invalid token")
            return row.name
