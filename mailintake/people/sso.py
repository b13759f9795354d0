"""The sign-in methods a site has configured besides the password form,
built once from the settings. Each is off unless its settings name it;
the protocol libraries are imported only when a method is on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from ..config import Settings, read_secret
from ..errors import ConfigError
from .groupware import GroupwareApi, GroupwareHandoff
from .once import OnceStore
from .signin import SignIns

if TYPE_CHECKING:
    from .oidc import OidcClient
    from .saml import SamlSP


@dataclass
class SingleSignOn:
    signins: SignIns
    once: OnceStore
    saml: SamlSP | None = None
    oidc: OidcClient | None = None
    groupware: GroupwareHandoff | None = None

    @property
    def insecure(self) -> bool:
        """The unsigned groupware hand-off is on: every admin page says so."""
        return self.groupware is not None and self.groupware.mode == "insecure"


def build_sso(settings: Settings, engine: Engine) -> SingleSignOn:
    once = OnceStore(engine)
    sso = SingleSignOn(SignIns(engine, create_users=settings.signin_create_users), once)
    if settings.saml_idp_metadata is not None:
        from .saml import SamlSP

        sso.saml = SamlSP(
            base_url=settings.public_url,
            entity_id=settings.saml_sp_entity_id,
            idp_metadata=settings.saml_idp_metadata,
            user_attribute=settings.saml_user_attribute,
            once=once,
            sp_cert=_pem(settings.saml_sp_cert, "saml_sp_cert"),
            sp_key=_pem(settings.saml_sp_key, "saml_sp_key"),
        )
    if settings.oidc_issuer:
        from .oidc import OidcClient

        secret_file = settings.oidc_client_secret_file
        sso.oidc = OidcClient(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=read_secret(secret_file, "oidc_client_secret_file") if secret_file else "",
            redirect_uri=settings.public_url + "/sso/oidc/callback",
            user_claim=settings.oidc_user_claim,
            scopes=settings.oidc_scopes,
            once=once,
        )
    if settings.groupware_handoff != "off":
        secret = b""
        if settings.groupware_handoff == "signed":
            assert settings.groupware_secret_file is not None  # checked with the settings
            secret = read_secret(settings.groupware_secret_file, "groupware_secret_file").encode()
            if len(secret) < 32:
                raise ConfigError("groupware_secret_file: the secret must be at least 32 characters")
        api = None
        if settings.groupware_handoff == "api":
            api = GroupwareApi(
                settings.groupware_api_url, settings.groupware_api_action, settings.groupware_api_user_field
            )
        sso.groupware = GroupwareHandoff(
            settings.groupware_handoff, secret, settings.groupware_networks, settings.groupware_max_age, once, api
        )
    return sso


def _pem(path: Path | None, setting: str) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{setting} {path}: {exc}") from exc
