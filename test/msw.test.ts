import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { setupServer } from 'msw/node';
import { createAuthClient } from 'fib-auth-client';
import { authHandlers, createAuthHttp, exampleHandler, type ExampleName, type MockedOperation } from 'fib-auth-client/msw';
import { ALICE_SIGN_IN } from './support/vectors.js';
import { example, resolvedContract } from './support/harness.js';

// An origin nothing listens on: every answer comes from the handlers, and a request they do not
// handle fails the test.
const BASE_URL = 'http://fib-auth.test';
const server = setupServer(...authHandlers({ baseUrl: BASE_URL }));
before(async () => {
  await resolvedContract(); // example() reads it
  server.listen({ onUnhandledRequest: 'error' });
});
afterEach(() => server.resetHandlers());
after(() => server.close());

const signedInClient = async () => {
  const client = createAuthClient({ baseUrl: BASE_URL });
  assert.deepEqual(await client.signIn(ALICE_SIGN_IN), { data: example('SignedIn').data });
  return client;
};

test('by default every operation answers its first 200 example', async () => {
  const client = await signedInClient();
  assert.equal((await client.accessToken()).data, example('SignedIn').data.accessToken);
  assert.deepEqual(await client.refresh(), { data: example('TokensRefreshed').data });
  assert.deepEqual(await client.logout(), { data: {} });
});

test('a test picks the example an operation answers', async () => {
  const client = await signedInClient();
  server.use(exampleHandler('logout', 'AccessTokenLoggedOut', { baseUrl: BASE_URL }));
  const { error } = await client.logout();
  assert.equal(error?.kind, 'answered');
  assert.equal(error.operation, 'logout');
  assert.deepEqual(error.status, example('AccessTokenLoggedOut').status);
  assert.equal((await client.accessToken()).error?.kind, 'signedOut');

  server.use(...authHandlers({ baseUrl: BASE_URL, answers: { authorizeUser: 'UserNotFound', logout: 'LoggedOutEverywhere' } }));
  assert.deepEqual((await client.signIn(ALICE_SIGN_IN)).error?.status, example('UserNotFound').status);
});

test('each handler answers its example as the contract writes it: status, media type, headers and body', async () => {
  const contract = await resolvedContract();
  let answered = 0;
  for (const [path, pathItem] of Object.entries(contract.paths)) {
    for (const [method, operation] of Object.entries(pathItem)) {
      for (const [status, response] of Object.entries(operation.responses)) {
        if (!response.content) continue; // a 204 has no example to answer with
        const [[contentType, media]] = Object.entries(response.content);
        for (const [name, { value }] of Object.entries(media.examples)) {
          const where = `${operation.operationId} ${name}`;
          server.use(exampleHandler(operation.operationId, name as ExampleName<MockedOperation>, { baseUrl: BASE_URL }));
          const reply = await fetch(`${BASE_URL}${path}`, { method: method.toUpperCase() });
          assert.equal(reply.status, Number(status), where);
          assert.equal(reply.headers.get('content-type'), contentType, where);
          for (const [header, { schema }] of Object.entries(response.headers ?? {}))
            assert.equal(reply.headers.get(header), String(schema.example), `${where} ${header}`);
          assert.deepEqual(contentType === 'application/json' ? await reply.json() : await reply.text(), value, where);
          answered++;
        }
      }
    }
  }
  assert.ok(answered >= 60, `${answered} examples answered`);
});

test('without a baseUrl the handlers answer on any origin', async () => {
  server.use(exampleHandler('authorizeUser', 'SignatureNotVerified'));
  const client = createAuthClient({ baseUrl: 'http://localhost:8080' });
  assert.deepEqual((await client.signIn(ALICE_SIGN_IN)).error?.status, example('SignatureNotVerified').status);
});

test('createAuthHttp writes answers no example gives, typed by the contract (openapi-msw)', async () => {
  const http = createAuthHttp({ baseUrl: BASE_URL });
  const scopes: (string | null)[] = [];
  server.use(
    http.post('/auth/api/v1/authentication-management/logout', ({ query, response }) => {
      scopes.push(query.get('scope'));
      return response(200).json({ status: { code: 200, name: 'OK', message: 'Logged out by a custom handler.' }, data: {} });
    }),
  );
  const client = await signedInClient();
  assert.deepEqual(await client.logout({ scope: 'global' }), { data: {} });
  assert.deepEqual(scopes, ['global']);
});
