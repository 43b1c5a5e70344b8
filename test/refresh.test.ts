import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { TEST_ISSUER } from './support/api.js';
import { assertExample, BASE, bodyOf, exactlyOne200, example, startTestServer, type TestServer } from './support/harness.js';
import { decodePart, forge, otherKey, respellings, serverKey } from './support/tokens.js';

describe('refresh', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  test('issues a new pair of the same session and retires the old one at once', async () => {
    const s = await t.newSession();
    const reply = await t.refresh(s.refreshToken);
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body.status, { code: 200, name: 'OK', message: 'Tokens have been successfully refreshed.' });
    const next = reply.body.data;
    assert.equal(next.expirationTime, 300);
    assert.equal(decodePart(next.accessToken, 1).sid, decodePart(s.accessToken, 1).sid);
    assert.notEqual(decodePart(next.accessToken, 1).jti, decodePart(s.accessToken, 1).jti);
    assert.equal(decodePart(next.refreshToken, 1).acjti, decodePart(next.accessToken, 1).jti);
    await assertExample(await t.logout(s.accessToken), 'AccessTokenRetired');
    // The new pair works; refreshing twice in a row works.
    const again = await t.refresh(next.refreshToken);
    assert.equal(again.status, 200);
    assert.equal((await t.logout(again.body.data.accessToken)).status, 200);
  });

  test('tokens carry the docs/design.md §5 headers and claims', async () => {
    const s = await t.newSession();
    const accessHeader = decodePart(s.accessToken, 0);
    const refreshHeader = decodePart(s.refreshToken, 0);
    assert.equal(accessHeader.alg, 'EdDSA');
    assert.equal(accessHeader.typ, 'at+jwt');
    assert.equal(refreshHeader.typ, 'refresh+jwt');
    assert.match(String(accessHeader.kid), /^[A-Za-z0-9_-]{43}$/);
    const access = decodePart(s.accessToken, 1);
    assert.deepEqual(Object.keys(access).sort(), ['acc', 'aud', 'client_id', 'exp', 'iat', 'iss', 'jti', 'role', 'sid', 'sub']);
    assert.equal(access.sub, s.email);
    assert.equal(access.role, 'ROLE_PEER');
    // RFC 9068: the issuer, the audience (one: a string), the client the token was issued to.
    assert.deepEqual([access.iss, access.aud, access.client_id], [TEST_ISSUER, 'fib-api', 'fib-sign-in']);
    assert.equal((access.exp as number) - (access.iat as number), 300);
    const refresh = decodePart(s.refreshToken, 1);
    assert.deepEqual(Object.keys(refresh).sort(), ['acjti', 'aud', 'exp', 'iat', 'iss', 'jti', 'sid', 'sub']);
    // Its audience is the issuer: no resource server that checks `aud` takes it for an access token.
    assert.deepEqual([refresh.iss, refresh.aud], [TEST_ISSUER, TEST_ISSUER]);
    assert.equal((refresh.exp as number) - (refresh.iat as number), 86400);
  });

  test('ISSUER and AUDIENCE: several audiences are a list; a refreshed pair names them too', async () => {
    const other = await startTestServer({ ISSUER: 'https://auth.fib.example', AUDIENCE: 'fib-api, fib-admin-api' });
    try {
      const s = await other.newSession();
      const access = decodePart(s.accessToken, 1);
      assert.deepEqual([access.iss, access.aud], ['https://auth.fib.example', ['fib-api', 'fib-admin-api']]);
      const refreshed = await other.refresh(s.refreshToken);
      assert.equal(refreshed.status, 200);
      assert.deepEqual(decodePart(refreshed.body.data.accessToken, 1).aud, ['fib-api', 'fib-admin-api']);
      assert.equal(decodePart(refreshed.body.data.refreshToken, 1).aud, 'https://auth.fib.example');
      // Another deployment's tokens, signed by another key: 422 before any claim is read.
      assert.equal((await t.logout(s.accessToken)).status, 422);
    } finally {
      await other.stop();
    }
  });

  test('a used refresh token is reuse, however it is spelled: 401 and the whole session is revoked', async () => {
    const s = await t.newSession();
    const next = (await t.refresh(s.refreshToken)).body.data;
    await assertExample(await t.refresh(respellings(s.refreshToken, 2)[5]), 'RefreshTokenReused');
    await assertExample(await t.refresh(next.refreshToken), 'SessionRevokedAfterReuse');
    await assertExample(await t.logout(next.accessToken), 'SessionRevokedAfterReuse');
  });

  test('concurrent refreshes with one token: one wins, the rest are reuse, and nothing of the session works', async () => {
    const s = await t.newSession();
    const reuse = [example('RefreshTokenReused'), example('SessionRevokedAfterReuse')].map((e) => e.status);
    const { winner, losers } = await exactlyOne200(
      16,
      () => t.refresh(s.refreshToken),
      (reply) =>
        assert.ok(
          reuse.some((status) => isDeepStrictEqual(reply.body.status, status)),
          JSON.stringify(reply.body),
        ),
    );
    // The first loser to look finds the session live and revokes it; later ones find it revoked.
    const messages = losers.map((r) => r.body.status.message);
    assert.ok(messages.includes(reuse[0].message), messages.join(' | '));
    const next = (await bodyOf(winner, 'refreshTokens', 200)).data;
    await assertExample(await t.logout(next.accessToken), 'SessionRevokedAfterReuse');
    await assertExample(await t.refresh(next.refreshToken), 'SessionRevokedAfterReuse');
    await assertExample(await t.logout(s.accessToken), 'SessionRevokedAfterReuse');
  });

  test('an access token is not a refresh token', async () => {
    const s = await t.newSession();
    await assertExample(await t.refresh(s.accessToken), 'NotARefreshToken');
    assert.equal((await t.refresh(s.refreshToken)).status, 200, 'the failed attempt did not count as a use');
  });

  test('the parse, signature and claim checks answer as for logout', async () => {
    const s = await t.newSession();
    await assertExample(await t.call('PATCH', `${BASE}/session`), 'AuthorizationMissing');
    await assertExample(
      await t.call('PATCH', `${BASE}/session`, { headers: { authorization: [`Bearer ${s.refreshToken}`, 'Bearer x.y.z'] } }),
      'AuthorizationRepeated',
    );
    const header = decodePart(s.refreshToken, 0);
    const claims = decodePart(s.refreshToken, 1);
    await assertExample(await t.refresh(forge(header, claims, otherKey())), 'TokenSignatureInvalid');
    await assertExample(await t.refresh(forge({ ...header, alg: 'none' }, claims, serverKey(t))), 'TokenAlgorithmRejected');
    const { acjti: _acjti, ...withoutAcjti } = claims;
    await assertExample(await t.refresh(forge(header, withoutAcjti, serverKey(t))), 'TokenClaimsMissing');
    await assertExample(
      await t.refresh(forge(header, { ...claims, exp: Math.floor(Date.now() / 1000) }, serverKey(t))),
      'RefreshTokenExpired',
    );
  });

  test('404 when the user was removed', async () => {
    const s = await t.newSession();
    await t.server.store.removeUser(s.email, Math.floor(Date.now() / 1000));
    await assertExample(await t.refresh(s.refreshToken), 'UserNotFound');
  });

  test('expired sessions are purged, and a token of a purged session is over', async () => {
    const s = await t.newSession();
    const farFuture = Math.floor(Date.now() / 1000) + 2 * 86400;
    assert.ok((await t.server.store.purgeExpiredSessions(farFuture)) >= 1);
    await assertExample(await t.logout(s.accessToken), 'SessionEnded');
  });
});
