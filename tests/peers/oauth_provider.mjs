// A real OAuth 2.0 / OpenID provider for the OAuth tests: npm oidc-provider (certified), with
// one confidential client, PKCE required, refresh tokens, revocation, and an interaction that
// signs the user in and grants what is asked without a page (the test is the user).
//
//   NODE_PEERS=target/node-peers/node_modules node oauth_provider.mjs REDIRECT_URI
//
// prints its issuer URL on the first line, then serves (NODE_PEERS: where npm ci put it).
// GET /test/stats answers {refreshes, codes} so a test can see which grants were used;
// POST /test/forget <access token> drops that one access token from the provider's store (as
// a provider that lost it, or let it lapse early, would), leaving its grant and refresh token.
import http from "node:http";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const peers = createRequire(`${process.env.NODE_PEERS}/`);
const { default: Provider } = await import(pathToFileURL(peers.resolve("oidc-provider")).href);

const redirectUri = process.argv[2];
const stats = { refreshes: 0, codes: 0 };

const server = http.createServer();
server.listen(0, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: "ingot-test",
        client_secret: "ingot-test-secret-0123456789",
        redirect_uris: [redirectUri],
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
    pkce: { required: () => true },
    scopes: ["openid", "offline_access", "contacts"],
    features: { devInteractions: { enabled: false }, revocation: { enabled: true } },
    ttl: { AccessToken: 3600, AuthorizationCode: 60, Grant: 86400, Session: 86400, Interaction: 600, RefreshToken: 86400 },
    rotateRefreshToken: () => true,
    findAccount: (_ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  });
  provider.on("grant.success", (ctx) => {
    const grant = ctx.oidc.params.grant_type;
    if (grant === "refresh_token") stats.refreshes += 1;
    if (grant === "authorization_code") stats.codes += 1;
  });
  provider.on("grant.error", (_ctx, err) => console.error(`grant.error: ${err.error_description}: ${err.error_detail}`));
  const callback = provider.callback();
  server.on("request", async (req, res) => {
    try {
      if (req.url === "/test/stats") {
        res.setHeader("content-type", "application/json");
        return res.end(JSON.stringify(stats));
      }
      if (req.url === "/test/forget" && req.method === "POST") {
        let token = "";
        for await (const chunk of req) token += chunk;
        const found = await provider.AccessToken.find(token.trim());
        await found?.destroy();
        return res.end(found ? "forgotten" : "unknown");
      }
      if (req.url.startsWith("/interaction/")) {
        const details = await provider.interactionDetails(req, res);
        if (details.prompt.name === "login") {
          return await provider.interactionFinished(req, res, { login: { accountId: "user-1" } }, { mergeWithLastSubmission: false });
        }
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
        const missing = details.prompt.details;
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
          grant.addResourceScope(indicator, scopes.join(" "));
        }
        const grantId = await grant.save();
        return await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      }
      return callback(req, res);
    } catch (e) {
      console.error(e);
      res.statusCode = 500;
      res.end(String(e));
    }
  });
  console.log(issuer);
});
