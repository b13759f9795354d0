"""Browser sessions, CSRF tokens and login throttling.

A session is a random token in an HttpOnly cookie; the database keeps its
SHA-256, the user and the session's CSRF token. Whatever proves who the user
is (the password form today, the groupware's hand-off later) ends in
:meth:`SessionManager.start` with a ``method`` naming it; nothing else in
the web UI depends on how the user signed in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from .accounts import AccountService, UserInfo
from .models import WebSession, utcnow

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


class SessionManager:
    def __init__(self, engine: Engine, accounts: AccountService, lifetime: dt.timedelta) -> None:
        self.engine = engine
        self.accounts = accounts
        self.lifetime = lifetime

    def start(self, user: UserInfo, *, method: str, client_address: str = "") -> str:
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
            return ActiveSession(user, row.csrf_token, row.method)

    def end(self, token: str | None) -> None:
        if not token:
            return
        with Session(self.engine) as session, session.begin():
            session.execute(delete(WebSession).where(WebSession.token_sha256 == _digest(token)))


class LoginThrottle:
    """At most ``limit`` failed sign-ins per user name and per client address
    within ``window`` seconds; further attempts are refused until the oldest
    failure ages out. Kept in memory: one web process serves the UI."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and now - failures[0] > self.window:
            failures.popleft()
        return failures

    def retry_after(self, username: str, client: str) -> float:
        """Seconds until another attempt is allowed; 0 when allowed now."""
        now = time.monotonic()
        with self._lock:
            waits = [
                self.window - (now - failures[0])
                for failures in (self._recent(f"u:{username.lower()}", now), self._recent(f"c:{client}", now))
                if len(failures) >= self.limit
            ]
        return max(waits, default=0.0)

    def failed(self, username: str, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"u:{username.lower()}", f"c:{client}"):
                self._recent(key, now).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"u:{username.lower()}", None)
