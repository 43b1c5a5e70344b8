import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { after, before, describe, test as testOn } from 'node:test';
import { addressKey } from '../src/http/rate-limits.js';
import { manualClock } from './support/clock.js';
import { DATABASES } from './support/databases.js';
import {
  assertExample,
  BASE,
  bearer,
  rawCall,
  type Reply,
  startTestServer,
  startTestServerOn,
  type TestServer,
} from './support/harness.js';
import { verifications } from './support/metrics.js';
import { accessClaims, decodePart, forge, otherKey } from './support/tokens.js';
import { publicKeyHexOf, signMessage } from './support/vectors.js';

// Limits on refused requests (docs/design.md §12), on the product's defaults: 100 refused
// requests per client address per minute, 10 failed sign-ins per email per 5 minutes. Every
// address here is on the loopback network (127.0.0.0/8), whichever the request comes from.

const FLOOD = 2000;
const CONCURRENCY = 50;
const LIMITS = { RATE_LIMIT_REFUSED_PER_ADDRESS: '100', RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL: '10' };

/** Sends `count` requests, `concurrency` at a time; returns how many got each status. */
async function flood(count: number, concurrency: number, send: () => Promise<Reply>): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  let sent = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (sent < count) {
        sent += 1;
        const { status } = await send();
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  return statuses;
}

function assertLimitHeaders(reply: Reply, policies: string, limit: string, windowSeconds: number): void {
  const retryAfter = Number(reply.headers['retry-after']);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= windowSeconds, `Retry-After ${retryAfter}`);
  assert.equal(reply.headers['ratelimit-policy'], policies);
  assert.equal(reply.headers.ratelimit, `"${limit}";r=0;t=${retryAfter}`);
}

for (const backend of DATABASES) {
  describe(`limits on refused requests on ${backend.name}`, () => {
    const test = (name: string, fn: (ctx: { diagnostic(message: string): void }) => Promise<void>): void => {
      testOn(name, { skip: backend.skip, timeout: 120_000 }, fn);
    };
    const clock = manualClock();
    let t: TestServer;
    const logoutFrom = (localAddress: string, accessToken: string, headers: Record<string, string> = {}) =>
      t.call('POST', `${BASE}/logout`, { headers: { ...bearer(accessToken), ...headers }, localAddress });
    before(async () => {
      if (!backend.skip) t = await startTestServerOn(backend, LIMITS, { clock });
    });
    after(() => t?.stop());

    test(`a flood of ${FLOOD} forged logouts from one address turns into 429s before their signatures are verified, while another address logs out`, async (ctx) => {
      const s = await t.newSession();
      const bystander = await t.newSession();
      const genuine = await t.newSession();
      // Signed by another key under the server's kid: each one that gets through costs a verification.
      const forged = forge(decodePart(s.accessToken, 0), accessClaims(s.email), otherKey());
      const before = await verifications(t, 'token');
      let sent = 0;
      let bystander200: Promise<Reply> | undefined;
      const statuses = await flood(FLOOD, CONCURRENCY, () => {
        sent += 1;
        // Halfway through the flood, from another address: a real logout.
        if (sent === FLOOD / 2) bystander200 = logoutFrom('127.0.0.2', bystander.accessToken);
        // X-Forwarded-For changes nothing without TRUST_PROXY: the connection's address counts.
        return rawCall(t.url, 'POST', `${BASE}/logout`, {
          headers: { ...bearer(forged), 'x-forwarded-for': `203.0.113.${sent % 250}` },
          localAddress: '127.0.0.1',
        });
      });
      const verified = (await verifications(t, 'token')) - before;
      const refused = statuses.get(422) ?? 0;
      const limited = statuses.get(429) ?? 0;
      ctx.diagnostic(
        `${FLOOD} forged logouts, ${CONCURRENCY} at a time: ${refused} answered 422 (verified), ${limited} answered 429; ` +
          `${verified} signature verifications, of which 1 is the other address's logout`,
      );
      assert.deepEqual([...statuses.keys()].sort(), [422, 429]);
      assert.equal(refused + limited, FLOOD);
      // The 100th refusal closes the window; requests already past the check when it was counted still finish.
      assert.ok(refused >= 100 && refused < 100 + CONCURRENCY, `${refused} refusals got through`);
      assert.equal(verified, refused + 1, 'no 429 cost a verification');
      await assertExample(await bystander200!, 'LoggedOut');

      // The flooded address itself is refused, even with a genuine token (and a sign-in), until the window ends.
      const limitedReply = await logoutFrom('127.0.0.1', genuine.accessToken);
      await assertExample(limitedReply, 'TooManyRefusedRequests');
      assertLimitHeaders(limitedReply, '"refused-per-address";q=100;w=60', 'refused-per-address', 60);
      await assertExample(await t.signIn({ email: s.email, signature: '00', authPublicKeyHex: '00' }), 'TooManyRefusedRequests');
      clock.advance(Number(limitedReply.headers['retry-after']));
      await assertExample(await logoutFrom('127.0.0.1', genuine.accessToken), 'LoggedOut');
    });

    test('successful requests never count; refused ones count for every operation that takes credentials', async () => {
      const address = '127.0.0.3';
      for (let i = 0; i < 150; i += 1) {
        const s = await t.newSession();
        assert.equal((await logoutFrom(address, s.accessToken)).status, 200);
      }
      const s = await t.newSession();
      const refusals = [
        () => t.call('POST', `${BASE}/logout`, { localAddress: address }),
        () => t.call('PATCH', `${BASE}/session`, { headers: bearer(s.accessToken), localAddress: address }),
        () => t.call('DELETE', `${BASE}/session`, { localAddress: address }),
        () =>
          t.call('POST', `${BASE}/introspection`, {
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: 'token=x',
            localAddress: address,
          }),
        () => t.call('GET', `${BASE}/revocations`, { localAddress: address }),
      ];
      for (let i = 0; i < 100; i += 1) assert.equal((await refusals[i % refusals.length]()).status, 401, `refusal ${i + 1}`);
      for (const refuse of refusals) await assertExample(await refuse(), 'TooManyRefusedRequests');
      // A sign-in or a challenge from there: the challenge is never limited, the sign-in is.
      assert.equal(
        (await t.call('POST', `${BASE}/session/challenge`, { body: { email: s.email }, localAddress: address })).status,
        200,
      );
      await assertExample(
        await t.call('POST', `${BASE}/session`, {
          body: { email: s.email, signature: '00', authPublicKeyHex: '00' },
          localAddress: address,
        }),
        'TooManyRefusedRequests',
      );
      clock.advance(60);
      assert.equal((await logoutFrom(address, s.accessToken)).status, 200);
    });

    test('failed sign-ins per email: 10 from ten addresses, then 429 for that email from any address, before the signature is checked', async () => {
      const key = generateKeyPairSync('ed25519').privateKey;
      const email = `sprayed-${randomUUID()}@example.test`;
      await t.addUser(email, publicKeyHexOf(key));
      const proof = { email, signature: signMessage(email, key), authPublicKeyHex: publicKeyHexOf(key) };
      const wrong = { ...proof, signature: signMessage('something else', key) };
      const signInFrom = (localAddress: string, body: object) => t.call('POST', `${BASE}/session`, { body, localAddress });
      for (let i = 0; i < 10; i += 1) await assertExample(await signInFrom(`127.0.1.${i + 1}`, wrong), 'SignatureNotVerified');
      const before = await verifications(t, 'user');
      const limited = await signInFrom('127.0.1.100', { ...proof, email: email.toUpperCase() });
      await assertExample(limited, 'TooManyFailedSignIns');
      assertLimitHeaders(
        limited,
        '"refused-per-address";q=100;w=60, "failed-sign-ins-per-email";q=10;w=300',
        'failed-sign-ins-per-email',
        300,
      );
      assert.equal(await verifications(t, 'user'), before, 'the 429 verified no signature');
      // Another email signs in from the same address; after the window the sprayed one does too.
      const otherUserKey = generateKeyPairSync('ed25519').privateKey;
      const otherEmail = `other-${randomUUID()}@example.test`;
      await t.addUser(otherEmail, publicKeyHexOf(otherUserKey));
      const otherProof = {
        email: otherEmail,
        signature: signMessage(otherEmail, otherUserKey),
        authPublicKeyHex: publicKeyHexOf(otherUserKey),
      };
      assert.equal((await signInFrom('127.0.1.100', otherProof)).status, 200);
      clock.advance(300);
      assert.equal((await signInFrom('127.0.1.100', proof)).status, 200);
    });

    test('with the limits at 0 nothing is limited', async () => {
      const unlimited = await startTestServer({
        DATABASE_URL: t.config.databaseUrl,
        RATE_LIMIT_REFUSED_PER_ADDRESS: '0',
        RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL: '0',
      });
      try {
        const statuses = await flood(300, 10, () => rawCall(unlimited.url, 'POST', `${BASE}/logout`));
        assert.deepEqual([...statuses], [[401, 300]]);
      } finally {
        await unlimited.stop();
      }
    });
  });
}

describe('behind a proxy: TRUST_PROXY', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ TRUST_PROXY: '1', RATE_LIMIT_REFUSED_PER_ADDRESS: '5' });
  });
  after(() => t.stop());
  const refusedFrom = (forwardedFor: string) =>
    t.call('POST', `${BASE}/logout`, { headers: { 'x-forwarded-for': forwardedFor } });

  testOn('the address the proxy appended counts; what the client wrote to its left does not', async () => {
    for (let i = 0; i < 5; i += 1) await assertExample(await refusedFrom('198.51.100.7'), 'AuthorizationMissing');
    await assertExample(await refusedFrom('198.51.100.7'), 'TooManyRefusedRequests');
    await assertExample(await refusedFrom('198.51.100.8, 198.51.100.7'), 'TooManyRefusedRequests');
    await assertExample(await refusedFrom('198.51.100.7, 198.51.100.8'), 'AuthorizationMissing');
    // The connection's own address (127.0.0.1) is not the client's behind the proxy.
    await assertExample(await t.call('POST', `${BASE}/logout`), 'AuthorizationMissing');
  });

  testOn('an IPv6 client counts by its /64; an IPv4 address mapped into IPv6 is that IPv4 address', async () => {
    for (let i = 0; i < 5; i += 1) await assertExample(await refusedFrom(`2001:db8:1:2::${i + 1}`), 'AuthorizationMissing');
    await assertExample(await refusedFrom('2001:db8:1:2:ffff:ffff:ffff:9'), 'TooManyRefusedRequests');
    await assertExample(await refusedFrom('2001:db8:1:3::1'), 'AuthorizationMissing');
    await assertExample(await refusedFrom('::ffff:198.51.100.7'), 'TooManyRefusedRequests');
    assert.equal(addressKey('2001:0db8:0001:0002:0000:0000:0000:0001'), '2001:db8:1:2::/64');
    assert.equal(addressKey('::1'), '0:0:0:0::/64');
    assert.equal(addressKey('203.0.113.9'), '203.0.113.9');
  });
});
