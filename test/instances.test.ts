import assert from 'node:assert/strict';
import { after, before, describe, test as testOn } from 'node:test';
import { serveChild, type ChildServer } from './support/child-server.js';
import { DATABASES } from './support/databases.js';
import { Clients } from '../src/domain/clients.js';
import {
  assertExample,
  BASE,
  bearer,
  bodyOf,
  exactlyOne200,
  rawCall,
  startTestServerOn,
  type TestServer,
} from './support/harness.js';
import { decodePart } from './support/tokens.js';

// Two servers behind one load balancer: one database, one signing key file (README,
// "PostgreSQL and several instances"). Whatever one instance decides, the other sees at once.
// B is a process of its own, as in production: two SQLite connections to one file inside one
// process block each other, since better-sqlite3 waits for a lock synchronously.
for (const backend of DATABASES) {
  describe(`two instances on one ${backend.name} database`, () => {
    const test = (name: string, fn: () => Promise<void>): void => {
      testOn(name, { skip: backend.skip }, fn);
    };
    let a: TestServer;
    let child: ChildServer;
    const b = {
      logout: (token: string) => rawCall(child.url, 'POST', `${BASE}/logout`, { headers: bearer(token) }),
      refresh: (token: string) => rawCall(child.url, 'PATCH', `${BASE}/session`, { headers: bearer(token) }),
      signIn: (body: object) => rawCall(child.url, 'POST', `${BASE}/session`, { body }),
      endSession: (token: string) => rawCall(child.url, 'DELETE', `${BASE}/session`, { headers: bearer(token) }),
    };
    before(async () => {
      if (backend.skip) return;
      a = await startTestServerOn(backend);
      // B on A's database, with A's signing key.
      const { databaseUrl, signingKeyFile } = a.config;
      child = await serveChild({
        DATABASE_URL: databaseUrl,
        FIB_AUTH_SIGNING_KEY_FILE: signingKeyFile,
        HOST: '127.0.0.1',
        PORT: '0',
      });
    });
    after(async () => {
      await child?.stop();
      await a?.stop();
    });

    test('sign in on A, log out on B: the token is refused on A', async () => {
      const s = await a.newSession();
      await assertExample(await b.logout(s.accessToken), 'LoggedOut');
      await assertExample(await a.logout(s.accessToken), 'AccessTokenLoggedOut');
      await assertExample(await a.refresh(s.refreshToken), 'SessionLoggedOut');
    });

    test('50 concurrent logouts of one token, spread over A and B: exactly one 200', async () => {
      const s = await a.newSession();
      await exactlyOne200(50, (i) => (i % 2 ? a : b).logout(s.accessToken), 401);
    });

    test('20 concurrent sign-ins with one nonce, spread over A and B: exactly one 200', async () => {
      const s = await a.newSession();
      const proof = await a.challengedProof(s.email, s.key);
      await exactlyOne200(
        20,
        (i) => (i % 2 ? a : b).signIn(proof),
        (reply) => assertExample(reply, 'SignInNonceUsed'),
      );
    });

    test('sign in on A, end the session on B with the refresh token: A refuses both tokens', async () => {
      const s = await a.newSession();
      await assertExample(await b.endSession(s.refreshToken), 'SessionEndedByRefreshToken');
      await assertExample(await a.logout(s.accessToken), 'AccessTokenLoggedOut');
      await assertExample(await a.refresh(s.refreshToken), 'SessionLoggedOut');
    });

    test('a refresh on A retires the old pair on B', async () => {
      const s = await a.newSession();
      const refreshed = await a.refresh(s.refreshToken);
      assert.equal(refreshed.status, 200);
      await assertExample(await b.logout(s.accessToken), 'AccessTokenRetired');
      // The old refresh token a second time, on B: reuse, so the session is revoked on A too.
      await assertExample(await b.refresh(s.refreshToken), 'RefreshTokenReused');
      await assertExample(await a.logout(refreshed.body.data.accessToken), 'SessionRevokedAfterReuse');
    });

    test('a logout on B wakes a revocation long poll waiting on A, within a second', async () => {
      const s = await a.newSession();
      const secret = await new Clients(a.server.store, Date.now).add(`rs-${backend.name}`);
      const headers = { authorization: `Basic ${Buffer.from(`rs-${backend.name}:${secret}`).toString('base64')}` };
      const { cursor } = (await bodyOf(await a.call('GET', `${BASE}/revocations?wait=0`, { headers }), 'listRevocations', 200))
        .data;
      const waiting = a.call('GET', `${BASE}/revocations?after=${cursor}&wait=20`, { headers });
      await new Promise((resolve) => setTimeout(resolve, 300)); // the poll waits on A
      await assertExample(await b.logout(s.accessToken), 'LoggedOut');
      const loggedOutAt = performance.now();
      const reply = await waiting;
      const delay = performance.now() - loggedOutAt;
      assert.deepEqual(
        (await bodyOf(reply, 'listRevocations', 200)).data.revocations.map((r) => ('sid' in r ? r.sid : r.kid)),
        [decodePart(s.accessToken, 1).sid],
      );
      assert.ok(delay < 1000, `A answered ${Math.round(delay)} ms after B's logout`);
    });
  });
}
