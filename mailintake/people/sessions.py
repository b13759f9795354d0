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
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from ..errors import TooManyAttempts
from ..models import WebSession, utcnow
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
    checked, all under one lock: parallel requests cannot slip past the
    limit while earlier checks are still running. A success takes its own
    count back (and clears the user name's). Kept in memory: one web
    process serves the UI. The client limit is higher than the user's so
    that one mistyped password does not lock out an office behind one proxy.
    """

    def __init__(self, limit: int = 5, window: float = 300.0, client_limit: int = 30) -> None:
        self.limit = limit
        self.client_limit = client_limit
        self.window = window
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        attempts = self._attempts.setdefault(key, deque())
        while attempts and now - attempts[0] > self.window:
            attempts.popleft()
        return attempts

    def _keys(self, username: str, client: str) -> tuple[tuple[str, int], tuple[str, int]]:
        return (f"u:{username.lower()}", self.limit), (f"c:{client}", self.client_limit)

    def admit(self, username: str, client: str) -> float:
        """Count an attempt and return 0, or return the seconds to wait
        (nothing counted) when a limit is reached."""
        now = time.monotonic()
        with self._lock:
            keys = self._keys(username, client)
            waits = [
                self.window - (now - attempts[0])
                for attempts, limit in ((self._recent(key, now), limit) for key, limit in keys)
                if len(attempts) >= limit
            ]
            if waits:
                return max(waits)
            for key, _ in keys:
                self._recent(key, now).append(now)
            return 0.0

    def withdraw(self, username: str, client: str) -> None:
        """Un-count an admitted attempt whose password was never checked."""
        with self._lock:
            for key, _ in self._keys(username, client):
                attempts = self._attempts.get(key)
                if attempts:
                    attempts.pop()

    def locked_for(self, username: str) -> float:
        """Seconds until the account may try again (0: not locked)."""
        now = time.monotonic()
        with self._lock:
            attempts = self._recent(f"u:{username.lower()}", now)
            return self.window - (now - attempts[0]) if len(attempts) >= self.limit else 0.0

    def unlock(self, username: str) -> None:
        """A system administrator lets the account try again at once."""
        with self._lock:
            self._attempts.pop(f"u:{username.lower()}", None)

    def succeeded(self, username: str, client: str) -> None:
        with self._lock:
            self._attempts.pop(f"u:{username.lower()}", None)
            attempts = self._attempts.get(f"c:{client}")
            if attempts:
                attempts.pop()


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
