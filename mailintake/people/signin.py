"""From an identity proven elsewhere (the IdP, the groupware) to a local
user. Whatever the method, it ends here: the external id is matched to a
user name case-insensitively; a user who is not there is refused, or made
at first sign-in from the personnel directory when the site allows it; a
disabled user stays out whatever the IdP says.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..errors import BadRequest, MailintakeError
from ..models import DirectoryPerson, Section, User, utcnow
from .accounts import UserInfo, normalize_username, user_info

METHOD_LABELS = {
    "password": "パスワード",
    "saml": "SAML",
    "oidc": "OpenID Connect",
    "groupware": "グループウェア連携",
    "groupware_insecure": "グループウェア連携（署名なし）",
}


class SignInRefused(MailintakeError):
    """A sign-in that did not prove who is signing in. ``str()`` is for the
    person at the browser; ``reason`` is for the audit log."""

    http_status = 403

    def __init__(self, message: str, reason: str, external_id: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.external_id = external_id


@dataclass(frozen=True)
class ExternalIdentity:
    method: str
    external_id: str
    # What single sign-out needs later (kept on the session).
    signout_hint: str = ""


class SignIns:
    def __init__(self, engine: Engine, *, create_users: bool) -> None:
        self.engine = engine
        self.create_users = create_users

    def user_for(self, identity: ExternalIdentity) -> UserInfo:
        try:
            name = normalize_username(identity.external_id)
        except BadRequest as exc:
            raise SignInRefused(
                "認証基盤から届いたユーザーIDを読めませんでした。システム管理者に連絡してください。",
                "unreadable user id",
                identity.external_id,
            ) from exc
        with Session(self.engine) as session, session.begin():
            user = session.scalar(select(User).where(User.username == name))
            if user is None:
                user = self._first_sign_in(session, name, identity)
            if not user.enabled:
                raise SignInRefused(
                    "このユーザーIDは無効になっています。システム管理者に連絡してください。",
                    "user disabled",
                    identity.external_id,
                )
            user.last_login_at = utcnow()
            session.flush()
            return user_info(user)

    def _first_sign_in(self, session: Session, name: str, identity: ExternalIdentity) -> User:
        person = session.get(DirectoryPerson, name) if self.create_users else None
        if person is None:
            raise SignInRefused(
                f"ユーザーID「{identity.external_id}」はこのシステムに登録されていません。"
                "システム管理者に利用者登録を依頼してください。",
                "unknown user",
                identity.external_id,
            )
        codes = [c for c in person.section_codes.split(",") if c]
        sections = list(session.scalars(select(Section).where(Section.code.in_(codes)))) if codes else []
        user = User(
            username=name, display_name=person.name, password_hash="", role="clerk", enabled=True, sections=sections
        )
        session.add(user)
        return user
