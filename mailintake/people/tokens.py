"""API tokens for the document system and tooling.

A token is shown once, when created; only its SHA-256 is stored. Each token
carries scopes (what it may do) and, optionally, the sections whose mail and
registrations it may see.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..errors import BadRequest, Forbidden, NotFound, Unauthorized
from ..models import ApiToken, Section

TOKEN_PREFIX = "mit_"
SCOPES = ("messages:read", "registrations:read", "registrations:ack")
DEFAULT_SCOPES = ("messages:read",)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    name: str
    scopes: frozenset[str]
    # None: every section.
    section_ids: frozenset[int] | None = None
    section_names: frozenset[str] | None = None
    revoked: bool = False

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this token lacks the scope {scope}")


class TokenService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str, scopes: Iterable[str] = DEFAULT_SCOPES, sections: Sequence[str] | None = None) -> str:
        name = name.strip()
        if not name:
            raise BadRequest("a token needs a name")
        chosen = sorted(set(scopes))
        unknown = [s for s in chosen if s not in SCOPES]
        if unknown or not chosen:
            raise BadRequest(f"scopes must be among {', '.join(SCOPES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with Session(self.engine) as session, session.begin():
            if session.scalar(select(ApiToken).where(ApiToken.name == name)):
                raise BadRequest(f"a token named {name!r} exists already")
            section_ids = _section_ids(session, sections) if sections else None
            session.add(
                ApiToken(name=name, token_sha256=_digest(token), scopes=" ".join(chosen), section_ids=section_ids)
            )
        return token

    def revoke(self, name: str) -> None:
        with Session(self.engine) as session:
            row = session.scalar(select(ApiToken).where(ApiToken.name == name))
            if row is None:
                raise NotFound(f"no token named {name!r}")
            row.revoked = True
            session.commit()

    def list(self) -> list[TokenInfo]:
        with Session(self.engine) as session:
            return [_info(session, t) for t in session.scalars(select(ApiToken).order_by(ApiToken.name))]

    def authenticate(self, authorization: str | None) -> TokenInfo:
        """The token of a valid ``Authorization: Bearer`` value."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token")
        with Session(self.engine) as session:
            row = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(token.strip())))
            if row is None or row.revoked:
                raise Unauthorized("invalid token")
            return _info(session, row)


def _section_ids(session: Session, names: Sequence[str]) -> list[int]:
    ids = []
    for name in names:
        section_id = session.scalar(select(Section.id).where(Section.name == name.strip()))
        if section_id is None:
            raise BadRequest(f"no section named {name!r}")
        ids.append(section_id)
    return sorted(set(ids))


def _info(session: Session, row: ApiToken) -> TokenInfo:
    names = None
    if row.section_ids is not None:
        names = frozenset(session.scalars(select(Section.name).where(Section.id.in_(row.section_ids))))
    return TokenInfo(
        name=row.name,
        scopes=frozenset(row.scopes.split()),
        section_ids=frozenset(row.section_ids) if row.section_ids is not None else None,
        section_names=names,
        revoked=row.revoked,
    )
