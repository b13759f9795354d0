"""Browser sessions, CSRF tokens and login throttling.

A session is a random token in an HttpOnly cookie; the database keeps its
SHA-256, the user and the session's CSRF token. Whatever proves who the user
is (the password form, SAML, OpenID Connect, the groupware's hand-off) ends
in :meth:`SessionManager.start` with a ``method`` naming it; nothing else in
the web UI depends on how the user signed in, but sign-out, which also ends
the IdP's session where the protocol has one (``signout_hint``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from ..errors import TooManyAttempts
from ..models import SignInAttempt, WebSession, utcnow
from .accounts import AccountService, UserInfo

SESSION_COOKIE = "mailintake_session"
# Before sign-in the login form is protected by a double-submit cookie.
LOGIN_CSRF_COOKIE = "mailintake_login_csrf"
CSRF_FIELD = "csrf_token"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_match(expected: str, given: str | None) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True)
class ActiveSession:
    user: UserInfo
    csrf_token: str
    method: str
    signout_hint: str = ""


class SessionManager:
    def __init__(self, engine: Engine, accounts: AccountService, lifetime: dt.timedelta) -> None:
        self.engine = engine
        self.accounts = accounts
        self.lifetime = lifetime

    def start(self, user: UserInfo, *, method: str, client_address: str = "", signout_hint: str = "") -> str:
        """A new session for ``user``; returns the cookie value."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with Session(self.engine) as session, session.begin():
            session.execute(delete(WebSession).where(WebSession.expires_at < now))
            session.add(
                WebSession(
                    token_sha256=_digest(token),
                    user_id=user.id,
                    csrf_token=secrets.token_urlsafe(32),
                    method=method,
                    client_address=client_address[:64],
                    signout_hint=signout_hint,
                    created_at=now,
                    expires_at=now + self.lifetime,
                )
            )
        return token

    def resolve(self, token: str | None) -> ActiveSession | None:
        if not token:
            return None
        with Session(self.engine) as session:
            row = session.scalar(select(WebSession).where(WebSession.token_sha256 == _digest(token)))
            if row is None or row.expires_at < utcnow():
                return None
            user = self.accounts.get(row.user_id)
            if user is None or not user.enabled:
                return None
            return ActiveSession(user, row.csrf_token, row.method, row.signout_hint)

    def end(self, token: str | None) -> None:
        if not token:
            return
        with Session(self.engine) as session, session.begin():
            session.execute(delete(WebSession).where(WebSession.token_sha256 == _digest(token)))


class LoginThrottle:
    """At most ``limit`` sign-in attempts that did not succeed per user name,
    and ``client_limit`` per client address, within ``window`` seconds.

    An attempt is counted when it is admitted, before its password is
    checked, under a lock (this process's, and on PostgreSQL a transaction
    lock per counted key, so other web processes and nodes queue too):
    parallel requests cannot slip past the limit while earlier checks are
    still running. A success takes its own count back (and clears the user
    name's). The counts live in the database, shared by every node. The
    client limit is higher than the user's so that one mistyped password
    does not lock out an office behind one proxy.
    """

    def __init__(self, engine: Engine, limit: int = 5, window: float = 300.0, client_limit: int = 30) -> None:
        self.engine = engine
        self.limit = limit
        self.client_limit = client_limit
        self.window = window
        self._lock = threading.Lock()

    def _keys(self, username: str, client: str) -> tuple[tuple[str, int], tuple[str, int]]:
        return (f"u:{username.lower()}"[:400], self.limit), (f"c:{client}"[:400], self.client_limit)

    def _wait(self, session: Session, key: str, limit: int, now: dt.datetime) -> float:
        """Seconds until ``key`` may try again (0: below its limit)."""
        recent = SignInAttempt.key == key, SignInAttempt.at > now - dt.timedelta(seconds=self.window)
        count = session.scalar(select(func.count()).select_from(SignInAttempt).where(*recent)) or 0
        if count < limit:
            return 0.0
        oldest = session.scalar(select(func.min(SignInAttempt.at)).where(*recent))
        return self.window - (now - oldest).total_seconds() if oldest is not None else 0.0

    def admit(self, username: str, client: str) -> float:
        """Count an attempt and return 0, or return the seconds to wait
        (nothing counted) when a limit is reached."""
        now = utcnow()
        keys = self._keys(username, client)
        with self._lock, Session(self.engine) as session, session.begin():
            if self.engine.dialect.name == "postgresql":
                for key in sorted(k for k, _ in keys):
                    session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))
            session.execute(
                delete(SignInAttempt).where(
                    SignInAttempt.key.in_([k for k, _ in keys]),
                    SignInAttempt.at <= now - dt.timedelta(seconds=self.window),
                )
            )
            waits = [wait for key, limit in keys if (wait := self._wait(session, key, limit, now)) > 0]
            if waits:
                return max(waits)
            session.add_all([SignInAttempt(key=key, at=now) for key, _ in keys])
            return 0.0

    def _take_back(self, session: Session, key: str, every: bool = False) -> None:
        """Remove the newest attempt counted for ``key`` (or all of them)."""
        if every:
            session.execute(delete(SignInAttempt).where(SignInAttempt.key == key))
            return
        newest = session.scalar(
            select(SignInAttempt.id).where(SignInAttempt.key == key).order_by(SignInAttempt.at.desc()).limit(1)
        )
        if newest is not None:
            session.execute(delete(SignInAttempt).where(SignInAttempt.id == newest))

    def withdraw(self, username: str, client: str) -> None:
        """Un-count an admitted attempt whose password was never checked."""
        with Session(self.engine) as session, session.begin():
            for key, _ in self._keys(username, client):
                self._take_back(session, key)

    def locked_for(self, username: str) -> float:
        """Seconds until the account may try again (0: not locked)."""
        (key, limit), _ = self._keys(username, "")
        with Session(self.engine) as session:
            return self._wait(session, key, limit, utcnow())

    def unlock(self, username: str) -> None:
        """A system administrator lets the account try again at once."""
        (key, _), _ = self._keys(username, "")
        with Session(self.engine) as session, session.begin():
            self._take_back(session, key, every=True)

    def succeeded(self, username: str, client: str) -> None:
        (user_key, _), (client_key, _) = self._keys(username, client)
        with Session(self.engine) as session, session.begin():
            self._take_back(session, user_key, every=True)
            self._take_back(session, client_key)


class PasswordChecks:
    """At most ``slots`` password checks at once. Each Argon2id check takes
    a core and 64 MiB for a few hundred milliseconds; without a cap, a burst
    of sign-ins (for any user names, no account needed) takes the server's
    memory. A request that cannot get a slot within ``wait`` seconds is
    answered 429 with a retry time instead of queueing without bound."""

    def __init__(self, slots: int | None = None, wait: float = 3.0) -> None:
        self.slots = slots or max(1, os.cpu_count() or 1)
        self.wait = wait
        self._semaphore = asyncio.Semaphore(self.slots)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(self._semaphore.acquire(), self.wait)
        except TimeoutError as exc:
            raise TooManyAttempts(
                "ただいまログインが混み合っています。数秒後にもう一度お試しください。", self.wait
            ) from exc
        try:
            yield
        finally:
            self._semaphore.release()
