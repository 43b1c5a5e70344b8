import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fibAuth } from './support/cli.js';
import { assertExample, bodyOf, type Reply, type Session, type TestServer } from './support/harness.js';
import { startServerWithStoreHooks, type StoreHooks } from './support/store-hooks.js';
import { publicKeyHexOf, signInBody } from './support/vectors.js';

// Requests that race for one session or one user. Whichever wins, the loser is told, and no
// token of a session that was logged out or of a user who was removed works afterwards.
// Many concurrent logouts with one token are in test/logout.test.ts, many concurrent
// refreshes with one refresh token in test/refresh.test.ts.

describe('races', () => {
  let t: TestServer;
  let hooks: StoreHooks;
  before(async () => {
    ({ t, hooks } = await startServerWithStoreHooks({ LOG_LEVEL: 'warn' }));
  });
  after(() => t.stop());

  /** No token of these sessions works: logout and refresh answer 401 or 404, never a 200. */
  async function assertNothingWorks(sessions: Session[]): Promise<void> {
    for (const s of sessions) {
      for (const reply of [await t.logout(s.accessToken), await t.refresh(s.refreshToken)]) {
        assert.ok(reply.status === 401 || reply.status === 404, `${reply.status} ${reply.body.status.message}`);
      }
    }
  }

  describe('logout racing refresh of the same session', () => {
    /**
     * Checks that exactly one of the two won and the other was told why; then, as the loser's
     * answer advises, logs out with the newest access token, after which no token works.
     */
    async function settle(s: Session, logout: Reply, refresh: Reply): Promise<'logout' | 'refresh'> {
      const sessions = [s];
      let winner: 'logout' | 'refresh';
      if (logout.status === 200) {
        winner = 'logout';
        await assertExample(refresh, 'SessionLoggedOut');
      } else {
        winner = 'refresh';
        assert.equal(refresh.status, 200);
        await assertExample(logout, 'AccessTokenRetired');
        const next: Session = (await bodyOf(refresh, 'refreshTokens', 200)).data;
        await assertExample(await t.logout(next.accessToken), 'LoggedOut');
        sessions.push(next);
      }
      await assertNothingWorks(sessions);
      return winner;
    }

    test('the logout lands just before the refresh swaps the pair: the refresh loses', async () => {
      const s = await t.newSession();
      let logout!: Promise<Reply>;
      hooks.beforeNext('rotateSession', () => (logout = t.logout(s.accessToken)));
      const refresh = await t.refresh(s.refreshToken);
      assert.equal(await settle(s, await logout, refresh), 'logout');
    });

    test('the refresh lands just before the logout ends the session: the logout loses', async () => {
      const s = await t.newSession();
      let refresh!: Promise<Reply>;
      hooks.beforeNext('endSession', () => (refresh = t.refresh(s.refreshToken)));
      const logout = await t.logout(s.accessToken);
      assert.equal(await settle(s, logout, await refresh), 'refresh');
    });

    test('sent at the same moment, 16 times', async (ctx) => {
      const wins = { logout: 0, refresh: 0 };
      for (let round = 0; round < 16; round += 1) {
        const s = await t.newSession();
        // Alternate which request leaves first, so that each side gets its chances.
        const [logout, refresh] =
          round % 2 === 0
            ? await Promise.all([t.logout(s.accessToken), t.refresh(s.refreshToken)])
            : await Promise.all([t.refresh(s.refreshToken), t.logout(s.accessToken)]).then(([r, l]) => [l, r]);
        wins[await settle(s, logout, refresh)] += 1;
      }
      ctx.diagnostic(`logout won ${wins.logout} times, refresh ${wins.refresh} times`);
    });
  });

  describe('sign-in racing users remove', () => {
    test('removed between the user lookup and storing the session: 404, and no token was handed out', async () => {
      const key = generateKeyPairSync('ed25519').privateKey;
      const email = `racer-${randomUUID()}@example.test`;
      await t.addUser(email, publicKeyHexOf(key));
      const proof = signInBody(email, key);
      hooks.beforeNext('createSession', () => hooks.real.removeUser(email, Math.floor(Date.now() / 1000)));
      await assertExample(await t.signIn(proof), 'UserNotFound');
      // Registered again, the user signs in anew; nothing of the lost race comes back to life.
      await t.addUser(email, publicKeyHexOf(key));
      const again = await t.signIn(proof);
      assert.equal(again.status, 200);
      await assertExample(await t.logout(again.body.data.accessToken), 'LoggedOut');
    });

    test('removed by the fib-auth command while sign-ins run: no token of the removed user works, even after registering again', async (ctx) => {
      const key = generateKeyPairSync('ed25519').privateKey;
      const email = `removed-${randomUUID()}@example.test`;
      await t.addUser(email, publicKeyHexOf(key));
      const proof = signInBody(email, key);
      const removal = fibAuth(['users', 'remove', '--email', email], { DATABASE_URL: `sqlite:${hooks.file}` });
      let removed = false;
      void removal.finally(() => (removed = true));
      const issued: Session[] = [];
      let refused = 0;
      // Two clients sign in over and over, paced, until the removal is done, and once more after.
      await Promise.all(
        Array.from({ length: 2 }, async () => {
          for (let last = false; !last;) {
            last = removed;
            const reply = await t.signIn(proof);
            await sleep(10);
            if (reply.status === 200) {
              issued.push(reply.body.data);
            } else {
              await assertExample(reply, 'UserNotFound');
              refused += 1;
            }
          }
        }),
      );
      await removal;
      ctx.diagnostic(`${issued.length} sign-ins answered 200 before the removal, ${refused} answered 404`);
      assert.ok(issued.length > 0 && refused >= 2, `${issued.length} signed in, ${refused} refused`);
      await t.addUser(email, publicKeyHexOf(key));
      await assertNothingWorks(issued);
    });
  });
});
