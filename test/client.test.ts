import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { after, before, describe, test, type TestContext } from 'node:test';
import {
  AuthClientError,
  createAuthClient,
  memoryStorage,
  type AuthClient,
  type AuthClientOptions,
  type StoredTokens,
  type TokenStorage,
} from 'fib-auth-client';
import { refreshesSeen } from './support/client.js';
import { ALICE_SIGN_IN } from './support/vectors.js';
import { BASE, example, startTestServer, type EnvelopeExampleName, type TestServer } from './support/harness.js';
import { freePort } from './support/processes.js';
import { ALICE, BOB_SIGNATURE, ed25519FromSeed, signMessage } from './support/vectors.js';

/** Signs Alice in through a new client and returns it. */
async function signedIn(t: TestServer, options: Omit<AuthClientOptions, 'baseUrl'> = {}): Promise<AuthClient> {
  const client = createAuthClient({ baseUrl: t.url, ...options });
  const { data, error } = await client.signIn(ALICE_SIGN_IN);
  assert.equal(error, undefined, JSON.stringify(error));
  assert.equal(data.expirationTime, t.config.accessTokenTtl);
  return client;
}

const accessTokenOf = async (client: AuthClient) => {
  const { data, error } = await client.accessToken();
  assert.equal(error, undefined, JSON.stringify(error));
  return data;
};

/** The envelope status of a named example of the contract. */
const statusOf = (name: EnvelopeExampleName) => example(name).status;

/**
 * Makes Date a clock that the test moves, from here to the end of the test: the client reads
 * Date, and so does the server, which runs in this process.
 */
function movableClock(ctx: TestContext): { passAccessTokenLifetime(): void } {
  ctx.mock.timers.enable({ apis: ['Date'], now: Date.now() });
  return { passAccessTokenLifetime: () => ctx.mock.timers.tick(t.config.accessTokenTtl * 1000) };
}

// One server for the suites below but the last, which needs another configuration.
let t: TestServer;
before(async () => {
  t = await startTestServer();
  await t.addUser(ALICE.email, ALICE.publicKeyHex);
});
after(() => t.stop());

describe('the client against the real server', () => {
  test('signs Alice in with the FIB test vector, refreshes, and logs out', async () => {
    const client = createAuthClient({ baseUrl: t.url });
    const signIn = await client.signIn(ALICE_SIGN_IN);
    assert.equal(signIn.error, undefined);
    assert.deepEqual(Object.keys(signIn.data).sort(), ['accessToken', 'expirationTime', 'refreshToken']);
    assert.equal(await accessTokenOf(client), signIn.data.accessToken, 'a fresh access token is used as it is');

    const refreshed = await client.refresh();
    assert.equal(refreshed.error, undefined);
    assert.notEqual(refreshed.data.refreshToken, signIn.data.refreshToken);
    assert.equal(await accessTokenOf(client), refreshed.data.accessToken);
    assert.deepEqual((await t.logout(signIn.data.accessToken)).body.status, statusOf('AccessTokenRetired'));

    assert.deepEqual(await client.logout(), { data: {} });
    const afterLogout = await t.logout(refreshed.data.accessToken);
    assert.deepEqual(afterLogout.body.status, statusOf('AccessTokenLoggedOut'));
    assert.deepEqual((await t.refresh(refreshed.data.refreshToken)).body.status, statusOf('SessionLoggedOut'));

    // The client forgot the pair: nothing is sent any more.
    const requests = t.logs.length;
    for (const result of [await client.accessToken(), await client.refresh(), await client.logout()]) {
      assert.equal(result.error?.kind, 'signedOut');
      assert.equal(result.error.code, 'ERR_FIB_AUTH_SIGNED_OUT');
      assert.equal(result.error.status.code, 0);
    }
    assert.equal(t.logs.length, requests);
  });

  test('logout with scope global ends every session; the other client then gets 401 and forgets its pair', async () => {
    const phone = await signedIn(t);
    const laptop = await signedIn(t);
    const laptopToken = await accessTokenOf(laptop);
    assert.deepEqual(await phone.logout({ scope: 'global' }), { data: {} });
    assert.deepEqual((await t.logout(laptopToken)).body.status, statusOf('AccessTokenLoggedOut'));

    const before = refreshesSeen(t).length;
    const { error } = await laptop.logout();
    assert.equal(error?.kind, 'answered');
    assert.equal(error.code, 'ERR_FIB_AUTH_ANSWERED');
    assert.equal(error.operation, 'logout');
    assert.deepEqual(error.status, statusOf('AccessTokenLoggedOut'));
    assert.match(String(error.requestId), /^[0-9a-f-]{36}$/);
    // After the 401 the client tried the refresh token once, in case another tab had replaced the pair.
    assert.deepEqual(
      refreshesSeen(t)
        .slice(before)
        .map((r) => r.status),
      [401],
    );
    assert.equal((await laptop.accessToken()).error?.kind, 'signedOut');
  });

  test('logout with scope local leaves the other sessions open', async () => {
    const phone = await signedIn(t);
    const laptop = await signedIn(t);
    assert.deepEqual(await phone.logout({ scope: 'local' }), { data: {} });
    assert.deepEqual(await laptop.logout(), { data: {} });
  });

  test('errors are values carrying the envelope status', async () => {
    const client = createAuthClient({ baseUrl: t.url });
    const wrongSignature = await client.signIn({ ...ALICE_SIGN_IN, signature: BOB_SIGNATURE });
    assert.equal(wrongSignature.error?.kind, 'answered');
    assert.deepEqual(wrongSignature.error.status, statusOf('SignatureNotVerified'));
    const unknownUser = await client.signIn({ ...ALICE_SIGN_IN, email: 'bob@wonderland.space', signature: BOB_SIGNATURE });
    assert.deepEqual(unknownUser.error?.status, statusOf('UserNotFound'));
    assert.equal((await client.accessToken()).error?.kind, 'signedOut', 'a failed sign-in stores nothing');

    // A refresh token the server refuses (here one that was used already, which revokes the session).
    const spent = await signedIn(t);
    const { data: first } = await spent.refresh();
    assert.equal((await t.refresh(first!.refreshToken)).status, 200, 'someone else uses the refresh token');
    const reused = await spent.refresh();
    assert.equal(reused.error?.kind, 'answered');
    assert.deepEqual(reused.error.status, statusOf('RefreshTokenReused'));
    assert.equal((await spent.accessToken()).error?.kind, 'signedOut', 'a refused pair is forgotten');

    const nobody = createAuthClient({ baseUrl: `http://127.0.0.1:${await freePort()}` });
    const unreachable = await nobody.signIn(ALICE_SIGN_IN);
    assert.equal(unreachable.error?.kind, 'unreachable');
    assert.equal(unreachable.error.code, 'ERR_FIB_AUTH_UNREACHABLE');
    assert.equal(unreachable.error.status.code, 0);
    assert.ok(unreachable.error.cause instanceof Error);
  });

  test('an answer outside the contract is an unreachable error with its HTTP status', async () => {
    const proxy = createServer((_request, response) =>
      response.writeHead(502, { 'content-type': 'text/html' }).end('<h1>Bad Gateway</h1>'),
    );
    await once(proxy.listen(0, '127.0.0.1'), 'listening');
    try {
      const client = createAuthClient({ baseUrl: `http://127.0.0.1:${(proxy.address() as { port: number }).port}` });
      const { error } = await client.signIn(ALICE_SIGN_IN);
      assert.equal(error?.kind, 'unreachable');
      assert.deepEqual(error.status, {
        code: 502,
        name: 'Bad Gateway',
        message: 'The service answered HTTP 502 outside its contract.',
      });
    } finally {
      proxy.close();
    }
  });

  test('ten concurrent refresh() calls send one refresh, even on a storage without a lock; all get the same new pair, and the session lives on', async () => {
    const lockless: TokenStorage = { ...memoryStorage(), exclusive: (task) => task() };
    const client = await signedIn(t, { storage: lockless });
    const before = refreshesSeen(t).length;
    const results = await Promise.all(Array.from({ length: 10 }, () => client.refresh()));
    assert.deepEqual(
      refreshesSeen(t)
        .slice(before)
        .map((r) => r.status),
      [200],
    );
    assert.equal(new Set(results.map((r) => r.data?.refreshToken)).size, 1);
    assert.deepEqual(await client.logout(), { data: {} }, 'no reuse was detected: the session was open');
  });

  test('two clients on one storage share one refresh; on separate storages holding the same pair, reuse revokes the session', async () => {
    const storage = memoryStorage();
    const first = await signedIn(t, { storage });
    const second = createAuthClient({ baseUrl: t.url, storage });
    let before = refreshesSeen(t).length;
    const shared = await Promise.all([first.refresh(), second.refresh()]);
    assert.deepEqual(
      refreshesSeen(t)
        .slice(before)
        .map((r) => r.status),
      [200],
    );
    assert.equal(shared[0].data?.refreshToken, shared[1].data?.refreshToken);

    // What the client prevents: the same pair in two places, refreshed by both.
    const pair = (await storage.load())!;
    const copy = (tokens: StoredTokens): TokenStorage => ({ ...memoryStorage(), load: () => tokens, save: () => {} });
    before = refreshesSeen(t).length;
    const [a, b] = [
      createAuthClient({ baseUrl: t.url, storage: copy(pair) }),
      createAuthClient({ baseUrl: t.url, storage: copy(pair) }),
    ];
    await Promise.all([a.refresh(), b.refresh()]);
    assert.deepEqual(
      refreshesSeen(t)
        .slice(before)
        .map((r) => r.status)
        .sort(),
      [200, 401],
    );
    assert.deepEqual((await first.logout()).error?.status, statusOf('SessionRevokedAfterReuse'));
  });
});

describe('the client when the access token expires (the clock is moved, not waited for)', () => {
  test('ten concurrent accessToken() calls right after it expired send one refresh', async (ctx) => {
    const clock = movableClock(ctx);
    const client = await signedIn(t);
    const expired = await accessTokenOf(client);
    clock.passAccessTokenLifetime();
    assert.deepEqual((await t.logout(expired)).body.status, statusOf('AccessTokenExpired'));

    const before = refreshesSeen(t).length;
    const tokens = await Promise.all(Array.from({ length: 10 }, () => accessTokenOf(client)));
    assert.deepEqual(
      refreshesSeen(t)
        .slice(before)
        .map((r) => r.status),
      [200],
    );
    assert.equal(new Set(tokens).size, 1);
    assert.notEqual(tokens[0], expired);
    assert.deepEqual(await client.logout(), { data: {} });
  });

  test('logout after the access token expired refreshes first, then logs out', async (ctx) => {
    const clock = movableClock(ctx);
    const client = await signedIn(t);
    clock.passAccessTokenLifetime();
    const before = refreshesSeen(t).length;
    assert.deepEqual(await client.logout(), { data: {} });
    assert.equal(refreshesSeen(t).length, before + 1);
  });
});

/** A local HTTP service on a port of its own (an origin of its own) that records what it is sent. */
async function recordingService() {
  const service = {
    url: '',
    seen: [] as { authorization?: string; body: string }[],
    /** Which tokens it refuses, as it would an expired or retired one. */
    refuses: (_token: string) => false,
    /** The challenge of its 401 (RFC 6750 §3.1); undefined sends none. */
    challenge: 'Bearer error="invalid_token"' as string | undefined,
    close: () => server.close(),
  };
  const answer = async (request: IncomingMessage, response: ServerResponse) => {
    let body = '';
    for await (const chunk of request) body += chunk;
    const authorization = request.headers.authorization;
    service.seen.push({ authorization, body });
    const token = authorization?.replace(/^Bearer /, '');
    if (token && !service.refuses(token)) {
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ echo: body }));
    } else {
      response.writeHead(401, service.challenge === undefined ? {} : { 'www-authenticate': service.challenge }).end();
    }
  };
  const server = createServer((request, response) => void answer(request, response));
  await once(server.listen(0, '127.0.0.1'), 'listening');
  service.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/reports`;
  return service;
}

describe("the client's fetch, for the caller's requests to other FIB services", () => {
  /** A FIB service the client is told to send the token to (`tokenOrigins`). */
  let service: Awaited<ReturnType<typeof recordingService>>;
  /** Any other origin: it must never see a token. */
  let foreign: Awaited<ReturnType<typeof recordingService>>;
  const signedInFor = () => signedIn(t, { tokenOrigins: [new URL(service.url).origin] });
  before(async () => {
    service = await recordingService();
    foreign = await recordingService();
  });
  after(() => {
    service.close();
    foreign.close();
  });

  test('adds Authorization; after a 401 with the invalid_token challenge refreshes once and sends the request again, body and all', async () => {
    const client = await signedInFor();
    const first = await accessTokenOf(client);
    const init = { method: 'POST', body: '{"report":1}', headers: { 'content-type': 'application/json' } };
    assert.deepEqual(await (await client.fetch(service.url, init)).json(), { echo: '{"report":1}' });
    assert.deepEqual(service.seen.splice(0), [{ authorization: `Bearer ${first}`, body: '{"report":1}' }]);

    service.refuses = (token) => token === first;
    const before = refreshesSeen(t).length;
    const retried = await client.fetch(new Request(service.url, init));
    assert.equal(retried.status, 200);
    assert.deepEqual(await retried.json(), { echo: '{"report":1}' });
    const second = await accessTokenOf(client);
    assert.notEqual(second, first);
    assert.deepEqual(service.seen.splice(0), [
      { authorization: `Bearer ${first}`, body: '{"report":1}' },
      { authorization: `Bearer ${second}`, body: '{"report":1}' },
    ]);
    assert.equal(refreshesSeen(t).length, before + 1);

    // A service that keeps refusing gets one retry, and its 401 is the answer.
    service.refuses = () => true;
    assert.equal((await client.fetch(service.url)).status, 401);
    const third = await accessTokenOf(client);
    assert.deepEqual(
      service.seen.splice(0).map((r) => r.authorization),
      [`Bearer ${second}`, `Bearer ${third}`],
    );
    assert.equal(refreshesSeen(t).length, before + 2);
    service.refuses = () => false;
    assert.deepEqual(await client.logout(), { data: {} });
  });

  test('sends the token to the origin of baseUrl too', async () => {
    const client = await signedInFor();
    const reply = await client.fetch(`${t.url}${BASE}/logout`, { method: 'POST' });
    assert.equal(reply.status, 200, 'the logout went with the access token');
  });

  test('a 401 without the invalid_token challenge is the answer: no refresh, no second request', async () => {
    const client = await signedInFor();
    const token = await accessTokenOf(client);
    service.refuses = () => true;
    const before = refreshesSeen(t).length;
    try {
      for (const challenge of [undefined, 'Bearer', 'Basic realm="reports"', 'Bearer error="insufficient_scope"']) {
        service.challenge = challenge;
        assert.equal((await client.fetch(service.url)).status, 401, String(challenge));
        assert.deepEqual(
          service.seen.splice(0).map((r) => r.authorization),
          [`Bearer ${token}`],
          String(challenge),
        );
      }
      assert.equal(refreshesSeen(t).length, before, 'no refresh');
    } finally {
      service.refuses = () => false;
      service.challenge = 'Bearer error="invalid_token"';
    }
    assert.deepEqual(await client.logout(), { data: {} });
  });

  test('a request to any other origin goes out as it is: the token is never sent there, and its 401 refreshes nothing', async () => {
    const client = await signedInFor();
    const before = refreshesSeen(t).length;
    const bare = await client.fetch(foreign.url, { method: 'POST', body: '{"report":2}' });
    const own = await client.fetch(new Request(foreign.url, { headers: { authorization: 'Bearer not-yours' } }));
    assert.deepEqual(
      foreign.seen.splice(0),
      [
        { authorization: undefined, body: '{"report":2}' },
        { authorization: 'Bearer not-yours', body: '' },
      ],
      'the other origin never sees the token; an Authorization the caller set is left alone',
    );
    assert.deepEqual([bare.status, own.status], [401, 200]);
    assert.equal(refreshesSeen(t).length, before, 'its 401 with Bearer error="invalid_token" refreshes nothing');
    // A client without tokenOrigins keeps the token to the service's own origin.
    const plain = await signedIn(t);
    assert.equal((await plain.fetch(service.url)).status, 401);
    assert.deepEqual(service.seen.splice(0), [{ authorization: undefined, body: '' }]);
    for (const c of [client, plain]) assert.deepEqual(await c.logout(), { data: {} });
  });

  test('tokenOrigins takes origins only', () => {
    for (const origin of ['https://reports.example.com/', 'https://reports.example.com/api', 'reports.example.com']) {
      assert.throws(() => createAuthClient({ baseUrl: t.url, tokenOrigins: [origin] }), TypeError, origin);
    }
  });

  test('rejects with an AuthClientError, sending nothing, when there is no access token', async () => {
    const client = createAuthClient({ baseUrl: t.url, tokenOrigins: [new URL(service.url).origin] });
    await assert.rejects(client.fetch(service.url), (error) => {
      assert.ok(error instanceof AuthClientError);
      assert.equal(error.code, 'ERR_FIB_AUTH_NO_ACCESS_TOKEN');
      assert.equal(AuthClientError.code, 'ERR_FIB_AUTH_NO_ACCESS_TOKEN');
      assert.equal(error.error.kind, 'signedOut');
      return true;
    });
    assert.deepEqual(service.seen, []);
  });
});

describe('fib-auth-client with SIGN_IN_CHALLENGE=required', () => {
  let required: TestServer;
  before(async () => {
    required = await startTestServer({ SIGN_IN_CHALLENGE: 'required' });
    await required.addUser(ALICE.email, ALICE.publicKeyHex);
  });
  after(() => required.stop());

  test('challenge() gives the message to sign; signIn with its nonce works once, the email-only body not at all', async () => {
    const client = createAuthClient({ baseUrl: required.url });
    const emailOnly = await client.signIn(ALICE_SIGN_IN);
    assert.equal(emailOnly.error?.kind === 'answered' && emailOnly.error.status.code, 422);

    const { data: challenge, error } = await client.challenge(ALICE.email);
    assert.equal(error, undefined, JSON.stringify(error));
    const body = {
      ...ALICE_SIGN_IN,
      signature: signMessage(challenge.message, ed25519FromSeed(ALICE.privateKeyHex)),
      nonce: challenge.nonce,
    };
    assert.equal((await client.signIn(body)).error, undefined);
    const replayed = await createAuthClient({ baseUrl: required.url }).signIn(body);
    assert.equal(replayed.error?.kind === 'answered' && replayed.error.status.code, 422);
    assert.deepEqual(await client.logout(), { data: {} });
  });
});

describe('fib-auth-client endSession()', () => {
  test('ends the session with the refresh token after the access token expired, then the client is signed out', async (ctx) => {
    const clock = movableClock(ctx);
    const client = createAuthClient({ baseUrl: t.url });
    const { data: pair } = await client.signIn(ALICE_SIGN_IN);
    assert.ok(pair);
    clock.passAccessTokenLifetime();
    assert.deepEqual(await client.endSession(), { data: {} });
    assert.equal((await client.accessToken()).error?.kind, 'signedOut');
    assert.equal((await client.endSession()).error?.kind, 'signedOut');
    assert.equal((await t.refresh(pair.refreshToken)).status, 401, 'the session is over on the server');
  });
});
