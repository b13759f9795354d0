"""OpenID Connect relying party: Authorization Code with PKCE.

Authlib makes the authorization URL and redeems the code; joserfc (Authlib's
JOSE library) checks the ID token: signature against the provider's
published keys, issuer, audience, expiry and the nonce of this very request.
The state, nonce and code verifier wait in the database (:class:`OnceStore`)
and are taken once, so a replayed callback finds nothing; the state is also
bound to the browser by a cookie, so a callback cannot be planted in
someone else's browser.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..errors import ConfigError
from ..texts import cannot_connect
from .once import OnceStore
from .signin import ExternalIdentity, SignInRefused

REQUEST_LIFETIME = dt.timedelta(minutes=10)
CLOCK_SKEW = 60  # seconds
HTTP_TIMEOUT = 10


@dataclass(frozen=True)
class Redirect:
    url: str
    # The browser keeps this (a cookie) so that only it can finish the sign-in.
    browser_binding: str


@dataclass
class OidcClient:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    user_claim: str
    scopes: tuple[str, ...]
    once: OnceStore
    _metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    _keys: KeySet | None = field(default=None, repr=False)

    # -- provider ----------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        if not self._metadata:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                response = requests.get(url, timeout=HTTP_TIMEOUT)
                response.raise_for_status()
                data = response.json()
            except (requests.RequestException, ValueError) as exc:
                raise _unreachable(f"discovery {url}: {exc}") from exc
            if data.get("issuer") != self.issuer:
                raise ConfigError(
                    f"oidc_issuer {self.issuer!r} differs from the provider's issuer {data.get('issuer')!r}"
                )
            self._metadata = data
        return self._metadata

    def keys(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            try:
                response = requests.get(self.metadata()["jwks_uri"], timeout=HTTP_TIMEOUT)
                response.raise_for_status()
                self._keys = KeySet.import_key_set(response.json())
            except (requests.RequestException, ValueError, KeyError) as exc:
                raise _unreachable(f"jwks: {exc}") from exc
        return self._keys

    def _session(self) -> OAuth2Session:
        return OAuth2Session(
            self.client_id,
            self.client_secret,
            scope=" ".join(self.scopes),
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
        )

    # -- sign-in -----------------------------------------------------------------

    def start(self, next_url: str) -> Redirect:
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        binding = secrets.token_urlsafe(32)
        url, _ = self._session().create_authorization_url(
            self.metadata()["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
        data = {"nonce": nonce, "verifier": verifier, "next": next_url, "binding": binding}
        self.once.put("oidc-state", state, json.dumps(data), REQUEST_LIFETIME)
        return Redirect(url, binding)

    def finish(self, params: dict[str, str], browser_binding: str) -> tuple[ExternalIdentity, str]:
        """The identity from the provider's answer, and where to go next."""
        if "error" in params:
            raise SignInRefused(
                "認証基盤でログインできませんでした。もう一度お試しください。",
                f"provider error {params.get('error')}: {params.get('error_description', '')}",
            )
        stored = self.once.take("oidc-state", params.get("state", ""))
        if stored is None:
            raise _refused("unknown, used or expired state")
        request = json.loads(stored)
        if not secrets.compare_digest(request["binding"], browser_binding):
            raise _refused("state not issued to this browser")
        try:
            token = self._session().fetch_token(
                self.metadata()["token_endpoint"],
                code=params.get("code", ""),
                code_verifier=request["verifier"],
                timeout=HTTP_TIMEOUT,
            )
        except AuthlibBaseError as exc:
            raise _refused(f"code not redeemed: {exc.error}") from exc
        except requests.RequestException as exc:
            raise _unreachable(f"token endpoint: {exc}") from exc
        id_token = token.get("id_token")
        if not id_token:
            raise _refused("no id_token in the token response")
        claims = self.verify_id_token(id_token, request["nonce"])
        external_id = str(claims.get(self.user_claim) or self._from_userinfo(token, claims["sub"]))
        if not external_id:
            raise _refused(f"claim {self.user_claim} missing")
        return ExternalIdentity("oidc", external_id, signout_hint=id_token), request["next"]

    def _from_userinfo(self, token: dict[str, Any], subject: str) -> str:
        """The user claim from the UserInfo endpoint, for providers that keep
        profile claims out of the ID token (OIDC Core 5.4)."""
        endpoint = self.metadata().get("userinfo_endpoint")
        if not endpoint or not token.get("access_token"):
            return ""
        try:
            response = requests.get(
                endpoint, headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=HTTP_TIMEOUT
            )
            response.raise_for_status()
            info = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise _unreachable(f"userinfo: {exc}") from exc
        if info.get("sub") != subject:
            raise _refused("userinfo for another subject")
        return str(info.get(self.user_claim) or "")

    def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            decoded = self._decode(id_token)
        except JoseError as exc:
            raise _refused(f"id_token signature: {exc.error}") from exc
        claims = decoded.claims
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(time.time()),
            leeway=CLOCK_SKEW,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.client_id},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise _refused(f"id_token claims: {exc.error} {exc.description or ''}".strip()) from exc
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.client_id:
            raise _refused("id_token for several audiences without our azp")
        return claims

    def _decode(self, id_token: str) -> jwt.Token:
        algorithms = self.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
        allowed = [a for a in algorithms if a != "none" and not a.startswith("HS")]
        try:
            return jwt.decode(id_token, self.keys(), algorithms=allowed)
        except JoseError:
            # The provider may have rolled its keys since they were read.
            return jwt.decode(id_token, self.keys(refresh=True), algorithms=allowed)

    # -- sign-out ----------------------------------------------------------------

    def logout_url(self, id_token: str, after: str) -> str | None:
        endpoint = self.metadata().get("end_session_endpoint")
        if not endpoint:
            return None
        query = {"client_id": self.client_id, "post_logout_redirect_uri": after}
        if id_token:
            query["id_token_hint"] = id_token
        return f"{endpoint}?{urlencode(query)}"


def _refused(reason: str) -> SignInRefused:
    return SignInRefused(
        "認証基盤からのログイン情報を確認できませんでした。もう一度ログインしてください。"
        "続く場合はシステム管理者に連絡してください。",
        reason,
    )


def _unreachable(reason: str) -> SignInRefused:
    return SignInRefused(
        cannot_connect(
            "認証基盤",
            "OpenID Connect",
            "しばらくしてからもう一度お試しください。続く場合はシステム管理者に連絡してください。",
        ),
        reason,
    )
