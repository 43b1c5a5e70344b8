import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { FAILURES } from '../src/http/failures.js';
import { assertExample, BASE, example, startTestServer, type TestServer } from './support/harness.js';
import { bundledSpecPath } from '../src/package-root.js';

describe('outside the operations', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  test('an unknown path is 404 in the envelope', async () => {
    for (const path of ['/', '/auth/api/v1/authentication-management', `${BASE}/logout/extra`, '/metrics.php?x=1']) {
      const reply = await t.call('GET', path);
      assert.equal(reply.status, 404, path);
      assert.deepEqual(reply.body.status, { code: 404, name: 'Not Found', message: 'No operation exists at this path.' });
    }
  });

  test('a known path with another method is 405 with Allow', async () => {
    const logout = await t.call('GET', `${BASE}/logout`);
    assert.equal(logout.status, 405);
    assert.equal(logout.headers.allow, 'POST');
    assert.equal(logout.body.status.name, 'Method Not Allowed');
    const session = await t.call('PUT', `${BASE}/session`);
    assert.equal(session.status, 405);
    assert.equal(session.headers.allow, 'POST, DELETE, PATCH');
  });

  test('logout ignores a body, whatever its size or type', async () => {
    const { accessToken } = await t.newSession();
    const reply = await t.call('POST', `${BASE}/logout`, {
      headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'text/plain' },
      body: 'x'.repeat(64 * 1024),
    });
    await assertExample(reply, 'LoggedOut');
  });
});

describe('the contract and the server say the same things', () => {
  // Answers outside any operation are documented in info.description, not as examples.
  const outsideOperations = new Set(['noOperation', 'headersTooLarge', 'requestTimeout', 'requestUnparsable']);
  const catalog = new Set<string>(
    Object.entries(FAILURES).flatMap(([reason, { message }]) =>
      typeof message === 'string' && !outsideOperations.has(reason) ? [message] : [],
    ),
  );
  const spec = readFileSync(bundledSpecPath, 'utf8');

  test("every failure message the domain can send is one of the contract's examples", () => {
    const missing = [...catalog].filter((message) => !spec.includes(JSON.stringify(message).slice(1, -1)));
    assert.deepEqual(missing, []);
  });

  test("every error example's message is one the server sends", () => {
    const httpLayer = [
      'The request body is not valid JSON.',
      'The request body is required.',
      'The request body is larger than 16384 bytes.',
      'The request body must be sent as application/json.',
    ];
    const schemaMessages = /^The (request body (field '\w+' )?|query parameter '\w+' )must /;
    const names = spec.match(/^ {4}[A-Z]\w+:\n {6}summary:/gm)!.map((m) => m.trim().split(':')[0]);
    assert.ok(names.length >= 35, `found ${names.length} examples`);
    for (const name of names) {
      const { status } = example(name);
      // Success and 5xx messages come from the handlers and the error layer; their tests compare them to these examples.
      if (!status || status.code === 200 || status.code >= 500) continue;
      const message: string = status.message;
      assert.ok(catalog.has(message) || httpLayer.includes(message) || schemaMessages.test(message), `${name}: ${message}`);
    }
  });
});
