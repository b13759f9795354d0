"""SAML 2.0 service provider (python3-saml), SP-initiated, HTTP-POST
assertions and HTTP-Redirect single logout.

python3-saml checks the XML signature (assertions must be signed), the
audience, recipient and destination, NotBefore/NotOnOrAfter and the
InResponseTo of our own request. What it leaves to the caller is kept in
the database here: every request ID is taken once when its answer comes
(an unsolicited or replayed response finds nothing), and every assertion
ID is claimed until it expires (the same assertion twice is refused).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lxml.etree
import xmlsec
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants as SAML
from onelogin.saml2.errors import OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from ..errors import ConfigError
from .once import OnceStore
from .signin import ExternalIdentity, SignInRefused

REQUEST_LIFETIME = dt.timedelta(minutes=10)


def check_libxml2() -> None:
    """lxml and xmlsec must be built on the same libxml2, or signatures fail
    in ways that look like bad input."""
    if xmlsec.get_libxml_version() != lxml.etree.LIBXML_VERSION:
        raise ConfigError(
            f"lxml (libxml2 {lxml.etree.LIBXML_VERSION}) and xmlsec (libxml2 {xmlsec.get_libxml_version()}) "
            "use different libxml2 builds; install the versions pinned in requirements.lock"
        )


@dataclass
class SamlSP:
    base_url: str
    entity_id: str
    idp_metadata: Path
    user_attribute: str
    once: OnceStore
    sp_cert: str = ""
    sp_key: str = ""

    def __post_init__(self) -> None:
        check_libxml2()
        try:
            idp = OneLogin_Saml2_IdPMetadataParser.parse(self.idp_metadata.read_text(encoding="utf-8"))
        except (OSError, ValueError, lxml.etree.XMLSyntaxError) as exc:
            raise ConfigError(f"saml_idp_metadata {self.idp_metadata}: {exc}") from exc
        if "idp" not in idp or not idp["idp"].get("x509cert") and not idp["idp"].get("x509certMulti"):
            raise ConfigError(f"saml_idp_metadata {self.idp_metadata}: no IdP signing certificate")
        signing = bool(self.sp_key)
        self.settings = OneLogin_Saml2_Settings(
            {
                "strict": True,
                "sp": {
                    "entityId": self.entity_id,
                    "assertionConsumerService": {"url": self.url("/sso/saml/acs"), "binding": SAML.BINDING_HTTP_POST},
                    "singleLogoutService": {"url": self.url("/sso/saml/sls"), "binding": SAML.BINDING_HTTP_REDIRECT},
                    "NameIDFormat": SAML.NAMEID_UNSPECIFIED,
                    "x509cert": self.sp_cert,
                    "privateKey": self.sp_key,
                },
                "idp": idp["idp"],
                "security": {
                    "wantAssertionsSigned": True,
                    "wantNameId": True,
                    "authnRequestsSigned": signing,
                    "logoutRequestSigned": signing,
                    "logoutResponseSigned": signing,
                    "signMetadata": False,
                    "requestedAuthnContext": False,
                    "rejectDeprecatedAlgorithm": True,
                    "signatureAlgorithm": SAML.RSA_SHA256,
                    "digestAlgorithm": SAML.SHA256,
                },
            },
            sp_validation_only=not signing,
        )

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def _auth(
        self, path: str, get: dict[str, str] | None = None, post: dict[str, str] | None = None
    ) -> OneLogin_Saml2_Auth:
        # The URL the IdP was told, not what a proxy in front passes on.
        public = urlsplit(self.url(path))
        request = {
            "https": "on" if public.scheme == "https" else "off",
            "http_host": public.netloc,
            "script_name": public.path,
            "get_data": get or {},
            "post_data": post or {},
        }
        return OneLogin_Saml2_Auth(request, self.settings)

    def metadata(self) -> str:
        xml = self.settings.get_sp_metadata()
        errors = self.settings.validate_metadata(xml)
        if errors:
            raise ConfigError(f"SP metadata invalid: {', '.join(errors)}")
        return xml.decode() if isinstance(xml, bytes) else str(xml)

    # -- sign-in -----------------------------------------------------------------

    def start(self, next_url: str) -> str:
        auth = self._auth("/sso/saml/login")
        url = auth.login(set_nameid_policy=False)
        self.once.put("saml-request", auth.get_last_request_id(), next_url, REQUEST_LIFETIME)
        return str(url)

    def finish(self, post: dict[str, str]) -> tuple[ExternalIdentity, str]:
        """The identity in the IdP's response, and where to go next."""
        encoded = post.get("SAMLResponse", "")
        try:
            in_response_to = OneLogin_Saml2_Response(self.settings, encoded).get_in_response_to()
        except (OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError, ValueError, lxml.etree.XMLSyntaxError) as exc:
            raise _refused(f"unreadable response: {exc}") from exc
        next_url = self.once.take("saml-request", in_response_to or "")
        if next_url is None:
            raise _refused(f"response to an unknown, answered or expired request ({in_response_to or 'unsolicited'})")
        auth = self._auth("/sso/saml/acs", post=post)
        auth.process_response(request_id=in_response_to)
        if auth.get_errors():
            raise _refused(str(auth.get_last_error_reason() or ", ".join(auth.get_errors())))
        assertion_id, until = auth.get_last_assertion_id(), auth.get_last_assertion_not_on_or_after()
        lifetime = dt.timedelta(seconds=max(60, (until or 0) - int(dt.datetime.now().timestamp()) + 600))
        if not assertion_id or not self.once.claim("saml-assertion", assertion_id, lifetime):
            raise _refused(f"assertion {assertion_id} used before")
        external_id = self._user_id(auth)
        hint = json.dumps(
            {
                "name_id": auth.get_nameid(),
                "format": auth.get_nameid_format(),
                "nq": auth.get_nameid_nq(),
                "spnq": auth.get_nameid_spnq(),
                "session_index": auth.get_session_index(),
            }
        )
        return ExternalIdentity("saml", external_id, signout_hint=hint), next_url

    def _user_id(self, auth: OneLogin_Saml2_Auth) -> str:
        if not self.user_attribute:
            return str(auth.get_nameid() or "")
        values = auth.get_attribute(self.user_attribute) or auth.get_friendlyname_attribute(self.user_attribute)
        if not values:
            raise _refused(f"attribute {self.user_attribute} missing")
        return str(values[0])

    # -- single logout -----------------------------------------------------------

    def logout_url(self, hint: str, after: str) -> str:
        data: dict[str, Any] = json.loads(hint) if hint else {}
        auth = self._auth("/logout")
        url = auth.logout(
            name_id=data.get("name_id"),
            session_index=data.get("session_index"),
            nq=data.get("nq"),
            name_id_format=data.get("format"),
            spnq=data.get("spnq"),
        )
        self.once.put("saml-logout", auth.get_last_request_id(), after, REQUEST_LIFETIME)
        return str(url)

    def logout_answer(self, get: dict[str, str], end_local_session: Any) -> str | None:
        """Handles the IdP's LogoutResponse (to our request: returns where to
        go next) or LogoutRequest (ends the local session; returns the URL
        that answers the IdP)."""
        request_id, after = None, None
        if "SAMLResponse" in get:
            try:
                request_id = OneLogin_Saml2_Logout_Response(self.settings, get["SAMLResponse"]).get_in_response_to()
            except (OneLogin_Saml2_Error, ValueError, lxml.etree.XMLSyntaxError) as exc:
                raise _refused(f"unreadable logout response: {exc}") from exc
            after = self.once.take("saml-logout", request_id or "")
            if after is None:
                raise _refused("logout response to an unknown or answered request")
        auth = self._auth("/sso/saml/sls", get=get)
        try:
            redirect = auth.process_slo(request_id=request_id, delete_session_cb=end_local_session)
        except OneLogin_Saml2_Error as exc:
            raise _refused(f"logout message: {exc}") from exc
        if auth.get_errors():
            raise _refused(str(auth.get_last_error_reason() or ", ".join(auth.get_errors())))
        return str(redirect) if redirect else after


def _refused(reason: str) -> SignInRefused:
    return SignInRefused(
        "認証基盤からのログイン情報を確認できませんでした。もう一度ログインしてください。"
        "続く場合はシステム管理者に連絡してください。",
        reason,
    )
