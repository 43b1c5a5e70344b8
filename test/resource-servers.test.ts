import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Clients } from '../src/domain/clients.js';
import { TEST_ISSUER } from './support/api.js';
import { manualClock } from './support/clock.js';
import {
  assertExample,
  assertExampleStatus,
  BASE,
  bodyOf,
  example,
  type Session,
  startTestServer,
  type TestServer,
} from './support/harness.js';
import { accessClaims, decodePart, forge, otherKey, serverKey } from './support/tokens.js';

// What resource servers ask this service (docs/design.md §11): RFC 7662 introspection and the
// revocation feed, both with HTTP Basic client credentials.

const basic = (id: string, secret: string) => ({ authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` });

describe('introspection and the revocation feed', () => {
  const clock = manualClock();
  let t: TestServer;
  let credentials: { authorization: string };
  const introspect = (token: string, headers: Record<string, string> = credentials) =>
    t.call('POST', `${BASE}/introspection`, {
      headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }).toString(),
    });
  const feed = (query: string, headers: Record<string, string> = credentials) =>
    t.call('GET', `${BASE}/revocations?${query}`, { headers });
  const inactive = async (token: string, why: string) => {
    const reply = await introspect(token);
    assert.equal(reply.status, 200, why);
    assert.deepEqual(reply.body, { active: false }, why);
  };

  before(async () => {
    t = await startTestServer({}, { clock });
    const id = 'orders-service';
    const secret = await new Clients(t.server.store, clock).add(id);
    credentials = basic(id, secret!);
  });
  after(() => t.stop());

  describe('POST /introspection', () => {
    test("an access token that logout would accept is active, with the token's claims", async () => {
      const s = await t.newSession();
      const reply = await introspect(s.accessToken);
      const claims = decodePart(s.accessToken, 1);
      assert.deepEqual(reply.body, {
        active: true,
        token_type: 'Bearer',
        iss: TEST_ISSUER,
        aud: 'fib-api',
        client_id: 'fib-sign-in',
        sub: s.email,
        acc: claims.acc,
        role: 'ROLE_PEER',
        sid: claims.sid,
        jti: claims.jti,
        iat: claims.iat,
        exp: claims.exp,
      });
      assert.equal(reply.headers['content-type'], 'application/json');
    });

    test('every other token is exactly {"active": false}', async () => {
      const s = await t.newSession();
      await inactive(s.refreshToken, 'a refresh token');
      await inactive('not a token', 'malformed');
      await inactive(`Bearer ${s.accessToken}`, 'a header value, not a token');
      await inactive(forge(decodePart(s.accessToken, 0), decodePart(s.accessToken, 1), otherKey()), 'forged signature');
      await inactive(
        forge(decodePart(s.accessToken, 0), { ...accessClaims(s.email), sid: randomUUID() }, serverKey(t)),
        'no session',
      );

      const retired = await t.newSession();
      assert.equal((await t.refresh(retired.refreshToken)).status, 200);
      await inactive(retired.accessToken, 'retired by a refresh');

      const reused = await t.newSession();
      const next: Session = (await bodyOf(await t.refresh(reused.refreshToken), 'refreshTokens', 200)).data;
      assert.equal((await t.refresh(reused.refreshToken)).status, 401);
      await inactive(next.accessToken, 'revoked after refresh-token reuse');

      const loggedOut = await t.newSession();
      assert.equal((await bodyOf(await introspect(loggedOut.accessToken), 'introspectToken', 200)).active, true);
      assert.equal((await t.logout(loggedOut.accessToken)).status, 200);
      await inactive(loggedOut.accessToken, 'logged out');

      const removed = await t.newSession();
      assert.ok(await t.server.store.removeUser(removed.email, Math.floor(clock() / 1000)));
      await inactive(removed.accessToken, 'its user removed');

      const expiring = await t.newSession();
      clock.advance(300);
      await inactive(expiring.accessToken, 'expired');
    });

    test('RFC 6749 §5.2: 401 invalid_client with the Basic challenge without credentials, with a wrong secret, an unknown or a removed client', async () => {
      const { accessToken } = await t.newSession();
      const secret = (await new Clients(t.server.store, clock).add('leaving-service'))!;
      const introspected = await introspect(accessToken, basic('leaving-service', secret));
      assert.equal((await bodyOf(introspected, 'introspectToken', 200)).active, true);
      assert.ok(await t.server.store.removeClient('leaving-service'));
      const cases: [string, Record<string, string>, 'IntrospectionClientMissing' | 'IntrospectionClientInvalid'][] = [
        ['no credentials', {}, 'IntrospectionClientMissing'],
        ['a bearer token instead', { authorization: `Bearer ${accessToken}` }, 'IntrospectionClientMissing'],
        ['a wrong secret', basic('orders-service', secret), 'IntrospectionClientInvalid'],
        ['an unknown client', basic('nobody', secret), 'IntrospectionClientInvalid'],
        ['a removed client', basic('leaving-service', secret), 'IntrospectionClientInvalid'],
        [
          'no colon',
          { authorization: `Basic ${Buffer.from('orders-service').toString('base64')}` },
          'IntrospectionClientInvalid',
        ],
      ];
      for (const [why, headers, name] of cases) {
        const reply = await introspect(accessToken, headers);
        assert.equal(reply.status, 401, why);
        assert.deepEqual(reply.body, example(name), why);
        assert.equal(reply.headers['www-authenticate'], 'Basic realm="fib-auth"', why);
      }
      // The credentials are checked before the form: a form without a token is still 401.
      const noToken = await t.call('POST', `${BASE}/introspection`, {
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'token_type_hint=access_token',
      });
      assert.deepEqual([noToken.status, noToken.body], [401, example('IntrospectionClientMissing')]);
      // The revocation feed is a FIB operation: its refusals stay in the envelope.
      await assertExample(await feed('wait=0', {}), 'ClientCredentialsMissing');
    });

    test('client_secret_post: the client id and secret in the form, without an Authorization header', async () => {
      const { accessToken } = await t.newSession();
      const secret = (await new Clients(t.server.store, clock).add('posting-service'))!;
      const posted = (fields: Record<string, string>) =>
        t.call('POST', `${BASE}/introspection`, {
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token: accessToken, ...fields }).toString(),
        });
      const active = await posted({ client_id: 'posting-service', client_secret: secret });
      assert.equal((await bodyOf(active, 'introspectToken', 200)).active, true);
      const refused: Record<string, string>[] = [
        { client_id: 'posting-service', client_secret: 'wrong' },
        { client_id: 'posting-service' },
        { client_id: 'nobody', client_secret: secret },
      ];
      for (const fields of refused) {
        const reply = await posted(fields);
        assert.deepEqual([reply.status, reply.body], [401, example('IntrospectionClientInvalid')], JSON.stringify(fields));
      }
      // With an Authorization header, HTTP Basic decides and the form's fields are not read.
      const both = await t.call('POST', `${BASE}/introspection`, {
        headers: { ...basic('posting-service', 'wrong'), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: accessToken, client_id: 'posting-service', client_secret: secret }).toString(),
      });
      assert.deepEqual([both.status, both.body], [401, example('IntrospectionClientInvalid')]);
    });

    test('400 without a token or with two, 415 for JSON', async () => {
      const form = (body: string) =>
        t.call('POST', `${BASE}/introspection`, {
          headers: { ...credentials, 'content-type': 'application/x-www-form-urlencoded' },
          body,
        });
      await assertExample(await form('token_type_hint=access_token'), 'IntrospectionTokenMissing');
      assert.equal((await form('token=a.b.c&token=d.e.f')).status, 400);
      await assertExample(
        await t.call('POST', `${BASE}/introspection`, { headers: credentials, body: { token: 'a.b.c' } }),
        'FormRequired',
      );
    });
  });

  describe('GET /revocations', () => {
    const newestCursor = async () => (await bodyOf(await feed('wait=0'), 'listRevocations', 200)).data.cursor;

    test('without a cursor: a snapshot of what is still in force', async () => {
      const s = await t.newSession();
      assert.equal((await t.logout(s.accessToken)).status, 200);
      const reply = await feed('');
      await assertExampleStatus(reply, 'RevocationsSnapshot');
      const page = (await bodyOf(reply, 'listRevocations', 200)).data;
      assert.equal(page.snapshot, true);
      assert.ok(page.revocations.some((r) => 'sid' in r && r.sid === decodePart(s.accessToken, 1).sid));
    });

    test('a long poll answers as soon as a logout commits, with that revocation', async () => {
      const s = await t.newSession();
      const cursor = await newestCursor();
      const started = performance.now();
      const waiting = feed(`after=${cursor}&wait=20`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal((await t.logout(s.accessToken)).status, 200);
      const reply = await waiting;
      const waited = performance.now() - started;
      await assertExampleStatus(reply, 'RevocationsAfterCursor');
      const { sid, exp } = decodePart(s.accessToken, 1);
      const page = (await bodyOf(reply, 'listRevocations', 200)).data;
      assert.deepEqual(page.revocations, [{ sid, reason: 'logout', until: exp }]);
      assert.ok(waited < 5000, `answered after ${Math.round(waited)} ms, not at the end of the wait`);
      assert.notEqual(page.cursor, cursor);
    });

    test('a refresh lists the access token it retired', async () => {
      const s = await t.newSession();
      const cursor = await newestCursor();
      assert.equal((await t.refresh(s.refreshToken)).status, 200);
      const { sid, jti, exp } = decodePart(s.accessToken, 1);
      const page = (await bodyOf(await feed(`after=${cursor}`), 'listRevocations', 200)).data;
      assert.deepEqual(page.revocations, [{ sid, jti, reason: 'refresh', until: exp }]);
    });

    test('when nothing comes within the wait: no entries, the same cursor', async () => {
      const cursor = await newestCursor();
      const started = performance.now();
      const reply = await feed(`after=${cursor}&wait=1`);
      assert.ok(performance.now() - started >= 900, 'it waited');
      await assertExampleStatus(reply, 'RevocationsNone');
      assert.deepEqual((await bodyOf(reply, 'listRevocations', 200)).data, {
        cursor,
        snapshot: false,
        more: false,
        revocations: [],
      });
    });

    test('a cursor this database did not give out gets a snapshot, a bare number (of a version before) too, not a 400', async () => {
      const cursor = await newestCursor();
      const position = cursor.split(':').at(-1)!;
      for (const after of [position, `0123456789abcdef:${position}`]) {
        const reply = await feed(`after=${after}&wait=0`);
        await assertExampleStatus(reply, 'RevocationsSnapshot');
        assert.deepEqual((await bodyOf(reply, 'listRevocations', 200)).data.cursor, cursor, after);
      }
    });

    test('400 for a bad cursor or wait, 401 without credentials', async () => {
      await assertExample(await feed('after=abc'), 'RevocationCursorInvalid');
      await assertExample(await feed('wait=31'), 'RevocationWaitInvalid');
      await assertExample(await feed('wait=0', {}), 'ClientCredentialsMissing');
    });
  });
});

describe('shutting down with long polls open', () => {
  test('they are answered at once, and the server stops without waiting for their wait', async () => {
    const t = await startTestServer();
    const secret = (await new Clients(t.server.store, Date.now).add('rs'))!;
    const { cursor } = await t.server.store.revocationsAfter(undefined, 1);
    const waiting = t.call('GET', `${BASE}/revocations?after=${cursor}&wait=30`, { headers: basic('rs', secret) });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = performance.now();
    await t.stop();
    const reply = await waiting;
    assert.deepEqual((await bodyOf(reply, 'listRevocations', 200)).data.revocations, []);
    assert.ok(performance.now() - started < 5000, `stopped in ${Math.round(performance.now() - started)} ms`);
  });
});
