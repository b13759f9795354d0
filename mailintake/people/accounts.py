"""Users, roles and sections (課).

Roles: ``clerk`` (係員) sees and registers its sections' mail;
``section_admin`` (所属管理者) may also cancel registrations and read its
sections' audit log; ``system_admin`` (システム管理者) sees every section and
manages users, sections, classifications and addresses.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from ..errors import BadRequest, NotFound
from ..models import ROLES, Section, User, WebSession, utcnow
from .sections import create_section, find_section

ROLE_LABELS = {"clerk": "係員", "section_admin": "所属管理者", "system_admin": "システム管理者"}
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so that a wrong user
    name takes as long as a wrong password. Made on first use: hashing is
    slow by design, and every command would pay for it at import."""
    return _hasher.hash("not a password of anyone")


@dataclass(frozen=True)
class SectionInfo:
    id: int
    name: str
    symbol: str


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    display_name: str
    role: str
    enabled: bool
    sections: tuple[SectionInfo, ...]
    has_password: bool = True
    last_login_at: dt.datetime | None = None

    @property
    def is_system_admin(self) -> bool:
        return self.role == "system_admin"

    @property
    def is_section_admin(self) -> bool:
        return self.role in ("section_admin", "system_admin")

    @property
    def role_label(self) -> str:
        return ROLE_LABELS[self.role]

    @property
    def section_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sections)

    @property
    def name(self) -> str:
        return self.display_name or self.username


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequest(f"パスワードは{MIN_PASSWORD_LENGTH}文字以上にしてください")
    return _hasher.hash(password)


def normalize_username(username: str) -> str:
    value = username.strip().lower()
    if not value or len(value) > 100 or any(ch.isspace() for ch in value):
        raise BadRequest("ユーザーIDが正しくありません（空白を含まない100文字以内）")
    return value


def user_info(user: User) -> UserInfo:
    return UserInfo(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        enabled=user.enabled,
        sections=tuple(SectionInfo(s.id, s.name, s.symbol) for s in user.sections),
        has_password=bool(user.password_hash),
        last_login_at=user.last_login_at,
    )


class AccountService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- sections --------------------------------------------------------------

    def sections(self) -> list[SectionInfo]:
        with Session(self.engine) as session:
            rows = session.scalars(select(Section).order_by(Section.name)).all()
            return [SectionInfo(s.id, s.name, s.symbol) for s in rows]

    def section_id(self, name: str) -> int | None:
        with Session(self.engine) as session:
            return session.scalar(select(Section.id).where(Section.name == name))

    def add_section(self, name: str, symbol: str = "") -> SectionInfo:
        """A new section; its 文書記号 defaults to the name without 課/室/係."""
        with Session(self.engine) as session, session.begin():
            row = create_section(session, name, symbol)
            return SectionInfo(row.id, row.name, row.symbol)

    def set_symbol(self, section_id: int, symbol: str) -> SectionInfo:
        symbol = symbol.strip()
        if not symbol or len(symbol) > 50:
            raise BadRequest("文書記号を50文字以内で入力してください")
        with Session(self.engine) as session, session.begin():
            row = session.get(Section, section_id)
            if row is None:
                raise NotFound(f"no section {section_id}")
            row.symbol = symbol
            return SectionInfo(row.id, row.name, row.symbol)

    # -- users -----------------------------------------------------------------

    def add_user(
        self,
        username: str,
        *,
        password: str | None,
        role: str = "clerk",
        sections: list[str] | None = None,
        display_name: str = "",
    ) -> UserInfo:
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}")
        name = normalize_username(username)
        hashed = hash_password(password) if password else ""
        with Session(self.engine) as session, session.begin():
            if session.scalar(select(User.id).where(User.username == name)) is not None:
                raise BadRequest(f"ユーザー {name} は既に登録されています")
            user = User(username=name, display_name=display_name.strip(), password_hash=hashed, role=role)
            user.sections = [find_section(session, s) for s in sections or [] if s.strip()]
            session.add(user)
            session.flush()
            return user_info(user)

    def update_user(
        self,
        username: str,
        *,
        role: str | None = None,
        sections: list[str] | None = None,
        display_name: str | None = None,
        enabled: bool | None = None,
        password: str | None = None,
    ) -> UserInfo:
        with Session(self.engine) as session, session.begin():
            user = self._get(session, username)
            if role is not None:
                if role not in ROLES:
                    raise BadRequest(f"role must be one of {', '.join(ROLES)}")
                user.role = role
            if sections is not None:
                user.sections = [find_section(session, s) for s in sections if s.strip()]
            if display_name is not None:
                user.display_name = display_name.strip()
            if enabled is not None:
                user.enabled = enabled
            if password:
                user.password_hash = hash_password(password)
            if password or enabled is False:
                # Whoever held the old password, or the account, is out at once.
                session.execute(delete(WebSession).where(WebSession.user_id == user.id))
            session.flush()
            return user_info(user)

    def list_users(self) -> list[UserInfo]:
        with Session(self.engine) as session:
            return [user_info(u) for u in session.scalars(select(User).order_by(User.username)).unique()]

    def get(self, user_id: int) -> UserInfo | None:
        with Session(self.engine) as session:
            user = session.get(User, user_id)
            return user_info(user) if user is not None else None

    def by_username(self, username: str) -> UserInfo:
        with Session(self.engine) as session:
            return user_info(self._get(session, username))

    def _get(self, session: Session, username: str) -> User:
        user = session.scalar(select(User).where(User.username == normalize_username(username)))
        if user is None:
            raise NotFound(f"ユーザー {username} はいません")
        return user

    def authenticate(self, username: str, password: str) -> UserInfo | None:
        """The enabled user with this password, or None. Takes the same time
        whether or not the user exists."""
        try:
            name = normalize_username(username)
        except BadRequest:
            name = ""
        with Session(self.engine) as session, session.begin():
            user = session.scalar(select(User).where(User.username == name)) if name else None
            stored = user.password_hash if user is not None and user.password_hash else _dummy_hash()
            try:
                _hasher.verify(stored, password)
            except (VerificationError, InvalidHashError):
                return None
            if user is None or not user.password_hash or not user.enabled:
                return None
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = _hasher.hash(password)
            user.last_login_at = utcnow()
            return user_info(user)
