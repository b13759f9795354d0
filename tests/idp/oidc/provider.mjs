// The OpenID Connect provider the sign-in tests run against: the certified
// oidc-provider, on loopback, with the keys, clients and users the test
// fixture passes in the environment. Its development login form accepts
// the users listed in OIDC_USERS (login = password).
import Provider from "oidc-provider";

const issuer = process.env.OIDC_ISSUER;
const port = Number(new URL(issuer).port);
const users = JSON.parse(process.env.OIDC_USERS);

const provider = new Provider(issuer, {
  clients: JSON.parse(process.env.OIDC_CLIENTS),
  jwks: JSON.parse(process.env.OIDC_JWKS),
  claims: { openid: ["sub"], profile: ["preferred_username", "name"] },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // Sign out at once when asked by a relying party (no confirmation page).
      logoutSource: async (ctx, form) => {
        ctx.body = `<!DOCTYPE html><html><body onload="document.forms[0].submit()">${form}` +
          `<script>document.forms[0].insertAdjacentHTML('beforeend','<input type=hidden name=logout value=yes>')</script>` +
          `<noscript><button form="op.logoutForm" name="logout" value="yes">Sign out</button></noscript></body></html>`;
      },
    },
  },
  // Consent is the organisation's, not the clerk's: grant the scopes asked.
  loadExistingGrant: async (ctx) => {
    const grant = new provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope("openid profile");
    await grant.save();
    return grant;
  },
  findAccount: async (ctx, id) => {
    const user = users[id];
    if (!user) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, preferred_username: user.login, name: user.name }) };
  },
  cookies: { keys: [process.env.OIDC_COOKIE_KEY] },
  ttl: { IdToken: 600 },
});

provider.listen(port, "127.0.0.1", () => console.log(`oidc-provider listening on ${issuer}`));
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
