"""The groupware's hand-off (desknet's NEO portal menu → mailintake).

The groupware's own parameter and cookie authentication put the user's ID
in a URL parameter or a cookie with nothing that proves it. Here a hand-off
is taken only from the configured client networks, and only when it
verifies: a value signed with a secret shared with whatever makes the menu
link (the groupware's link settings or a small portal gateway),

    v1.<user id, base64url>.<issued at, Unix seconds>.<nonce>.<HMAC-SHA256, base64url>

valid for ``max_age`` seconds and once; or (``api``) the clerk's own access
key of the groupware, which mailintake hands to the groupware's common API
(``X-Desknets-Auth``; JSON ``status: ok|ng``) to learn whose key it is. The
plain, unsigned ID is taken only in the explicit ``insecure`` mode, which
the admin pages flag and the audit log marks on every such sign-in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..config import address_in
from .once import OnceStore
from .signin import ExternalIdentity, SignInRefused

VERSION = "v1"
CLOCK_SKEW = 30  # seconds a link may seem to come from the future


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, signed_part: str) -> str:
    return _b64(hmac.new(secret, signed_part.encode(), hashlib.sha256).digest())


def sign_handoff(secret: bytes, user_id: str, issued_at: int | None = None, nonce: str | None = None) -> str:
    """A hand-off value for ``user_id`` (what the portal gateway makes)."""
    issued = int(time.time()) if issued_at is None else issued_at
    body = f"{VERSION}.{_b64(user_id.encode())}.{issued}.{nonce or secrets.token_urlsafe(16)}"
    return f"{body}.{_mac(secret, body)}"


@dataclass(frozen=True)
class GroupwareApi:
    """The groupware's common API, asked who an access key belongs to."""

    url: str
    action: str
    user_field: str  # dotted path in the answer, e.g. "loginid" or "user.loginid"
    timeout: float = 10.0

    def login_id(self, access_key: str) -> str:
        import requests  # only where this mode is on (memory of every process)

        try:
            response = requests.post(
                self.url, data={"action": self.action}, headers={"X-Desknets-Auth": access_key}, timeout=self.timeout
            )
            answer = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise SignInRefused(
                "グループウェアに問い合わせできませんでした。しばらくしてからポータルのメニューから開き直してください。"
                "続く場合はシステム管理者に連絡してください。",
                f"groupware API unreachable: {exc}",
            ) from exc
        if not isinstance(answer, dict) or answer.get("status") != "ok":
            detail = answer.get("errormessage", "") if isinstance(answer, dict) else ""
            errorno = answer.get("errorno", "") if isinstance(answer, dict) else ""
            raise _refused(f"groupware API answered ng ({errorno} {detail})".strip())
        login = _field(answer, self.user_field)
        if not login:
            raise _refused(f"groupware API answer has no {self.user_field}")
        return login


def _field(answer: dict[str, Any], path: str) -> str:
    value: Any = answer
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return str(value) if isinstance(value, (str, int)) else ""


@dataclass(frozen=True)
class GroupwareHandoff:
    mode: str  # "signed", "api" or "insecure"
    secret: bytes
    networks: tuple
    max_age: int
    once: OnceStore
    api: GroupwareApi | None = None

    def identify(self, value: str | None, client: str) -> ExternalIdentity:
        if not address_in(client, self.networks):
            raise SignInRefused(
                "この端末からはグループウェア経由のログインを受け付けていません。"
                "庁内の端末から開くか、ログイン画面からログインしてください。",
                f"client {client} outside groupware_networks",
            )
        if not value:
            raise SignInRefused(
                "グループウェアからのログイン情報が届きませんでした。ポータルのメニューから開き直してください。",
                "no hand-off value",
            )
        if self.mode == "insecure":
            return ExternalIdentity("groupware_insecure", value.strip())
        if self.mode == "api":
            assert self.api is not None
            return ExternalIdentity("groupware", self.api.login_id(value.strip()))
        return ExternalIdentity("groupware", self._verified_user(value.strip()))

    def _verified_user(self, value: str) -> str:
        parts = value.split(".")
        if len(parts) != 5 or parts[0] != VERSION:
            raise _refused("not a signed hand-off")
        _, user_part, issued_text, nonce, mac = parts
        if not hmac.compare_digest(mac.encode(), _mac(self.secret, ".".join(parts[:4])).encode()):
            raise _refused("signature does not verify")
        try:
            user_id, issued = _unb64(user_part).decode(), int(issued_text)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise _refused("unreadable signed hand-off") from None
        age = time.time() - issued
        if age > self.max_age or age < -CLOCK_SKEW:
            raise SignInRefused(
                "グループウェアからのログイン情報の有効期限が切れています。ポータルのメニューから開き直してください。",
                f"hand-off issued {int(age)} s ago (max_age {self.max_age})",
                user_id,
            )
        lifetime = dt.timedelta(seconds=self.max_age + 2 * CLOCK_SKEW)
        if not self.once.claim("groupware-nonce", nonce, lifetime):
            raise SignInRefused(
                "このログイン用のリンクは使用済みです。ポータルのメニューから開き直してください。",
                "hand-off replayed",
                user_id,
            )
        return user_id


def _refused(reason: str) -> SignInRefused:
    return SignInRefused(
        "グループウェアからのログイン情報を確認できませんでした。ポータルのメニューから開き直してください。"
        "続く場合はシステム管理者に連絡してください。",
        reason,
    )
