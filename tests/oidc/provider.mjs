// A real OpenID provider for Pneumo's single sign-on tests (the npm oidc-provider package).
//
// Environment: PORT; ACCOUNTS_FILE (JSON {accountId: {roles, sites, amr, name, email}}, read again at
// every login so a test can change an account's claims); REDIRECT_URI and POST_LOGOUT_REDIRECT_URI;
// ID_TOKEN_TTL (seconds, default 300) and CLOCK_SKEW (seconds added to this process's clock, default 0):
// together they issue an ID token that is already expired when Pneumo checks it, without waiting.
// Login is a plain form (one field: the account id); consent is implied for this first-party client.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

const skew = Number(process.env.CLOCK_SKEW || 0) * 1000;
if (skew) {
  const realNow = Date.now;
  Date.now = () => realNow() + skew;
}
const { default: Provider } = await import('oidc-provider');

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = () => JSON.parse(fs.readFileSync(process.env.ACCOUNTS_FILE, 'utf8'));
const key = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'pneumo',
    client_secret: 'pneumo-test-secret',
    redirect_uris: [process.env.REDIRECT_URI],
    post_logout_redirect_uris: [process.env.POST_LOGOUT_REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [{ ...key, kid: 'test-key-1', use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
  pkce: { required: () => true },
  ttl: { IdToken: Number(process.env.ID_TOKEN_TTL || 300) },
  claims: {
    openid: ['sub', 'amr'], // amr in every ID token, as providers that assert a second factor do
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'roles', 'sites'],
  },
  features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const account = accounts()[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          name: account.name || id,
          preferred_username: id,
          email: account.email || `${id}@idp.example`,
          email_verified: true,
          roles: account.roles || [],
          sites: account.sites || [],
        };
      },
    };
  },
  async loadExistingGrant(ctx) {
    // A first-party client: every scope it asks for is granted without a consent page.
    const { accountId } = ctx.oidc.session;
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
});

const loginPage = (uid, error) => `<!doctype html><html><body><h1>Test identity provider</h1>
${error ? `<p class="error">${error}</p>` : ''}
<form method="post" action="/interaction/${uid}"><label>Account <input name="login"></label>
<button type="submit">Sign in</button></form></body></html>`;

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'text/html' });
    return res.end(loginPage(details.uid));
  }
  let body = '';
  for await (const chunk of req) body += chunk;
  const login = new URLSearchParams(body).get('login') || '';
  const account = accounts()[login];
  if (!account) {
    res.writeHead(200, { 'content-type': 'text/html' });
    return res.end(loginPage(details.uid, 'Unknown account'));
  }
  const result = { login: { accountId: login, amr: account.amr || ['pwd'] } };
  return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

const handler = provider.callback();
http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((error) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(error));
    });
  } else {
    handler(req, res);
  }
}).listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
