import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createAuthClient, type AuthClient, type AuthOperation, type AuthResult } from 'fib-auth-client';
import { bundledSpecPath, packageRoot } from '../src/package-root.js';
import {
  BASE,
  bearer,
  bodyOf,
  envelopeOf,
  example,
  isEnvelope,
  rawCall,
  resolvedContract,
  startTestServer,
  type CallOptions,
  type Reply,
  type ResolvedOperation,
  type TestServer,
} from './support/harness.js';
import { freePort, startProcess, type StartedProcess } from './support/processes.js';
import { PRISM_LISTENING, startMock } from './support/prism.js';
import { ALICE, ALICE_SIGN_IN, BOB_SIGNATURE, signInBody, signMessage } from './support/vectors.js';
import { startWrongLogoutBody, type WrongLogoutBody } from './support/wrong-logout-body.js';

const PRISM = join(packageRoot, 'node_modules', '.bin', 'prism');
/** The stream of the contract's Shared Signals examples. */
const STREAM_ID = '5e1f5e0c-3f4a-4b8e-9d36-1d5b2f6a7c90';

/** Contract violations Prism found, from its `sl-violations` header. */
const violations = (reply: Reply) =>
  JSON.parse(String(reply.headers['sl-violations'] ?? '[]')) as { message: string; location: string[] }[];

/** How the client's test against the mock makes each operation's call, with a signed-in client where it needs one. */
const calls: {
  [Op in AuthOperation]: { signInFirst: boolean; call: (client: AuthClient) => Promise<AuthResult<unknown, AuthOperation>> };
} = {
  createSignInChallenge: { signInFirst: false, call: (client) => client.challenge(ALICE_SIGN_IN.email) },
  authorizeUser: { signInFirst: false, call: (client) => client.signIn(ALICE_SIGN_IN) },
  refreshTokens: { signInFirst: true, call: (client) => client.refresh() },
  logout: { signInFirst: true, call: (client) => client.logout() },
  endSession: { signInFirst: true, call: (client) => client.endSession() },
};

describe('the Prism mock (npm run mock)', () => {
  let mock: StartedProcess;
  let url: string;
  // A request each operation accepts: the mock answers it with the contract's examples.
  let valid: Record<string, CallOptions>;
  const operations: { operationId: string; method: string; path: string; responses: ResolvedOperation['responses'] }[] = [];

  before(async () => {
    const contract = await resolvedContract();
    const { data: tokens } = example('SignedIn');
    // The mock checks that credentials are sent, not whose they are.
    const basic = { authorization: `Basic ${Buffer.from('resource-server:secret').toString('base64')}` };
    valid = {
      createSignInChallenge: { body: { email: ALICE_SIGN_IN.email } },
      authorizeUser: { body: ALICE_SIGN_IN },
      refreshTokens: { headers: bearer(tokens.refreshToken) },
      endSession: { headers: bearer(tokens.refreshToken) },
      logout: { headers: bearer(tokens.accessToken) },
      introspectToken: {
        headers: { ...basic, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: tokens.accessToken }).toString(),
      },
      listRevocations: { headers: basic },
      getSsfConfiguration: {},
      createStream: { headers: basic, body: {} },
      readStreams: { headers: basic },
      replaceStream: { headers: basic, body: { stream_id: STREAM_ID } },
      updateStream: { headers: basic, body: { stream_id: STREAM_ID, description: 'Orders service (Go), production' } },
      deleteStream: { headers: basic },
      readStreamStatus: { headers: basic },
      updateStreamStatus: { headers: basic, body: { stream_id: STREAM_ID, status: 'paused' } },
      verifyStream: { headers: basic, body: { stream_id: STREAM_ID, state: 'VGhpcyBpcyBh' } },
      pollStream: { headers: basic, body: { returnImmediately: true } },
      getLiveness: {},
      getReadiness: {},
      getJwks: {},
      getAuthorizationServerMetadata: {},
    };
    const started = await startMock();
    ({ mock, url } = started);
    assert.equal(url, `http://127.0.0.1:${started.port}`);
    for (const [path, pathItem] of Object.entries(contract.paths)) {
      for (const [method, operation] of Object.entries(pathItem)) {
        operations.push({
          operationId: operation.operationId,
          method: method.toUpperCase(),
          path,
          responses: operation.responses,
        });
      }
    }
    assert.deepEqual(operations.map((o) => o.operationId).sort(), Object.keys(valid).sort());
  });
  after(() => mock?.stop());

  /** The query a request needs where the operation requires one. */
  const queries: Record<string, string> = {
    deleteStream: `?stream_id=${STREAM_ID}`,
    readStreamStatus: `?stream_id=${STREAM_ID}`,
  };
  const call = (operation: (typeof operations)[number], headers: Record<string, string> = {}) =>
    rawCall(url, operation.method, operation.path.replace('{stream_id}', STREAM_ID) + (queries[operation.operationId] ?? ''), {
      ...valid[operation.operationId],
      headers: { ...valid[operation.operationId].headers, ...headers },
    });
  /** The one media type of a response, and its named examples; none for a response without a body (204). */
  const mediaOf = (operation: (typeof operations)[number], status: string) =>
    Object.entries(operation.responses[status].content ?? {})[0] ?? ['', { examples: {} }];
  /** The operation's success: 200, 201 or 204. */
  const successOf = (operation: (typeof operations)[number]) =>
    Object.keys(operation.responses).find((status) => status < '300')!;
  const firstExample = (operation: (typeof operations)[number], status: string) =>
    Object.values(mediaOf(operation, status)[1].examples)[0].value;

  test('each operation answers its success example', async () => {
    for (const operation of operations) {
      const reply = await call(operation);
      const status = successOf(operation);
      assert.equal(reply.status, Number(status), operation.operationId);
      assert.deepEqual(violations(reply), [], operation.operationId);
      if (status === '204') continue;
      assert.equal(reply.headers['content-type'], mediaOf(operation, status)[0], operation.operationId);
      assert.deepEqual(reply.body, firstExample(operation, status), operation.operationId);
    }
  });

  test('Prefer: code=N answers that code, and example=NAME each of its named examples', async () => {
    let answered = 0;
    for (const operation of operations) {
      for (const status of Object.keys(operation.responses)) {
        const where = `${operation.operationId} ${status}`;
        const byCode = await call(operation, { prefer: `code=${status}` });
        assert.equal(byCode.status, Number(status), where);
        if (status === '204') continue;
        assert.deepEqual(byCode.body, firstExample(operation, status), where);
        if (status === '401') {
          const challenge = operation.responses['401'].headers!['WWW-Authenticate'].schema.example;
          assert.equal(byCode.headers['www-authenticate'], challenge, where);
        }
        for (const [name, { value }] of Object.entries(mediaOf(operation, status)[1].examples)) {
          const byName = await call(operation, { prefer: `code=${status}, example=${name}` });
          assert.deepEqual(
            { status: byName.status, body: byName.body },
            { status: Number(status), body: value },
            `${where} ${name}`,
          );
          answered++;
        }
      }
    }
    assert.ok(answered >= 60, `${answered} named examples answered`);
  });

  test("every documented answer of the challenge, sign-in, refresh, logout and DELETE /session is decoded into the client's typed result", async () => {
    const contract = await resolvedContract();
    let decoded = 0;
    for (const [path, pathItem] of Object.entries(contract.paths)) {
      for (const [method, operation] of Object.entries(pathItem)) {
        const operationId = operation.operationId as AuthOperation;
        if (!(operationId in calls)) continue;
        for (const [status, response] of Object.entries(operation.responses)) {
          for (const [name, { value }] of Object.entries(response.content?.['application/json'].examples ?? {})) {
            // The mock answers this operation's requests with the example; every other request with its 200.
            const client = createAuthClient({
              baseUrl: url,
              fetch: (input, init) => {
                const request = new Request(input, init);
                if (request.method === method.toUpperCase() && new URL(request.url).pathname === path)
                  request.headers.set('Prefer', `code=${status}, example=${name}`);
                return fetch(request);
              },
            });
            const { signInFirst, call } = calls[operationId];
            if (signInFirst) assert.equal((await client.signIn(ALICE_SIGN_IN)).error, undefined);
            const result = await call(client);
            const where = `${operationId} ${status} ${name}`;
            assert.ok(isEnvelope(value), where);
            if (status === '200') assert.deepEqual(result, { data: value.data }, where);
            else {
              assert.ok(result.error?.kind === 'answered', `${where}: ${JSON.stringify(result)}`);
              const { operation: failed, status: envelope } = result.error;
              assert.deepEqual({ operation: failed, status: envelope }, { operation: operationId, status: value.status }, where);
            }
            decoded++;
          }
        }
      }
    }
    assert.ok(decoded >= 60, `${decoded} examples decoded`);
    console.log(`${decoded} examples decoded`);
  });

  test("a request that breaks the contract gets Prism's validation answer", async () => {
    const logout = operations.find((o) => o.operationId === 'logout')!;
    const noAuthorization = await rawCall(url, logout.method, logout.path);
    assert.equal(noAuthorization.status, 401);
    assert.deepEqual(noAuthorization.body, example('AuthorizationMissing'));
    assert.deepEqual(
      violations(noAuthorization).map((v) => v.message),
      ['Invalid security scheme used'],
    );

    // Prism answers a body that breaks the schema with the operation's first 422 example; the
    // real server answers 400. The violations header says what is wrong.
    const signIn = operations.find((o) => o.operationId === 'authorizeUser')!;
    const badBody = await rawCall(url, signIn.method, signIn.path, { body: { email: 42, signature: ALICE.signature } });
    assert.equal(badBody.status, 422);
    assert.deepEqual(badBody.body, firstExample(signIn, '422'));
    assert.deepEqual(
      violations(badBody)
        .map((v) => v.message)
        .sort(),
      ["Request body must have required property 'authPublicKeyHex'", 'Request body property email must be string'],
    );
  });
});

describe('prism proxy --errors in front of the real server', () => {
  let t: TestServer;
  /** Between the proxy and the server: it passes every answer unchanged, until the last test breaks the logout's. */
  let fixture: WrongLogoutBody;
  let proxy: StartedProcess;
  let url: string;
  // Behind Prism, as behind any proxy, the client's address is in X-Forwarded-For.
  const LIMIT = 20;
  before(async () => {
    t = await startTestServer({ TRUST_PROXY: '1', RATE_LIMIT_REFUSED_PER_ADDRESS: String(LIMIT) });
    fixture = await startWrongLogoutBody(t.url);
    fixture.breaking = false;
    const port = String(await freePort());
    proxy = await startProcess(
      PRISM,
      ['proxy', bundledSpecPath, fixture.url, '--errors', '--port', port, '--host', '127.0.0.1'],
      {
        ready: PRISM_LISTENING,
      },
    );
    url = proxy.readyMatch![1];
  });
  after(async () => {
    await proxy?.stop();
    await fixture?.stop();
    await t?.stop();
  });

  test('sign-in, refresh and logout pass through with no contract violation', async () => {
    const through = async (status: number, method: string, path: string, options?: CallOptions) => {
      const reply = await rawCall(url, method, path, options);
      const where = `${method} ${path} → ${reply.status} ${JSON.stringify(reply.body)} ${String(reply.headers['sl-violations'] ?? '')}`;
      assert.deepEqual(violations(reply), [], where);
      assert.equal(reply.status, status, where);
      assert.equal(envelopeOf(reply).status.code, status, where);
      return reply;
    };
    const signIn = async (body: object) =>
      (await bodyOf(await through(200, 'POST', `${BASE}/session`, { body }), 'authorizeUser', 200)).data;

    await t.addUser(ALICE.email, ALICE.publicKeyHex);
    const first = await signIn(ALICE_SIGN_IN);
    await through(404, 'POST', `${BASE}/session`, {
      body: { ...ALICE_SIGN_IN, email: 'bob@wonderland.space', signature: BOB_SIGNATURE },
    });
    await through(422, 'POST', `${BASE}/session`, { body: { ...ALICE_SIGN_IN, signature: BOB_SIGNATURE } });

    const refreshed = await through(200, 'PATCH', `${BASE}/session`, { headers: bearer(first.refreshToken) });
    const second = (await bodyOf(refreshed, 'refreshTokens', 200)).data;
    await through(401, 'POST', `${BASE}/logout`, { headers: bearer(first.accessToken) }); // retired by the refresh
    await through(200, 'POST', `${BASE}/logout`, { headers: bearer(second.accessToken) });
    await through(401, 'POST', `${BASE}/logout`, { headers: bearer(second.accessToken) }); // already logged out
    await through(401, 'PATCH', `${BASE}/session`, { headers: bearer(second.refreshToken) }); // session logged out

    const third = await signIn(ALICE_SIGN_IN);
    await through(200, 'PATCH', `${BASE}/session`, { headers: bearer(third.refreshToken) });
    await through(401, 'PATCH', `${BASE}/session`, { headers: bearer(third.refreshToken) }); // reuse revokes the session
    await through(422, 'POST', `${BASE}/logout`, { headers: bearer(`${third.accessToken.slice(0, -4)}AAAA`) }); // signature altered
    assert.ok(await t.server.store.removeUser(ALICE.email, Math.floor(Date.now() / 1000)));
    await through(404, 'POST', `${BASE}/logout`, { headers: bearer(third.accessToken) }); // the user is gone
  });

  test('a challenge sign-in, its replay, DELETE /session and a 429 pass through with no contract violation', async () => {
    const through = async (status: number, method: string, path: string, options?: CallOptions) => {
      const reply = await rawCall(url, method, path, options);
      const where = `${method} ${path} → ${reply.status} ${JSON.stringify(reply.body)} ${String(reply.headers['sl-violations'] ?? '')}`;
      assert.deepEqual(violations(reply), [], where);
      assert.equal(reply.status, status, where);
      return reply;
    };
    const s = await t.newSession();
    const challenge = await through(200, 'POST', `${BASE}/session/challenge`, { body: { email: s.email } });
    const { nonce, message } = (await bodyOf(challenge, 'createSignInChallenge', 200)).data;
    const proof = { ...signInBody(s.email, s.key), signature: signMessage(message, s.key), nonce };
    const { refreshToken } = (await bodyOf(await through(200, 'POST', `${BASE}/session`, { body: proof }), 'authorizeUser', 200))
      .data;
    await through(422, 'POST', `${BASE}/session`, { body: proof }); // the replay
    await through(200, 'DELETE', `${BASE}/session`, { headers: bearer(refreshToken) });
    await through(401, 'DELETE', `${BASE}/session`, { headers: bearer(refreshToken) });

    // Prism answers a request without credentials itself: these carry a token that cannot be parsed.
    const from = { ...bearer('x.y.z'), 'x-forwarded-for': '198.51.100.23' };
    for (let i = 0; i < LIMIT; i += 1) await through(401, 'POST', `${BASE}/logout`, { headers: from });
    const limited = await through(429, 'POST', `${BASE}/logout`, { headers: from });
    assert.match(String(limited.headers['retry-after']), /^\d+$/);
    assert.equal(limited.headers['ratelimit-policy'], `"refused-per-address";q=${LIMIT};w=60`);
  });

  test('reports a logout body that breaks the contract', async () => {
    fixture.breaking = true;
    try {
      const { accessToken } = await t.newSession();
      const reply = await rawCall(url, 'POST', `${BASE}/logout`, { headers: bearer(accessToken) });
      assert.equal(reply.status, 500);
      assert.match(String(reply.headers['content-type']), /^application\/problem\+json/);
      assert.ok(
        violations(reply).some((v) => v.location.join('.') === 'response.body.status.code'),
        String(reply.headers['sl-violations']),
      );
    } finally {
      fixture.breaking = false;
    }
  });
});
