// An independent OpenID Provider (the OpenID-certified `oidc-provider` package) for Mandate's SSO
// browser test, served on loopback. Configured by environment:
//   PORT           port on 127.0.0.1 (0 picks a free one; the chosen URL is printed as `READY <issuer>`)
//   CLIENT_ID, CLIENT_SECRET, REDIRECT_URI   the one confidential client (Mandate)
//   POST_LOGOUT_REDIRECT_URI, BACKCHANNEL_LOGOUT_URI   optional: RP-initiated and back-channel logout
//   ACCOUNTS_FILE  JSON {"<sub>": {"password", "disabled"?, "claims": {...}}}, re-read on every use so a
//                  test can change someone's groups, or disable them, between two sign-ins.
// The sign-in page is our own (username + password); consent is implied for the one first-party client.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};

const accounts = () => JSON.parse(fs.readFileSync(env('ACCOUNTS_FILE'), 'utf8'));

const signingKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
  .export({ format: 'jwk' });
Object.assign(signingKey, { kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' });

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(res, uid, message = '') {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(`<!doctype html><html><head><title>Test IdP sign-in</title></head><body>
<h1>Test identity provider</h1>
${message ? `<p id="error">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
  <label>Username <input name="username" id="username" autocomplete="off"></label>
  <label>Password <input name="password" id="password" type="password"></label>
  <button type="submit" id="idp-submit">Sign in</button>
</form></body></html>`);
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; if (body.length > 10000) req.destroy(); });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(body))));
    req.on('error', reject);
  });
}

async function interaction(provider, req, res, uid, isLoginPost) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params, session } = details;

  if (prompt.name === 'login') {
    if (!isLoginPost) return loginPage(res, uid);
    const { username = '', password = '' } = await readForm(req);
    const account = accounts()[username];
    if (!account || account.password !== password) return loginPage(res, uid, 'Wrong username or password.');
    if (account.disabled) {
      return provider.interactionFinished(req, res, {
        error: 'access_denied', error_description: 'this account is disabled',
      }, { mergeWithLastSubmission: false });
    }
    return provider.interactionFinished(req, res, { login: { accountId: username } },
      { mergeWithLastSubmission: false });
  }

  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  throw new Error(`unexpected prompt ${prompt.name}`);
}

const server = http.createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: env('CLIENT_ID'),
      client_secret: env('CLIENT_SECRET'),
      redirect_uris: [env('REDIRECT_URI')],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'RS256',
      ...(process.env.POST_LOGOUT_REDIRECT_URI
        ? { post_logout_redirect_uris: [process.env.POST_LOGOUT_REDIRECT_URI] } : {}),
      ...(process.env.BACKCHANNEL_LOGOUT_URI
        ? { backchannel_logout_uri: process.env.BACKCHANNEL_LOGOUT_URI, backchannel_logout_session_required: true }
        : {}),
    }],
    jwks: { keys: [signingKey] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'given_name', 'family_name'],
      groups: ['groups'],
    },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = `<!doctype html><html><head><title>Test IdP sign-out</title></head><body>
<h1>Sign out of the test identity provider?</h1>${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" id="idp-logout">Yes, sign me out</button>
</body></html>`;
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = '<!doctype html><html><body><p id="idp-signed-out">Signed out.</p></body></html>';
        },
      },
    },
    interactions: { url: (ctx, i) => `/interaction/${i.uid}` },
    async findAccount(ctx, id) {
      const account = accounts()[id];
      if (!account || account.disabled) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...account.claims }; } };
    },
  });
  const oidc = provider.callback();
  server.on('request', (req, res) => {
    const match = new URL(req.url, issuer).pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (!match) return oidc(req, res);
    return interaction(provider, req, res, match[1], Boolean(match[2]) && req.method === 'POST')
      .catch((err) => {
        res.writeHead(400, { 'Content-Type': 'text/plain' });
        res.end(`interaction failed: ${err.message}`);
      });
  });
  process.stdout.write(`READY ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
