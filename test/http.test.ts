import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertExample, BASE, envelopeOf, startTestServer, type TestServer } from './support/harness.js';

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
      assert.deepEqual(envelopeOf(reply).status, { code: 404, name: 'Not Found', message: 'No operation exists at this path.' });
    }
  });

  test('a known path with another method is 405 with Allow', async () => {
    const logout = await t.call('GET', `${BASE}/logout`);
    assert.equal(logout.status, 405);
    assert.equal(logout.headers.allow, 'POST');
    assert.equal(envelopeOf(logout).status.name, 'Method Not Allowed');
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
