"""Single sign-on at the web edge: SAML, OpenID Connect and the groupware
hand-off end in one place (:meth:`SignInPages.sign_in`), which maps the
identity to a user, starts a fresh session (a new session id every time)
and audits the method, the external id, the user and the client; a refusal
is audited with its reason and answered with a page that says what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..errors import NotFound
from ..people.sessions import SESSION_COOKIE, ActiveSession
from ..people.signin import METHOD_LABELS, ExternalIdentity, SignInRefused
from .pages import client_address, page, safe_next, session_of
from .ui import PageSet, WebUI

if TYPE_CHECKING:
    from ..people.oidc import OidcClient
    from ..people.saml import SamlSP

OIDC_BINDING_COOKIE = "mailintake_oidc"


class SignInPages(PageSet):
    def __init__(self, ui: WebUI) -> None:
        super().__init__(ui)
        self.sso = ui.services.sso

    def routes(self) -> list[Route]:
        return [
            Route("/sso/saml/metadata", self.saml_metadata, methods=["GET"]),
            Route("/sso/saml/login", self.saml_login, methods=["GET"]),
            Route("/sso/saml/acs", self.saml_acs, methods=["POST"]),
            Route("/sso/saml/sls", self.saml_sls, methods=["GET"]),
            Route("/sso/oidc/login", self.oidc_login, methods=["GET"]),
            Route("/sso/oidc/callback", self.oidc_callback, methods=["GET"]),
            Route("/sso/groupware", self.groupware, methods=["GET"]),
            Route("/logout", page(self.services)(self.logout), methods=["POST"]),
        ]

    # -- the one way in ----------------------------------------------------------------

    async def sign_in(self, request: Request, method: str, prove: object, *args: object) -> Response:
        """Runs ``prove(*args)`` (→ identity, next URL) and signs the user in."""
        client = client_address(request)
        try:
            identity, next_url = await run_in_threadpool(prove, *args)  # type: ignore[arg-type]
            user = await run_in_threadpool(self.sso.signins.user_for, identity)
        except SignInRefused as exc:
            await run_in_threadpool(
                self.services.audit.record,
                None,
                "login_failed",
                username=exc.external_id,
                detail=f"{METHOD_LABELS.get(method, method)}: {exc.reason}",
                client_address=client,
            )
            return self.refused(request, str(exc))
        self.services.sessions.end(request.cookies.get(SESSION_COOKIE))
        token = await run_in_threadpool(
            self.services.sessions.start,
            user,
            method=identity.method,
            client_address=client,
            signout_hint=identity.signout_hint,
        )
        action = "login_insecure" if identity.method == "groupware_insecure" else "login"
        await run_in_threadpool(
            self.services.audit.record,
            user,
            action,
            detail=f"{METHOD_LABELS[identity.method]}: {identity.external_id}",
            client_address=client,
        )
        response = RedirectResponse(safe_next(next_url), status_code=303)
        self.ui.set_session_cookie(request, response, token)
        return response

    def refused(self, request: Request, message: str) -> Response:
        return self.ui.render(request, "signin_refused.html", status_code=403, message=message)

    # -- SAML ----------------------------------------------------------------------------

    def _saml(self) -> SamlSP:
        if self.sso.saml is None:
            raise NotFound("SAML sign-in is not configured")
        return self.sso.saml

    def saml_metadata(self, request: Request) -> Response:
        return Response(self._saml().metadata(), media_type="application/samlmetadata+xml")

    async def saml_login(self, request: Request) -> Response:
        url = await run_in_threadpool(self._saml().start, safe_next(request.query_params.get("next")))
        return RedirectResponse(url, status_code=303)

    async def saml_acs(self, request: Request) -> Response:
        saml = self._saml()
        form = await request.form()
        post = {key: value for key, value in form.items() if isinstance(value, str)}
        return await self.sign_in(request, "saml", saml.finish, post)

    async def saml_sls(self, request: Request) -> Response:
        saml = self._saml()
        token = request.cookies.get(SESSION_COOKIE)
        try:
            url = await run_in_threadpool(
                saml.logout_answer, dict(request.query_params), lambda: self.services.sessions.end(token)
            )
        except SignInRefused as exc:
            return self.refused(request, str(exc))
        response = RedirectResponse(url or self.after_signout(), status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # -- OpenID Connect ------------------------------------------------------------------

    def _oidc(self) -> OidcClient:
        if self.sso.oidc is None:
            raise NotFound("OpenID Connect sign-in is not configured")
        return self.sso.oidc

    async def oidc_login(self, request: Request) -> Response:
        oidc = self._oidc()
        try:
            redirect = await run_in_threadpool(oidc.start, safe_next(request.query_params.get("next")))
        except SignInRefused as exc:
            return self.refused(request, str(exc))
        response = RedirectResponse(redirect.url, status_code=303)
        response.set_cookie(
            OIDC_BINDING_COOKIE,
            redirect.browser_binding,
            max_age=600,
            httponly=True,
            samesite="lax",  # the provider's redirect back is a top-level GET
            secure=request.url.scheme == "https",
            path="/sso/oidc/",
        )
        return response

    async def oidc_callback(self, request: Request) -> Response:
        oidc = self._oidc()
        binding = request.cookies.get(OIDC_BINDING_COOKIE, "")
        response = await self.sign_in(request, "oidc", oidc.finish, dict(request.query_params), binding)
        response.delete_cookie(OIDC_BINDING_COOKIE, path="/sso/oidc/")
        return response

    # -- groupware -----------------------------------------------------------------------

    async def groupware(self, request: Request) -> Response:
        handoff = self.sso.groupware
        if handoff is None:
            raise NotFound("groupware hand-off is not configured")
        settings = self.services.settings
        value = request.query_params.get(settings.groupware_parameter)
        if not value and settings.groupware_cookie:
            value = request.cookies.get(settings.groupware_cookie)
        next_url = safe_next(request.query_params.get("next"))

        def prove(value: str | None, client: str) -> tuple[ExternalIdentity, str]:
            return handoff.identify(value, client), next_url

        method = "groupware_insecure" if handoff.mode == "insecure" else "groupware"
        return await self.sign_in(request, method, prove, value, client_address(request))

    # -- sign-out ------------------------------------------------------------------------

    def logout(self, request: Request) -> Response:
        session = session_of(request)
        self.services.sessions.end(request.cookies.get(SESSION_COOKIE))
        url = self.signout_url(session)
        if url.startswith("/"):
            response: Response = RedirectResponse(url, status_code=303)
        else:
            # Onwards to the IdP from a page of ours: browsers hold the
            # redirects that follow a form to the form-action policy.
            response = self.ui.render(request, "signing_out.html", next_url=url, user=None, csrf_token="")
        response.delete_cookie(SESSION_COOKIE)
        return response

    def after_signout(self) -> str:
        return self.services.settings.portal_url or "/login?notice=logged_out"

    def signout_url(self, session: ActiveSession | None) -> str:
        """Where the browser goes after the local session ended: the IdP's
        sign-out where the protocol has one, then the portal."""
        after = self.after_signout()
        if session is None:
            return after
        absolute_after = after if "://" in after else self.services.settings.public_url + after
        try:
            if session.method == "saml" and self.sso.saml is not None:
                return self.sso.saml.logout_url(session.signout_hint, absolute_after)
            if session.method == "oidc" and self.sso.oidc is not None:
                return self.sso.oidc.logout_url(session.signout_hint, absolute_after) or after
        except SignInRefused:
            pass  # the IdP cannot be reached: the local session has ended all the same
        return after
