import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createAuthClient, type AuthClient, type AuthOperation, type AuthResult } from 'fib-auth/client';
import { ALICE_SIGN_IN } from './support/vectors.js';
import { isEnvelope, resolvedContract } from './support/harness.js';
import { startMock } from './support/prism.js';
import type { StartedProcess } from './support/processes.js';

let mock: StartedProcess;
let url: string;
before(async () => {
  ({ mock, url } = await startMock());
});
after(() => mock?.stop());

/** How the test makes each operation's call, with a signed-in client where it needs one. */
const calls: {
  [Op in AuthOperation]: { signInFirst: boolean; call: (client: AuthClient) => Promise<AuthResult<unknown, AuthOperation>> };
} = {
  createSignInChallenge: { signInFirst: false, call: (client) => client.challenge(ALICE_SIGN_IN.email) },
  authorizeUser: { signInFirst: false, call: (client) => client.signIn(ALICE_SIGN_IN) },
  refreshTokens: { signInFirst: true, call: (client) => client.refresh() },
  logout: { signInFirst: true, call: (client) => client.logout() },
  endSession: { signInFirst: true, call: (client) => client.endSession() },
};

test("every documented answer of the challenge, sign-in, refresh, logout and DELETE /session is decoded into the client's typed result", async () => {
  const contract = await resolvedContract();
  let decoded = 0;
  for (const [path, pathItem] of Object.entries(contract.paths)) {
    for (const [method, operation] of Object.entries(pathItem)) {
      const operationId = operation.operationId as AuthOperation;
      if (!(operationId in calls)) continue;
      for (const [status, response] of Object.entries(operation.responses)) {
        for (const [name, { value }] of Object.entries(response.content['application/json'].examples)) {
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
