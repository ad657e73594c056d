// A strict OAuth 2 / OpenID Connect server for Tessera's tests: npm `oidc-provider` 9.x on
// 127.0.0.1, port chosen by the system.
//
//   node tests/peers/oidc-server.mjs '<config JSON>'      (or the JSON on stdin)
//
// Once listening it prints exactly one line on stdout, `{"issuer":"http://127.0.0.1:PORT"}`;
// everything else (oidc-provider's development-mode notices) goes to stderr.
//
// Config (every key optional):
//   clients            oidc-provider client metadata (`client_id`, `client_secret`,
//                      `redirect_uris`, `grant_types`, `token_endpoint_auth_method`, ...);
//                      `"public": true` makes a public client (`token_endpoint_auth_method:
//                      "none"`). Defaults: response type `code`, grant types
//                      `authorization_code` and `refresh_token`, `client_secret_basic`.
//   scopes             extra scopes to accept besides openid, offline_access, email, profile.
//   access_token_ttl   seconds (default 60): short, so expiry and refresh are quick to reach.
//   refresh_token_ttl  seconds (default 86400).
//   id_token_ttl       seconds (default 3600).
//   groups             { "<sub>": ["group", ...] }: the `groups` claim of that user, sent in
//                      the ID token with the `profile` scope (an empty list for anyone else).
//
// What it enforces: PKCE (S256) for every client; exact redirect URIs; refresh tokens only
// when `offline_access` is granted (which oidc-provider grants only with `prompt=consent`);
// refresh-token rotation on every use, so reusing a rotated token answers `invalid_grant`
// and revokes the whole grant. Login and consent are oidc-provider's own development pages
// (GET /interaction/:uid, POST `prompt=login` with any `login`, which becomes the `sub`, then
// POST `prompt=consent`). Revocation (RFC 7009) and introspection (RFC 7662) are on.
//
// Test-only: GET /__stats answers what the token, revocation and introspection endpoints
// were asked, so a test can assert, say, exactly one refresh per rotation and no
// `invalid_grant`. POST /__revoke?token=ACCESS_TOKEN&what=access_token|grant ends one access
// token, or the whole grant behind it, out of band. POST /__fault?kind=500|malformed|hang|slow&count=N
// makes the next N token requests fail without touching any token (or, `slow`, answer late).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

// oidc-provider prints notices with console.info; stdout carries only the issuer line.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

async function readConfig() {
  if (process.argv[2] !== undefined) {
    return JSON.parse(process.argv[2]);
  }
  if (process.stdin.isTTY) {
    return {};
  }
  let text = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) {
    text += chunk;
  }
  return text.trim() === '' ? {} : JSON.parse(text);
}

function clientMetadata(client) {
  const { public: isPublic, ...metadata } = client;
  const out = {
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: isPublic ? 'none' : 'client_secret_basic',
    ...metadata,
  };
  if (isPublic) {
    out.token_endpoint_auth_method = 'none';
    delete out.client_secret;
  }
  return out;
}

function seconds(value, fallback, name) {
  if (value === undefined) {
    return fallback;
  }
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive whole number of seconds`);
  }
  return value;
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: randomBytes(8).toString('hex'),
    use: 'sig',
    alg: 'RS256',
  };
}

const stats = {
  token_requests: {},
  token_errors: {},
  invalid_grant: 0,
  revocation_requests: 0,
  introspection_requests: 0,
  revoked_grants: 0,
  faults_served: 0,
};

const faults = { kind: undefined, count: 0, ms: 5000 };

function count(map, key) {
  map[key] = (map[key] ?? 0) + 1;
}

async function main() {
  const config = await readConfig();
  const server = createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients: (config.clients ?? []).map(clientMetadata),
    jwks: { keys: [signingKey()] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    async findAccount(_ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            email: sub.includes('@') ? sub : `${sub}@example.test`,
            email_verified: true,
            preferred_username: sub,
            name: sub,
            groups: (config.groups ?? {})[sub] ?? [],
          };
        },
      };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'name', 'groups'],
    },
    scopes: ['openid', 'offline_access', ...(config.scopes ?? [])],
    // Scope claims in the ID token too (not only at userinfo), so an ID token names the user.
    conformIdTokenClaims: false,
    ttl: {
      AccessToken: seconds(config.access_token_ttl, 60, 'access_token_ttl'),
      RefreshToken: seconds(config.refresh_token_ttl, 86400, 'refresh_token_ttl'),
      IdToken: seconds(config.id_token_ttl, 3600, 'id_token_ttl'),
    },
    pkce: { required: () => true },
    rotateRefreshToken: () => true,
    async issueRefreshToken(_ctx, client, code) {
      return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
    },
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
    },
  });

  provider.on('grant.revoked', () => {
    stats.revoked_grants += 1;
  });

  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/__stats') {
      ctx.type = 'json';
      ctx.body = stats;
      return;
    }
    // Test-only: the next `count` token requests fail without being processed (the refresh
    // token stays valid): `kind=500` answers a server error, `kind=malformed` a 200 whose
    // body is not JSON, `kind=hang` waits `ms` milliseconds (default 5000) and then answers
    // a server error. `kind=slow` processes the request normally but answers only after
    // `ms` milliseconds.
    if (ctx.method === 'POST' && ctx.path === '/__fault') {
      faults.kind = ctx.query.kind;
      faults.count = Number(ctx.query.count ?? 1);
      faults.ms = Number(ctx.query.ms ?? 5000);
      ctx.status = 204;
      return;
    }
    let slow = 0;
    if (ctx.method === 'POST' && ctx.path === '/token' && faults.count > 0 && faults.kind === 'slow') {
      faults.count -= 1;
      stats.faults_served += 1;
      slow = faults.ms;
    } else if (ctx.method === 'POST' && ctx.path === '/token' && faults.count > 0) {
      faults.count -= 1;
      stats.faults_served += 1;
      if (faults.kind === 'hang') {
        await new Promise((resolve) => setTimeout(resolve, faults.ms));
      }
      if (faults.kind === 'malformed') {
        ctx.status = 200;
        ctx.type = 'json';
        ctx.body = '{"access_token": "unterminated';
      } else {
        ctx.status = 500;
        ctx.type = 'json';
        ctx.body = { error: 'server_error', error_description: 'injected fault' };
      }
      return;
    }
    // Test-only: what a user or the server itself does out of band. `token` names an access
    // token; `what=access_token` revokes that token only (the next call with it gets 401),
    // `what=grant` ends the whole grant (every access and refresh token of it), as when the
    // user revokes the app at the server.
    if (ctx.method === 'POST' && ctx.path === '/__revoke') {
      const token = ctx.query.token ?? '';
      const found = await provider.AccessToken.find(token);
      if (!found) {
        ctx.status = 404;
        ctx.body = { error: 'no such access token' };
        return;
      }
      if (ctx.query.what === 'grant') {
        await Promise.all([
          provider.AccessToken.revokeByGrantId(found.grantId),
          provider.RefreshToken.revokeByGrantId(found.grantId),
          provider.Grant.adapter.destroy(found.grantId),
        ]);
        stats.revoked_grants += 1;
      } else {
        await found.destroy();
      }
      ctx.status = 204;
      return;
    }
    await next();
    if (ctx.method !== 'POST') {
      return;
    }
    if (ctx.path === '/token') {
      const grantType = ctx.oidc?.params?.grant_type ?? ctx.oidc?.body?.grant_type ?? 'unknown';
      count(stats.token_requests, grantType);
      const error = ctx.status >= 400 ? ctx.body?.error : undefined;
      if (error) {
        count(stats.token_errors, error);
        if (error === 'invalid_grant') {
          stats.invalid_grant += 1;
        }
      }
    } else if (ctx.path === '/token/revocation') {
      stats.revocation_requests += 1;
    } else if (ctx.path === '/token/introspection') {
      stats.introspection_requests += 1;
    }
    if (slow > 0) {
      // The request is processed (a refresh token rotated) and counted; only the answer
      // is late, so a client that dies meanwhile never learns the new tokens.
      await new Promise((resolve) => setTimeout(resolve, slow));
    }
  });

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => {
  console.error(`oidc-server: ${error.stack ?? error}`);
  process.exit(1);
});
