import assert from 'node:assert/strict';
import { after, before, describe, test as testOn } from 'node:test';
import { manualClock } from './support/clock.js';
import { DATABASES } from './support/databases.js';
import { assertExample, BASE, bearer, type Reply, startTestServerOn, type TestServer } from './support/harness.js';
import { decodePart, forge, otherKey, serverKey } from './support/tokens.js';

// DELETE /session with the refresh token (docs/design.md §12): the way out for a client whose
// access token expired. It checks the token as refresh does, and ends the session as logout does.

for (const backend of DATABASES) {
  describe(`ending a session with its refresh token on ${backend.name}`, () => {
    const test = (name: string, fn: () => Promise<void>): void => {
      testOn(name, { skip: backend.skip }, fn);
    };
    const clock = manualClock();
    let t: TestServer;
    const endSession = (refreshToken: string | undefined): Promise<Reply> =>
      t.call('DELETE', `${BASE}/session`, { headers: refreshToken === undefined ? {} : bearer(refreshToken) });
    before(async () => {
      if (!backend.skip) t = await startTestServerOn(backend, {}, { clock });
    });
    after(() => t?.stop());

    test('after the access token expired: logout is 401, DELETE /session is 200, then 401 for a second attempt', async () => {
      const s = await t.newSession();
      clock.advance(301); // past ACCESS_TOKEN_TTL (300 s), with no waiting
      await assertExample(await t.logout(s.accessToken), 'AccessTokenExpired');
      await assertExample(await endSession(s.refreshToken), 'SessionEndedByRefreshToken');
      await assertExample(await endSession(s.refreshToken), 'SessionLoggedOut');
      await assertExample(await t.refresh(s.refreshToken), 'SessionLoggedOut');
      const { revocations } = await t.server.store.revocationsAfter(undefined, 1_000_000);
      assert.ok(revocations.some((r) => r.sid === decodePart(s.accessToken, 1).sid && r.reason === 'logout' && !r.jti));
    });

    test('with a live access token too, which then stops working', async () => {
      const s = await t.newSession();
      await assertExample(await endSession(s.refreshToken), 'SessionEndedByRefreshToken');
      await assertExample(await t.logout(s.accessToken), 'AccessTokenLoggedOut');
    });

    test('a refresh token used before is reuse: 401, and the whole session is revoked, as refresh does', async () => {
      const s = await t.newSession();
      const next = (await t.refresh(s.refreshToken)).body.data;
      await assertExample(await endSession(s.refreshToken), 'RefreshTokenReused');
      await assertExample(await endSession(next.refreshToken), 'SessionRevokedAfterReuse');
      await assertExample(await t.logout(next.accessToken), 'SessionRevokedAfterReuse');
    });

    test('the newest refresh token ends the session after a refresh', async () => {
      const s = await t.newSession();
      const next = (await t.refresh(s.refreshToken)).body.data;
      await assertExample(await endSession(next.refreshToken), 'SessionEndedByRefreshToken');
    });

    test('the 401, 422 and 404 order of refresh', async () => {
      const s = await t.newSession();
      await assertExample(await endSession(undefined), 'AuthorizationMissing');
      await assertExample(await endSession(s.accessToken), 'NotARefreshToken');
      const header = decodePart(s.refreshToken, 0);
      const claims = decodePart(s.refreshToken, 1);
      await assertExample(await endSession(forge(header, claims, otherKey())), 'TokenSignatureInvalid');
      await assertExample(
        await endSession(forge({ ...header, jku: 'http://127.0.0.1/' }, claims, serverKey(t))),
        'TokenHeaderUnsupported',
      );
      clock.advance(86400);
      await assertExample(await endSession(s.refreshToken), 'RefreshTokenExpired');
      const removed = await t.newSession();
      assert.ok(await t.server.store.removeUser(removed.email, Math.floor(clock() / 1000)));
      await assertExample(await endSession(removed.refreshToken), 'UserNotFound');
    });
  });
}
