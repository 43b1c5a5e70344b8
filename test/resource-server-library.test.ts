import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { exportJWK, type JWK } from 'jose';
import {
  createVerifier,
  FeedRefusedError,
  ReadyTimeoutError,
  VerificationError,
  VerifierOptionsError,
  type Verifier,
  type VerifierEvent,
  type VerifierOptions,
} from 'fib-auth-resource-server';
import { Clients } from '../src/domain/clients.js';
import { refusalOf } from '../src/contract/failures.js';
import { BASE, startTestServer } from './support/harness.js';
import { freePort } from './support/processes.js';
import { accessClaims, forge, kidOf } from './support/tokens.js';

// The library on its own, in this process, against a stand-in for the service that serves the
// JWKS and the feed pages each test crafts over real HTTP: key withdrawals (a feed entry the
// service adds in the same change) and a JWKS that changes are set up here directly. The
// propagation suites run the library against the real service.

interface FeedPage {
  cursor: string;
  snapshot: boolean;
  more: boolean;
  revocations: object[];
}

/** The issuer the stand-in names in its metadata and its tokens. */
const CRAFTED_ISSUER = 'https://auth.fib.example';

/**
 * Serves its metadata, `jwks` and the feed: an empty snapshot first, then the pages `send`
 * queues, long polls meanwhile.
 */
class CraftedService {
  jwks: JWK[] = [];
  /** The metadata's status; 200 names CRAFTED_ISSUER and the audience fib-api. */
  metadataStatus = 200;
  jwksStatus = 200;
  /** When set, the feed refuses every request with this status, as for wrong client credentials. */
  feedRefusal: number | undefined;
  /** The paths (with their query) asked, in order. */
  readonly requests: string[] = [];
  private cursor = 0;
  private readonly queued: FeedPage[] = [];
  private readonly waiting = new Set<() => void>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<CraftedService> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const service = new CraftedService(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    server.on('request', (request, response) => service.answer(request, response));
    return service;
  }

  /** The feed's next answer: entries after the cursor, or (`snapshot`) all of them, replacing what the verifier holds. */
  send(revocations: object[], snapshot = false): void {
    this.queued.push({ cursor: String(++this.cursor), snapshot, more: false, revocations });
    for (const wake of this.waiting) wake();
  }

  jwksRequests(): number {
    return this.requests.filter((path) => path === '/.well-known/jwks.json').length;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private answer(request: IncomingMessage, response: ServerResponse): void {
    const url = new URL(request.url!, this.url);
    this.requests.push(`${url.pathname}${url.search}`);
    const json = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (url.pathname === '/.well-known/jwks.json') return json(this.jwksStatus, { keys: this.jwks });
    if (url.pathname === '/.well-known/oauth-authorization-server') {
      return json(this.metadataStatus, { issuer: CRAFTED_ISSUER, fib_access_token_audience: ['fib-api'] });
    }
    if (url.pathname !== `${BASE}/revocations`) return json(404, {});
    if (this.feedRefusal !== undefined) {
      return json(this.feedRefusal, { status: { code: this.feedRefusal, name: 'Refused', message: 'Refused.' }, data: {} });
    }
    const page = (data: FeedPage) => json(200, { status: { code: 200, name: 'OK', message: 'Revocations.' }, data });
    const after = url.searchParams.get('after');
    if (this.queued.length > 0) return page(this.queued.shift()!);
    if (after === null) return page({ cursor: String(this.cursor), snapshot: true, more: false, revocations: [] });
    const wake = () => {
      if (this.queued.length === 0) return;
      this.waiting.delete(wake);
      clearTimeout(timer);
      page(this.queued.shift()!);
    };
    const timer = setTimeout(
      () => {
        this.waiting.delete(wake);
        page({ cursor: after, snapshot: false, more: false, revocations: [] });
      },
      Number(url.searchParams.get('wait')) * 1000,
    );
    this.waiting.add(wake);
    response.once('close', () => {
      this.waiting.delete(wake);
      clearTimeout(timer);
    });
  }
}

/** The claims of an access token the stand-in issues. */
const craftedClaims = () => ({ ...accessClaims('alice@wonderland.space'), iss: CRAFTED_ISSUER, aud: 'fib-api' });

/** A signing key of the stand-in: its public JWK as the service lists it, and access tokens it signs. */
async function signingKey() {
  const { privateKey }: { privateKey: KeyObject } = generateKeyPairSync('ed25519');
  const kid = await kidOf(privateKey);
  const { x, crv, kty } = await exportJWK(privateKey);
  return {
    kid,
    jwk: { kty, crv, x, kid, alg: 'EdDSA', use: 'sig' } as JWK,
    token: (claims: object = craftedClaims()) => `Bearer ${forge({ alg: 'EdDSA', typ: 'at+jwt', kid }, claims, privateKey)}`,
  };
}

/** The refusal `verify` rejects with, or undefined when it accepts the token. */
async function rejection(verifier: Verifier, authorization: string): Promise<VerificationError | undefined> {
  try {
    await verifier.verify(authorization);
    return undefined;
  } catch (error) {
    assert.ok(error instanceof VerificationError, String(error));
    return error;
  }
}

/** Polls `check` until it holds, for at most `deadlineMs`. */
async function until(what: string, check: () => boolean | Promise<boolean>, deadlineMs = 5000): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  while (!(await check())) {
    assert.ok(performance.now() < deadline, `${what}: not within ${deadlineMs} ms`);
    await sleep(20);
  }
}

const unknownKid = refusalOf('tokenKeyIdUnknown').message;
const nowSeconds = () => Math.floor(Date.now() / 1000);

describe('the resource-server library against crafted JWKS and feed answers', () => {
  let service: CraftedService;
  const verifiers: Verifier[] = [];
  const start = (options: Partial<VerifierOptions> = {}) => {
    const verifier = createVerifier({
      url: service.url,
      clientId: 'orders-service',
      clientSecret: 'secret',
      // Long polls of 2 s: stale only after 6 s without one, which a loaded machine does not reach.
      maxStalenessSeconds: 6,
      onEvent: () => {},
      ...options,
    });
    verifiers.push(verifier);
    return verifier;
  };

  before(async () => (service = await CraftedService.start()));
  beforeEach(() => {
    service.jwksStatus = 200;
    service.metadataStatus = 200;
    service.feedRefusal = undefined;
  });
  afterEach(() => Promise.all(verifiers.splice(0).map((verifier) => verifier.close())));
  after(() => service.stop());

  test('a key withdrawn in the feed is refused at once as an unknown key, a refetched JWKS does not bring it back, a snapshot replaces it', async () => {
    const [a, b] = await Promise.all([signingKey(), signingKey()]);
    service.jwks = [a.jwk, b.jwk];
    const events: VerifierEvent[] = [];
    const verifier = start({
      jwksRefreshSeconds: 1,
      onEvent: (event) => {
        events.push(event);
        throw new Error('a listener that throws does not stop the verifier');
      },
    });
    await verifier.ready();
    assert.equal(await rejection(verifier, a.token()), undefined);

    service.send([{ kid: a.kid, reason: 'key-withdrawn', until: nowSeconds() + 3600 }]);
    await until('the withdrawn key refused', async () => (await rejection(verifier, a.token())) !== undefined);
    const refusal = await rejection(verifier, a.token());
    assert.deepEqual({ status: refusal?.status, message: refusal?.message }, { status: 422, message: unknownKid });
    assert.deepEqual(
      events.flatMap((event) => (event.type === 'key-withdrawn' ? [event.kid] : [])),
      [a.kid],
    );
    assert.equal(await rejection(verifier, b.token()), undefined, 'the other key still verifies');

    // The JWKS still lists the key (a stale cache): fetched again, it stays withdrawn.
    const fetched = service.jwksRequests();
    await until('the JWKS fetched again', () => service.jwksRequests() > fetched);
    assert.equal((await rejection(verifier, a.token()))?.message, unknownKid);

    service.send([{ kid: b.kid, reason: 'key-withdrawn', until: nowSeconds() + 3600 }], true);
    await until('the snapshot applied', async () => (await rejection(verifier, b.token())) !== undefined);
    assert.equal((await rejection(verifier, b.token()))?.message, unknownKid);
    assert.equal(await rejection(verifier, a.token()), undefined, 'the snapshot no longer withdraws the first key');

    // Kept until `until` and a minute of grace, then forgotten like every entry.
    service.send([{ kid: a.kid, reason: 'key-withdrawn', until: nowSeconds() - 61 }]);
    await until('the expired withdrawal forgotten', async () => (await rejection(verifier, a.token())) === undefined, 10_000);
    assert.equal((await rejection(verifier, b.token()))?.message, unknownKid, 'the withdrawal in force stays');
  });

  test('the JWKS is fetched again every jwksRefreshSeconds: a key it no longer lists stops verifying', async () => {
    const [a, b] = await Promise.all([signingKey(), signingKey()]);
    service.jwks = [a.jwk, b.jwk];
    const events: VerifierEvent[] = [];
    const verifier = start({ jwksRefreshSeconds: 1, onEvent: (event) => events.push(event) });
    await verifier.ready();
    assert.equal(await rejection(verifier, b.token()), undefined);

    service.jwks = [a.jwk];
    await until('the unlisted key refused', async () => (await rejection(verifier, b.token())) !== undefined);
    assert.equal((await rejection(verifier, b.token()))?.message, unknownKid);

    // A refresh that fails keeps the keys fetched before, and says so.
    service.jwksStatus = 500;
    await until('a failed refresh told', () => events.some(({ type }) => type === 'keys-refresh-failed'));
    assert.match(
      events.find(({ type }) => type === 'keys-refresh-failed')!.message,
      /answered 500\); the keys fetched before stay in use/,
    );
    assert.equal(await rejection(verifier, a.token()), undefined);
  });

  test('a token that lives longer than maxTokenAgeSeconds is refused with 401 invalid_token', async () => {
    const key = await signingKey();
    service.jwks = [key.jwk];
    const verifier = start({ maxTokenAgeSeconds: 600 });
    await verifier.ready();
    const claims = craftedClaims();
    const now = nowSeconds();
    assert.equal(await rejection(verifier, key.token({ ...claims, iat: now, exp: now + 600 })), undefined);
    for (const [why, iat, exp] of [
      ['exp - iat over the cap', now, now + 601],
      ['issued in the future, expiring past the cap', now + 3600, now + 3600 + 300],
    ] as const) {
      const refusal = await rejection(verifier, key.token({ ...claims, iat, exp }));
      assert.deepEqual(
        { status: refusal?.status, message: refusal?.message, challenge: refusal?.challenge, code: refusal?.code },
        {
          status: 401,
          message: 'The access token is valid for longer than the 600 seconds this service accepts.',
          challenge: 'Bearer error="invalid_token"',
          code: 'ERR_FIB_AUTH_TOKEN_REFUSED',
        },
        why,
      );
    }
    const { iat: _withoutIat, ...noIat } = claims;
    assert.equal((await rejection(verifier, key.token(noIat)))?.message, refusalOf('tokenClaimsMissing').message);
  });

  test("iss and aud: the metadata's by default, the options' when given; a token without them is refused", async () => {
    const key = await signingKey();
    service.jwks = [key.jwk];
    const verifier = start();
    await verifier.ready();
    assert.equal(await rejection(verifier, key.token()), undefined);
    assert.equal(await rejection(verifier, key.token({ ...craftedClaims(), aud: ['other-api', 'fib-api'] })), undefined);
    const other = refusalOf('tokenIssuerOrAudienceOther').message;
    const { iss: _iss, aud: _aud, ...older } = craftedClaims();
    for (const [why, claims, message] of [
      ['another issuer', { ...craftedClaims(), iss: 'https://other.example' }, other],
      ['another audience', { ...craftedClaims(), aud: 'other-api' }, other],
      ['the audience of refresh tokens', { ...craftedClaims(), aud: CRAFTED_ISSUER }, other],
      ['neither iss nor aud (a token from before they existed)', older, refusalOf('tokenClaimsMissing').message],
    ] as const) {
      const refusal = await rejection(verifier, key.token(claims));
      assert.deepEqual(
        { status: refusal?.status, message: refusal?.message, code: refusal?.code },
        { status: 401, message, code: 'ERR_FIB_AUTH_TOKEN_REFUSED' },
        why,
      );
    }
    // A resource server that is one audience among several names itself.
    const orders = start({ audience: 'orders-api' });
    await orders.ready();
    assert.equal((await rejection(orders, key.token()))?.message, other);
    assert.equal(await rejection(orders, key.token({ ...craftedClaims(), aud: ['fib-api', 'orders-api'] })), undefined);
    const elsewhere = start({ issuer: 'https://elsewhere.example', audience: ['fib-api'] });
    await elsewhere.ready();
    assert.equal((await rejection(elsewhere, key.token()))?.message, other);
  });

  test('until the metadata answers, tokens are refused with 503 and ready() waits', async () => {
    const key = await signingKey();
    service.jwks = [key.jwk];
    service.metadataStatus = 404;
    const verifier = start({ readyTimeoutSeconds: 1 });
    const error = await verifier.ready().then(
      () => assert.fail('ready() resolved'),
      (error: unknown) => error,
    );
    assert.ok(error instanceof ReadyTimeoutError, String(error));
    assert.match(error.message, /oauth-authorization-server answered 404/);
    const refusal = await rejection(verifier, key.token());
    assert.deepEqual([refusal?.status, refusal?.code], [503, 'ERR_FIB_AUTH_TOKEN_REFUSED']);
    service.metadataStatus = 200;
    await until('the metadata fetched', async () => (await rejection(verifier, key.token())) === undefined);
  });

  test('a refused client asks again every 30 s, not every 2: its 401s count against its address', async () => {
    service.feedRefusal = 401;
    const feedRequests = () => service.requests.filter((path) => path.startsWith(`${BASE}/revocations`)).length;
    const before = feedRequests();
    const verifier = start();
    await assert.rejects(verifier.ready(), FeedRefusedError);
    await sleep(2500); // retries after other failures come after 100, 200, 400, 800 ms, then every 2 s
    assert.equal(feedRequests() - before, 1);
  });
});

describe('the resource-server library as a newcomer meets it', () => {
  test('createVerifier refuses a missing option at once, with a VerifierOptionsError', () => {
    const good: VerifierOptions = { url: 'http://127.0.0.1:8080', clientId: 'orders-service', clientSecret: 'secret' };
    const cases: [string, Partial<Record<keyof VerifierOptions, unknown>>, RegExp][] = [
      ['no clientSecret', { clientSecret: undefined }, /^clientSecret is missing/],
      ['an empty clientSecret', { clientSecret: '' }, /^clientSecret is missing/],
      ['no clientId', { clientId: undefined }, /^clientId is missing/],
      ['no url', { url: undefined }, /^url is missing/],
      ['a url without its scheme', { url: 'localhost:8080' }, /^url must be the service's http\(s\) base URL/],
      ['maxStalenessSeconds below 2', { maxStalenessSeconds: 1 }, /^maxStalenessSeconds must be .* at least 2, not 1\./],
      ['jwksRefreshSeconds 0', { jwksRefreshSeconds: 0 }, /^jwksRefreshSeconds must be/],
      ['maxTokenAgeSeconds NaN', { maxTokenAgeSeconds: NaN }, /^maxTokenAgeSeconds must be/],
      ['readyTimeoutSeconds Infinity', { readyTimeoutSeconds: Infinity }, /^readyTimeoutSeconds must be/],
      ['onEvent not a function', { onEvent: 'console' }, /^onEvent must be a function/],
      ['an issuer with a path', { issuer: 'https://auth.example.com/fib' }, /^issuer must be the service's ISSUER, an origin/],
      ['an empty audience', { audience: '' }, /^audience must be a non-empty string or a non-empty list/],
      ['an empty list of audiences', { audience: [] }, /^audience must be a non-empty string or a non-empty list/],
    ];
    for (const [why, change, message] of cases) {
      assert.throws(
        () => void createVerifier({ ...good, ...change } as VerifierOptions).close(),
        (error) =>
          error instanceof VerifierOptionsError &&
          error.code === 'ERR_FIB_AUTH_OPTIONS_INVALID' &&
          VerifierOptionsError.code === error.code &&
          message.test(error.message),
        why,
      );
    }
  });

  test('ready() rejects after readyTimeoutSeconds, naming the URL and why, when nothing answers there', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const verifier = createVerifier({ url, clientId: 'orders-service', clientSecret: 'secret', readyTimeoutSeconds: 1 });
    try {
      const started = performance.now();
      const error = await Promise.race([
        verifier.ready().then(
          () => assert.fail('ready() resolved'),
          (error: unknown) => error,
        ),
        sleep(5000).then(() => assert.fail('ready() did not settle within 5 s')),
      ]);
      assert.ok(error instanceof ReadyTimeoutError, String(error));
      assert.equal(error.code, 'ERR_FIB_AUTH_READY_TIMEOUT');
      assert.match(error.message, new RegExp(`^fib-auth at ${url} was not ready within 1 seconds: .*ECONNREFUSED`));
      assert.ok(performance.now() - started >= 900, `rejected after ${Math.round(performance.now() - started)} ms`);
      const refusal = await rejection(verifier, 'Bearer a.b.c');
      assert.equal(refusal?.code, 'ERR_FIB_AUTH_TOKEN_REFUSED');
    } finally {
      await verifier.close();
    }
  });

  test('a wrong secret: ready() rejects with a FeedRefusedError, onEvent hears of it, nothing goes unhandled', async () => {
    const t = await startTestServer();
    await new Clients(t.server.store, Date.now).add('orders-service');
    const unhandled: unknown[] = [];
    const recordUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', recordUnhandled);
    const events: VerifierEvent[] = [];
    const verifier = createVerifier({
      url: t.url,
      clientId: 'orders-service',
      clientSecret: 'not the secret',
      onEvent: (event) => events.push(event),
    });
    try {
      const error = await verifier.ready().then(
        () => assert.fail('ready() resolved'),
        (error: unknown) => error,
      );
      assert.ok(error instanceof FeedRefusedError, String(error));
      assert.equal(error.code, 'ERR_FIB_AUTH_FEED_REFUSED');
      assert.equal(error.status, 401);
      assert.match(error.message, /answered 401: /);
      assert.ok(error.message.includes(String(refusalOf('clientCredentialsInvalid').message)), error.message);
      assert.deepEqual(
        events.map(({ type }) => type),
        ['feed-refused'],
      );
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', recordUnhandled);
      await verifier.close();
      await t.stop();
    }
  });
});
