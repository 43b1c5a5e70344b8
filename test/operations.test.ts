import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { keyPaths } from '../src/key-files.js';
import { loadConfig, storeOptions } from '../src/config.js';
import { openStore } from '../src/store/open.js';
import type { Store } from '../src/domain/store.js';
import { assertExample, BASE, bearer, bodyOf, logEntries, rawCall, startTestServer, type TestServer } from './support/harness.js';
import { sample, scrape } from './support/metrics.js';
import { accessClaims, decodePart, forge, otherKey, serverKey } from './support/tokens.js';
import { signInBody } from './support/vectors.js';
import { fibAuth, runCli } from './support/cli.js';

describe('health', () => {
  test('live and ready answer 200 in the envelope; ready is 503 when the store does not answer', async () => {
    let stalled = false;
    const real = await openStore(storeOptions(loadConfig({ DATABASE_URL: 'sqlite::memory:' })));
    const store: Store = Object.assign(Object.create(real) as Store, {
      ping: () => (stalled ? new Promise<void>(() => {}) : real.ping()),
    });
    const t = await startTestServer({}, { store });
    try {
      await assertExample(await t.call('GET', '/health/live'), 'ServiceLive');
      await assertExample(await t.call('GET', '/health/ready'), 'ServiceReady');
      stalled = true;
      const started = Date.now();
      await assertExample(await t.call('GET', '/health/ready'), 'StoreUnavailable');
      assert.ok(Date.now() - started < 3000, 'readiness answers within its timeout');
      await assertExample(await t.call('GET', '/health/live'), 'ServiceLive');
    } finally {
      await t.stop();
    }
  });
});

describe('metrics', () => {
  test('count requests by operation and status, logout outcomes by reason, and live sessions', async () => {
    const t = await startTestServer();
    try {
      const done = await t.newSession();
      const live = await t.newSession();
      const removed = await t.newSession();
      await t.logout(done.accessToken); // logged_out
      await t.logout(done.accessToken); // already_over
      await t.logout(undefined); // unreadable
      await t.logout(forge(decodePart(live.accessToken, 0), accessClaims(live.email), otherKey())); // bad_signature
      await t.logout(forge(decodePart(live.accessToken, 0), { ...accessClaims(live.email), exp: 1 }, serverKey(t))); // expired
      await t.server.store.removeUser(removed.email, Math.floor(Date.now() / 1000));
      await t.logout(removed.accessToken); // unknown_user

      const text = await scrape(t.server.managementUrl);
      const outcome = (name: string) => sample(text, `fib_auth_logout_outcomes_total{outcome="${name}"}`);
      assert.deepEqual(
        ['logged_out', 'already_over', 'unreadable', 'bad_signature', 'expired', 'unknown_user', 'error'].map(outcome),
        [1, 1, 1, 1, 1, 1, 0],
      );
      assert.equal(sample(text, 'fib_auth_http_requests_total{operation="logout",status="200"}'), 1);
      assert.equal(sample(text, 'fib_auth_http_requests_total{operation="logout",status="401"}'), 3);
      assert.equal(sample(text, 'fib_auth_http_requests_total{operation="logout",status="422"}'), 1);
      assert.equal(sample(text, 'fib_auth_http_requests_total{operation="authorizeUser",status="200"}'), 3);
      assert.equal(sample(text, 'fib_auth_http_request_duration_seconds_count{operation="logout",status="404"}'), 1);
      // Every logout but the unreadable one verified its token; each sign-in verified its user's signature.
      assert.equal(sample(text, 'fib_auth_signature_verifications_total{signature="token"}'), 5);
      assert.equal(sample(text, 'fib_auth_signature_verifications_total{signature="user"}'), 3);
      assert.equal(outcome('rate_limited'), 0);
      assert.ok(sample(text, 'fib_auth_process_resident_memory_bytes')! > 0);
      // The live sessions are counted at start, then on a timer: a restart counts them now.
      await t.restart();
      const counted = sample(await scrape(t.server.managementUrl), 'fib_auth_active_sessions');
      assert.equal(counted, 1, 'one session is neither logged out nor revoked');
    } finally {
      await t.stop();
    }
  });

  test('are served on the management listener only, and a scrape never counts the sessions', async () => {
    let counts = 0;
    const real = await openStore(storeOptions(loadConfig({ DATABASE_URL: 'sqlite::memory:' })));
    const store: Store = Object.assign(Object.create(real) as Store, {
      countLiveSessions: (now: number) => {
        counts += 1;
        return real.countLiveSessions(now);
      },
    });
    const t = await startTestServer({}, { store });
    try {
      assert.equal((await t.call('GET', '/metrics')).status, 404, 'not on the API port');
      assert.equal(counts, 1, 'counted once, at start');
      for (let i = 0; i < 5; i++) assert.match(await scrape(t.server.managementUrl), /^fib_auth_active_sessions 0$/m);
      assert.equal(counts, 1, 'the scrapes counted nothing');
      const management = t.server.managementUrl!;
      assert.equal((await rawCall(management, 'GET', '/health/live')).status, 404);
      const posted = await rawCall(management, 'POST', '/metrics');
      assert.deepEqual([posted.status, posted.headers.allow], [405, 'GET, HEAD']);
    } finally {
      await t.stop();
    }
  });
});

describe('key rotation', () => {
  let t: TestServer;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    t = await startTestServer();
    env = { DATABASE_URL: t.config.databaseUrl, FIB_AUTH_SIGNING_KEY_FILE: t.config.signingKeyFile };
  });
  after(() => t.stop());

  test('tokens signed before a rotation still log out after it; the key set publishes both keys', async () => {
    const before = await t.newSession();
    const oldKid = decodePart(before.accessToken, 0).kid;

    const generated = await fibAuth(['keys', 'generate'], env);
    const nextKid = generated.match(/generated the next signing key (\S+);/)![1];
    await t.server.reloadKeys();
    const published = (await bodyOf(await t.call('GET', '/.well-known/jwks.json'), 'getJwks', 200)).keys.map((k) => k.kid);
    assert.deepEqual(published, [oldKid, nextKid], 'the next key verifies before it signs');
    const again = await runCli(['keys', 'generate'], env);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already waiting/);

    const rotated = await fibAuth(['keys', 'rotate'], env);
    assert.match(rotated, new RegExp(`^${nextKid} signs new tokens; ${String(oldKid)} verifies until \\d{4}-`));
    await t.server.reloadKeys();

    const after = await t.newSession();
    assert.equal(decodePart(after.accessToken, 0).kid, nextKid);
    const jwks = await bodyOf(await t.call('GET', '/.well-known/jwks.json'), 'getJwks', 200);
    assert.deepEqual(
      jwks.keys.map((k) => k.kid),
      [nextKid, oldKid],
    );
    // A resource server verifies both generations of tokens with the published set alone.
    for (const token of [before.accessToken, after.accessToken]) {
      await jwtVerify(token, createLocalJWKSet(jwks), { algorithms: ['EdDSA'], typ: 'at+jwt' });
    }

    await assertExample(await t.logout(before.accessToken), 'LoggedOut');
    await assertExample(await t.logout(after.accessToken), 'LoggedOut');
    await t.restart();
    const refreshedAfterRestart = await t.refresh(before.refreshToken);
    assert.equal(refreshedAfterRestart.status, 401, 'the old key still verifies after a restart; its session is over');
    await assertExample(refreshedAfterRestart, 'SessionLoggedOut');
  });

  test('a retired key stops verifying once its last token has expired', async () => {
    const session = await t.newSession();
    await fibAuth(['keys', 'rotate'], env);
    const { verificationDir } = keyPaths(t.config.signingKeyFile);
    for (const name of readdirSync(verificationDir)) {
      const entry = JSON.parse(readFileSync(join(verificationDir, name), 'utf8')) as object;
      writeFileSync(join(verificationDir, name), JSON.stringify({ ...entry, notAfter: Math.floor(Date.now() / 1000) - 1 }));
    }
    await t.server.reloadKeys();
    await assertExample(await t.logout(session.accessToken), 'TokenKeyIdUnknown');
    assert.equal((await bodyOf(await t.call('GET', '/.well-known/jwks.json'), 'getJwks', 200)).keys.length, 1);
  });

  test("a retired key verifies for the longer token lifetime plus five minutes, the access token's when it is longer", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fib-auth-rotation-'));
    try {
      const lifetimes = { ACCESS_TOKEN_TTL: '7200', REFRESH_TOKEN_TTL: '3600' };
      const rotated = await fibAuth(['keys', 'rotate'], {
        FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem'),
        ...lifetimes,
      });
      const until = Date.parse(rotated.match(/verifies until (\S+)$/m)![1]) / 1000;
      const expected = Date.now() / 1000 + 7200 + 300;
      assert.ok(Math.abs(until - expected) < 30, `until ${until}, expected about ${expected}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('keys commands: usage errors exit 2', async () => {
    for (const args of [['keys'], ['keys', 'burn'], ['keys', 'rotate', '--now']]) {
      const { code, stderr } = await runCli(args, env);
      assert.equal(code, 2, args.join(' '));
      assert.match(stderr, /^fib-auth: [^\n]+\n$/, args.join(' '));
    }
  });
});

describe('logout scope', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  test('scope=global ends every session of the user and no other', async () => {
    const first = await t.newSession();
    const signInAgain = () => t.signIn(signInBody(first.email, first.key));
    const second = (await signInAgain()).body.data;
    const third = (await signInAgain()).body.data;
    const stranger = await t.newSession();
    await assertExample(
      await t.call('POST', `${BASE}/logout?scope=global`, { headers: bearer(second.accessToken) }),
      'LoggedOutEverywhere',
    );
    for (const token of [first.accessToken, second.accessToken, third.accessToken]) {
      await assertExample(await t.logout(token), 'AccessTokenLoggedOut');
    }
    await assertExample(await t.refresh(third.refreshToken), 'SessionLoggedOut');
    await assertExample(await t.logout(stranger.accessToken), 'LoggedOut');
  });

  test('scope=local is the default and answers the FIB page body; an unknown scope is 400, after authentication', async () => {
    const a = await t.newSession();
    await assertExample(await t.call('POST', `${BASE}/logout?scope=bogus`, { headers: bearer(a.accessToken) }), 'ScopeInvalid');
    await assertExample(await t.call('POST', `${BASE}/logout?scope=bogus`), 'AuthorizationMissing');
    await assertExample(await t.call('POST', `${BASE}/logout?scope=local`, { headers: bearer(a.accessToken) }), 'LoggedOut');
  });

  test('a global logout with a token whose session is over changes nothing', async () => {
    const a = await t.newSession();
    const refreshed = (await t.refresh(a.refreshToken)).body.data;
    await assertExample(
      await t.call('POST', `${BASE}/logout?scope=global`, { headers: bearer(a.accessToken) }),
      'AccessTokenRetired',
    );
    await assertExample(await t.logout(refreshed.accessToken), 'LoggedOut');
  });
});

describe('CORS', () => {
  const app = 'https://app.example.test';
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ CORS_ORIGINS: `${app}, https://admin.example.test` });
  });
  after(() => t.stop());

  test('answers a preflight from a listed origin, allowing Authorization', async () => {
    const reply = await rawCall(t.url, 'OPTIONS', `${BASE}/logout`, {
      headers: { origin: app, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
    });
    assert.equal(reply.status, 204);
    assert.equal(reply.headers['access-control-allow-origin'], app);
    assert.equal(reply.headers['access-control-allow-methods'], 'POST');
    assert.match(String(reply.headers['access-control-allow-headers']), /Authorization/);
    assert.match(String(reply.headers.vary), /Origin/);
    assert.equal(reply.headers['access-control-allow-credentials'], undefined);
  });

  test('marks answers to a listed origin, and nothing for others', async () => {
    const { accessToken } = await t.newSession();
    const allowed = await t.call('POST', `${BASE}/logout`, { headers: { ...bearer(accessToken), origin: app } });
    assert.equal(allowed.headers['access-control-allow-origin'], app);
    assert.match(String(allowed.headers['access-control-expose-headers']), /X-Request-Id/);
    const other = await rawCall(t.url, 'OPTIONS', `${BASE}/logout`, {
      headers: { origin: 'https://evil.example.test', 'access-control-request-method': 'POST' },
    });
    assert.equal(other.status, 405);
    assert.equal(other.headers['access-control-allow-origin'], undefined);
  });

  test('allows no origin unless configured', async () => {
    const plain = await startTestServer();
    try {
      const reply = await rawCall(plain.url, 'OPTIONS', `${BASE}/logout`, {
        headers: { origin: app, 'access-control-request-method': 'POST' },
      });
      assert.equal(reply.status, 405);
      assert.equal(reply.headers['access-control-allow-origin'], undefined);
    } finally {
      await plain.stop();
    }
  });
});

describe('access log', () => {
  test('one line per request with method, path, operation, status, duration and request id', async () => {
    const t = await startTestServer();
    try {
      const { accessToken } = await t.newSession();
      const reply = await t.logout(accessToken);
      const line = logEntries(t).find((entry) => entry.requestId === reply.headers['x-request-id']);
      assert.ok(line, 'the request was logged');
      assert.deepEqual(
        { method: line.method, path: line.path, operation: line.operation, status: line.status, msg: line.msg },
        { method: 'POST', path: `${BASE}/logout`, operation: 'logout', status: 200, msg: 'request' },
      );
      assert.equal(typeof line.ms, 'number');
    } finally {
      await t.stop();
    }
  });
});
