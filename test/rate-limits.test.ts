import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { after, before, describe, test as testOn } from 'node:test';
import { addressKey, type CountedRequest } from '../src/http/rate-limits.js';
import type { ClusterLinks } from '../src/server.js';
import { manualClock } from './support/clock.js';
import { DATABASES } from './support/databases.js';
import {
  assertExample,
  BASE,
  bearer,
  exactlyOne200,
  rawCall,
  type Reply,
  startTestServer,
  startTestServerOn,
  type TestServer,
} from './support/harness.js';
import { verifications } from './support/metrics.js';
import { accessClaims, decodePart, forge, otherKey } from './support/tokens.js';
import { publicKeyHexOf, signInBody, signMessage } from './support/vectors.js';

// The limits of docs/design.md §12.3, on the product's defaults: 100 refused requests per client
// address per minute, 10 failed signatures per email and address per 5 minutes, 30 challenges
// per address per minute. Every address here is on the loopback network (127.0.0.0/8),
// whichever the request comes from.

const FLOOD = 2000;
const CONCURRENCY = 50;
const LIMITS = {
  RATE_LIMIT_REFUSED_PER_ADDRESS: '100',
  RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL: '10',
  RATE_LIMIT_CHALLENGES_PER_ADDRESS: '30',
};
const PER_EMAIL_POLICY = '"refused-per-address";q=100;w=60, "failed-sign-ins-per-email-and-address";q=10;w=300';

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

const newKey = () => generateKeyPairSync('ed25519').privateKey;

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
    const signInFrom = (localAddress: string, body: object) => t.call('POST', `${BASE}/session`, { body, localAddress });
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
      // A sign-in or a challenge from there: the challenge has a limit of its own, the sign-in is refused.
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

    test('failed signatures per email and address: 10 from one address, then 429 for that email there only, before the signature is checked; from elsewhere the user signs in', async () => {
      const key = newKey();
      const email = `targeted-${randomUUID()}@example.test`;
      await t.addUser(email, publicKeyHexOf(key));
      const proof = signInBody(email, key);
      const wrong = { ...proof, signature: signMessage('something else', key) };
      const attacker = '127.0.1.1';
      for (let i = 0; i < 10; i += 1) await assertExample(await signInFrom(attacker, wrong), 'SignatureNotVerified');
      const before = await verifications(t, 'user');
      // Even the genuine proof, with the email in another case, from the attacker's address.
      const limited = await signInFrom(attacker, { ...proof, email: email.toUpperCase() });
      await assertExample(limited, 'TooManyFailedSignIns');
      assertLimitHeaders(limited, PER_EMAIL_POLICY, 'failed-sign-ins-per-email-and-address', 300);
      assert.equal(await verifications(t, 'user'), before, 'the 429 verified no signature');
      // The user, from another address, is not locked out; another email signs in from the attacker's.
      assert.equal((await signInFrom('127.0.1.2', proof)).status, 200);
      const otherUserKey = newKey();
      const otherEmail = `other-${randomUUID()}@example.test`;
      await t.addUser(otherEmail, publicKeyHexOf(otherUserKey));
      assert.equal((await signInFrom(attacker, signInBody(otherEmail, otherUserKey))).status, 200);
      clock.advance(300);
      assert.equal((await signInFrom(attacker, proof)).status, 200);
    });

    test('per email, only signatures that the registered key does not verify count: not unknown emails, other keys, nor the 29 losers of a race for one nonce', async () => {
      const address = '127.0.2.1';
      const key = newKey();
      const email = `raced-${randomUUID()}@example.test`;
      await t.addUser(email, publicKeyHexOf(key));
      // An email nobody has registered yet, 12 times; then it is registered, and signs in from there.
      const laterKey = newKey();
      const later = `later-${randomUUID()}@example.test`;
      for (let i = 0; i < 12; i += 1) await assertExample(await signInFrom(address, signInBody(later, laterKey)), 'UserNotFound');
      await t.addUser(later, publicKeyHexOf(laterKey));
      assert.equal((await signInFrom(address, signInBody(later, laterKey))).status, 200);
      for (let i = 0; i < 12; i += 1)
        await assertExample(await signInFrom(address, signInBody(email, newKey())), 'PublicKeyNotRegistered');
      const proof = await t.challengedProof(email, key);
      await exactlyOne200(
        30,
        () => signInFrom(address, proof),
        (reply) => assertExample(reply, 'SignInNonceUsed'),
      );
      // The user's own sign-in, from the same address.
      assert.equal((await signInFrom(address, signInBody(email, key))).status, 200);
    });

    test('challenges per address: every one asked for counts, a refused body too; past 30 a minute, 429 before anything is stored, while another address gets its own', async () => {
      const address = '127.0.3.1';
      const challengeFrom = (localAddress: string, email = `asked-${randomUUID()}@example.test`) =>
        t.call('POST', `${BASE}/session/challenge`, { body: { email }, localAddress });
      for (let i = 0; i < 5; i += 1) await assertExample(await challengeFrom(address, `${'x'.repeat(250)}@a.io`), 'EmailTooLong');
      const statuses = await flood(100, 20, () => challengeFrom(address));
      assert.deepEqual(
        [...statuses].sort(([a], [b]) => a - b),
        [
          [200, 25],
          [429, 75],
        ],
      );
      const limited = await challengeFrom(address);
      await assertExample(limited, 'TooManyChallenges');
      assertLimitHeaders(limited, '"challenges-per-address";q=30;w=60', 'challenges-per-address', 60);
      assert.equal((await challengeFrom('127.0.3.2')).status, 200);
      // Refused requests from the address are not held by this limit.
      await assertExample(await t.call('POST', `${BASE}/logout`, { localAddress: address }), 'AuthorizationMissing');
      clock.advance(Number(limited.headers['retry-after']));
      assert.equal((await challengeFrom(address)).status, 200);
    });

    test('with the limits at 0 nothing is limited', async () => {
      const unlimited = await startTestServer({
        DATABASE_URL: t.config.databaseUrl,
        RATE_LIMIT_REFUSED_PER_ADDRESS: '0',
        RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL: '0',
        RATE_LIMIT_CHALLENGES_PER_ADDRESS: '0',
      });
      try {
        const statuses = await flood(300, 10, () => rawCall(unlimited.url, 'POST', `${BASE}/logout`));
        assert.deepEqual([...statuses], [[401, 300]]);
        const challenges = await flood(100, 10, () =>
          rawCall(unlimited.url, 'POST', `${BASE}/session/challenge`, { body: { email: 'a@example.test' } }),
        );
        assert.deepEqual([...challenges], [[200, 100]]);
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

describe('what the limits keep, and tell the other workers of a cluster', () => {
  // The server as a worker of a cluster (docs/design.md §13), whose peers are this test: it
  // reads what the server tells them, and tells the server what they counted.
  const told: CountedRequest[] = [];
  let tellServer: (counted: CountedRequest) => void = () => assert.fail('the server does not listen to its peers');
  const cluster: ClusterLinks = {
    shareMetrics: () => {},
    limitPeers: { publish: (counted) => told.push(counted), subscribe: (listener) => (tellServer = listener) },
  };
  let t: TestServer;
  before(async () => {
    t = await startTestServer(
      { RATE_LIMIT_REFUSED_PER_ADDRESS: '5', RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL: '3', RATE_LIMIT_CHALLENGES_PER_ADDRESS: '3' },
      { cluster },
    );
  });
  after(() => t.stop());
  const from = (localAddress: string) => ({
    logout: () => t.call('POST', `${BASE}/logout`, { localAddress }),
    signIn: (body: object) => t.call('POST', `${BASE}/session`, { body, localAddress }),
    challenge: (email: string) => t.call('POST', `${BASE}/session/challenge`, { body: { email }, localAddress }),
  });
  /** A registered user whose email is as long as an email may be: 254 characters. */
  async function longestEmailUser() {
    const key = newKey();
    const email = `${randomUUID()}${'x'.repeat(28)}@${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(61)}`;
    assert.equal(email.length, 254);
    await t.addUser(email, publicKeyHexOf(key));
    return { email, key };
  }

  testOn(
    'every key a limit counts is a 22-character hash, for a 254-character email too, and so is what it tells the other workers',
    async () => {
      const { email, key } = await longestEmailUser();
      const address = from('127.0.4.1');
      await assertExample(await address.logout(), 'AuthorizationMissing');
      await assertExample(
        await address.signIn({ ...signInBody(email, key), signature: signMessage('not it', key) }),
        'SignatureNotVerified',
      );
      assert.equal((await address.challenge(email)).status, 200);
      assert.deepEqual(
        told.map(({ counter }) => counter),
        ['refused-per-address', 'refused-per-address', 'failed-sign-ins-per-email-and-address', 'challenges-per-address'],
      );
      for (const { key: counted } of told) assert.match(counted, /^[A-Za-z0-9_-]{22}$/);
    },
  );

  testOn(
    'each limit keeps at most 100,000 keys: past that the oldest are forgotten, keys the other workers counted too, in microseconds each',
    async (ctx) => {
      const { email, key } = await longestEmailUser();
      const heldBack = {
        'refused-per-address': from('127.0.5.1'),
        'failed-sign-ins-per-email-and-address': from('127.0.5.2'),
        'challenges-per-address': from('127.0.5.3'),
      };
      for (let i = 0; i < 5; i += 1) await heldBack['refused-per-address'].logout();
      await assertExample(await heldBack['refused-per-address'].logout(), 'TooManyRefusedRequests');
      const wrong = { ...signInBody(email, key), signature: signMessage('not it', key) };
      for (let i = 0; i < 3; i += 1) await heldBack['failed-sign-ins-per-email-and-address'].signIn(wrong);
      await assertExample(await heldBack['failed-sign-ins-per-email-and-address'].signIn(wrong), 'TooManyFailedSignIns');
      for (let i = 0; i < 3; i += 1) await heldBack['challenges-per-address'].challenge(email);
      await assertExample(await heldBack['challenges-per-address'].challenge(email), 'TooManyChallenges');
      // Other workers count 300,000 other keys of each limit.
      const started = performance.now();
      for (const counter of Object.keys(heldBack)) {
        for (let i = 0; i < 300_000; i += 1) tellServer({ counter, key: `${counter}-${i}` });
      }
      const microseconds = ((performance.now() - started) * 1000) / 900_000;
      ctx.diagnostic(`900,000 keys counted, ${microseconds.toFixed(1)} µs each`);
      // Dropping entries one by one from the front of one map took 30 to 130 µs each past the bound.
      assert.ok(microseconds < 15, `${microseconds.toFixed(1)} µs to count a key`);
      assert.equal((await heldBack['refused-per-address'].logout()).status, 401);
      await assertExample(await heldBack['failed-sign-ins-per-email-and-address'].signIn(wrong), 'SignatureNotVerified');
      assert.equal((await heldBack['challenges-per-address'].challenge(email)).status, 200);
    },
  );
});
