import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test as testOn } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { loadConfig, storeOptions } from '../src/config.js';
import { packageRoot } from '../src/package-root.js';
import { openStore } from '../src/store/open.js';
import type { SessionRecord, Store } from '../src/domain/store.js';
import { DATABASES, type TestDatabase } from './support/databases.js';
import { NOW, sessionRecord, userRecord } from './support/records.js';

const session = (overrides: Partial<SessionRecord> = {}) => sessionRecord('alice@wonderland.space', overrides);
const newUser = userRecord;

const openOn = (database: TestDatabase) => openStore(storeOptions(loadConfig({ DATABASE_URL: database.url })));

for (const backend of DATABASES) {
  describe(`store behaviour on ${backend.name}`, () => {
    const test = (name: string, fn: () => Promise<void>): void => {
      testOn(name, { skip: backend.skip }, fn);
    };
    let database: TestDatabase;
    let store: Store;
    before(async () => {
      if (backend.skip) return;
      database = await backend.create();
      store = await openOn(database);
      // Sessions are stored only for a registered user; session() belongs to Alice.
      await store.addUser(newUser('alice@wonderland.space'));
    });
    after(async () => {
      if (backend.skip) return;
      await store?.close();
      await database?.drop();
    });

    test('users: unique by email, matched case-insensitively', async () => {
      const user = {
        email: 'Carol@Example.TEST',
        accountId: randomUUID(),
        authPublicKeyHex: 'AB'.repeat(32),
        role: 'ROLE_PEER' as const,
        createdAt: NOW,
      };
      assert.equal(await store.addUser(user), true);
      assert.equal(await store.addUser({ ...user, accountId: randomUUID(), email: 'carol@example.test' }), false);
      assert.deepEqual(await store.findUser('CAROL@example.test'), {
        ...user,
        email: 'carol@example.test',
        authPublicKeyHex: 'ab'.repeat(32),
      });
      assert.ok((await store.listUsers()).some((u) => u.email === 'carol@example.test'));
      assert.equal(await store.findUser('nobody@example.test'), undefined);
    });

    test('a session is stored and read back whole', async () => {
      const s = session();
      assert.equal(await store.createSession(s), true);
      assert.deepEqual(await store.findSession(s.id), s);
      assert.equal(await store.findSession(randomUUID()), undefined);
    });

    test('createSession stores nothing for a user who is not registered, matching the email case-insensitively', async () => {
      const orphan = session({ userEmail: 'nobody@example.test' });
      assert.equal(await store.createSession(orphan), false);
      assert.equal(await store.findSession(orphan.id), undefined);
      const shouted = session({ userEmail: 'ALICE@Wonderland.Space' });
      assert.equal(await store.createSession(shouted), true);
      assert.equal((await store.findSession(shouted.id))?.userEmail, 'alice@wonderland.space');
    });

    test('endSession succeeds once, and only with the current access id', async () => {
      const s = session();
      await store.createSession(s);
      assert.equal(await store.endSession(s.id, randomUUID(), NOW), false);
      assert.equal(await store.endSession(s.id, s.accessJti, NOW), true);
      assert.equal(await store.endSession(s.id, s.accessJti, NOW), false);
      const ended = await store.findSession(s.id);
      assert.equal(ended?.revokedAt, NOW);
      assert.equal(ended?.revokedReason, 'logout');
    });

    test('concurrent endSession calls: exactly one succeeds', async () => {
      const s = session();
      await store.createSession(s);
      const results = await Promise.all(Array.from({ length: 20 }, () => store.endSession(s.id, s.accessJti, NOW)));
      assert.equal(results.filter(Boolean).length, 1);
    });

    test('endSessionByRefreshJti ends a live session by its current refresh id, once', async () => {
      const s = session();
      await store.createSession(s);
      assert.equal(await store.endSessionByRefreshJti(s.id, s.accessJti, NOW), false, 'an access id is not a refresh id');
      const results = await Promise.all(Array.from({ length: 20 }, () => store.endSessionByRefreshJti(s.id, s.refreshJti, NOW)));
      assert.equal(results.filter(Boolean).length, 1);
      assert.equal((await store.findSession(s.id))?.revokedReason, 'logout');
    });

    test('sign-in challenges: used once, by their own email, before they expire; purged once expired', async () => {
      const challenge = (email = 'alice@wonderland.space') => ({ nonce: randomUUID(), email, expiresAt: NOW + 60, usedAt: null });
      const racing = challenge();
      await store.createSignInChallenge(racing);
      assert.deepEqual(await store.findSignInChallenge(racing.nonce), racing);
      assert.equal(await store.findSignInChallenge(randomUUID()), undefined);
      assert.equal(await store.useSignInChallenge(racing.nonce, 'bob@wonderland.space', NOW), false, "another email's");
      const results = await Promise.all(
        Array.from({ length: 20 }, () => store.useSignInChallenge(racing.nonce, racing.email, NOW)),
      );
      assert.equal(results.filter(Boolean).length, 1);
      assert.equal((await store.findSignInChallenge(racing.nonce))?.usedAt, NOW);

      const expiring = challenge();
      await store.createSignInChallenge(expiring);
      assert.equal(
        await store.useSignInChallenge(expiring.nonce, expiring.email, NOW + 60),
        false,
        'expired from its expiresAt on',
      );
      assert.equal(await store.useSignInChallenge(expiring.nonce, expiring.email, NOW + 59), true);

      const live = { ...challenge(), expiresAt: NOW + 600 };
      await store.createSignInChallenge(live);
      assert.ok((await store.purgeExpiredSignInChallenges(NOW + 60)) >= 2);
      assert.equal(await store.findSignInChallenge(racing.nonce), undefined);
      assert.deepEqual(await store.findSignInChallenge(live.nonce), live);
    });

    // On SQLite, writes sent together share one transaction (group commit): each must still get
    // its own answer, and a failing one must not undo or fail the others.
    test('writes sent together: each gets its own answer, and one that fails takes no other with it', async () => {
      const bob = `bob-${randomUUID()}@example.test`;
      await store.addUser(newUser(bob));
      const [ending, rotating, bobs, existing] = [session(), session(), session({ userEmail: bob }), session()];
      for (const s of [ending, rotating, bobs, existing]) assert.equal(await store.createSession(s), true);
      const next = {
        accessJti: randomUUID(),
        refreshJti: randomUUID(),
        accessExpiresAt: NOW + 600,
        refreshExpiresAt: NOW + 90000,
      };
      const fresh = session();

      const [duplicate, ended, rotated, removed, created, endedTwice] = await Promise.allSettled([
        store.createSession({ ...session(), id: existing.id }), // the id is taken: a constraint error
        store.endSession(ending.id, ending.accessJti, NOW + 1),
        store.rotateSession(rotating.id, rotating.refreshJti, next),
        store.removeUser(bob, NOW + 1), // several statements
        store.createSession(fresh),
        store.endSession(ending.id, ending.accessJti, NOW + 1),
      ]);

      assert.equal(duplicate.status, 'rejected');
      const value = (answer: PromiseSettledResult<boolean>): unknown =>
        answer.status === 'fulfilled' ? answer.value : answer.reason;
      assert.deepEqual([rotated, removed, created].map(value), [true, true, true]);
      // The same logout sent twice: exactly one wins. A single writer (SQLite's group commit)
      // runs the two in the order sent; concurrent writers run them on two connections at once,
      // and either may come first.
      const logouts = [ended, endedTwice].map(value);
      if (backend.concurrentWriters) assert.deepEqual(logouts.sort(), [false, true], 'one of the two wins');
      else assert.deepEqual(logouts, [true, false], 'the first sent wins');
      assert.equal((await store.findSession(ending.id))?.revokedReason, 'logout');
      assert.equal((await store.findSession(rotating.id))?.refreshJti, next.refreshJti);
      assert.equal(await store.findUser(bob), undefined);
      assert.equal((await store.findSession(bobs.id))?.revokedReason, 'user-removed');
      assert.deepEqual(await store.findSession(fresh.id), fresh);
      assert.deepEqual(await store.findSession(existing.id), existing, 'the failed insert changed nothing');
    });

    test('rotateSession is a compare-and-swap of the refresh id', async () => {
      const s = session();
      await store.createSession(s);
      const next = {
        accessJti: randomUUID(),
        refreshJti: randomUUID(),
        accessExpiresAt: NOW + 600,
        refreshExpiresAt: NOW + 90000,
      };
      const results = await Promise.all([
        store.rotateSession(s.id, s.refreshJti, next),
        store.rotateSession(s.id, s.refreshJti, next),
      ]);
      assert.deepEqual(results.sort(), [false, true]);
      assert.deepEqual(await store.findSession(s.id), { ...s, ...next });
      assert.equal(await store.endSession(s.id, s.accessJti, NOW), false, 'the old access id is retired');
      assert.equal(await store.endSession(s.id, next.accessJti, NOW), true);
      assert.equal(await store.rotateSession(s.id, next.refreshJti, next), false, 'an ended session does not rotate');
    });

    test('endSession for every session of the user ends them all at once, and only with a current token', async () => {
      const email = `erin-${randomUUID()}@example.test`;
      await store.addUser(newUser(email));
      const mine = [session({ userEmail: email }), session({ userEmail: email }), session({ userEmail: email })];
      const other = session();
      for (const s of [...mine, other]) await store.createSession(s);
      assert.equal(await store.endSession(mine[0].id, randomUUID(), NOW, true), false);
      assert.equal((await store.findSession(mine[1].id))?.revokedAt, null, 'a stale token ends nothing');
      const racing = await Promise.all([
        store.endSession(mine[0].id, mine[0].accessJti, NOW, true),
        store.endSession(mine[1].id, mine[1].accessJti, NOW, true),
      ]);
      // The first to commit ends every session of the user, the other's own session among them.
      assert.deepEqual([...racing].sort(), [false, true], 'exactly one of two racing global logouts wins');
      for (const s of mine) assert.equal((await store.findSession(s.id))?.revokedReason, 'logout');
      assert.equal((await store.findSession(other.id))?.revokedAt, null);
    });

    test('countLiveSessions counts sessions neither revoked nor past their refresh expiry', async () => {
      const before = await store.countLiveSessions(NOW);
      const live = session();
      const revoked = session();
      const expired = session({ refreshExpiresAt: NOW });
      for (const s of [live, revoked, expired]) await store.createSession(s);
      await store.revokeSession(revoked.id, 'logout', NOW);
      assert.equal(await store.countLiveSessions(NOW), before + 1);
    });

    test('revokeSession revokes a live session once and records why', async () => {
      const s = session();
      await store.createSession(s);
      assert.equal(await store.revokeSession(s.id, 'refresh-reuse', NOW), true);
      assert.equal(await store.revokeSession(s.id, 'refresh-reuse', NOW), false);
      assert.equal((await store.findSession(s.id))?.revokedReason, 'refresh-reuse');
    });

    test("removeUser deletes the user and revokes the user's live sessions", async () => {
      const email = `dave-${randomUUID()}@example.test`;
      await store.addUser(newUser(email));
      const live = session({ userEmail: email });
      const loggedOut = session({ userEmail: email });
      const other = session();
      for (const s of [live, loggedOut, other]) await store.createSession(s);
      await store.endSession(loggedOut.id, loggedOut.accessJti, NOW);
      assert.equal(await store.removeUser(email.toUpperCase(), NOW + 1), true);
      assert.equal(await store.removeUser(email, NOW + 1), false);
      assert.equal(await store.findUser(email), undefined);
      assert.equal((await store.findSession(live.id))?.revokedReason, 'user-removed');
      assert.equal((await store.findSession(loggedOut.id))?.revokedReason, 'logout');
      assert.equal((await store.findSession(other.id))?.revokedAt, null);
    });

    test('purgeExpiredSessions deletes only sessions whose every credential expired', async () => {
      const old = session({ accessExpiresAt: NOW - 10, refreshExpiresAt: NOW - 1 });
      const refreshable = session({ accessExpiresAt: NOW - 10, refreshExpiresAt: NOW + 10 });
      await store.createSession(old);
      await store.createSession(refreshable);
      assert.ok((await store.purgeExpiredSessions(NOW)) >= 1);
      assert.equal(await store.findSession(old.id), undefined);
      assert.ok(await store.findSession(refreshable.id));
    });

    test('reopening runs the migrations again without losing a row, and the feed’s cursors stay positions', async () => {
      const s = session();
      await store.createSession(s);
      const { cursor } = await store.revocationsAfter(undefined, 1_000_000);
      const again = await openOn(database);
      try {
        assert.deepEqual(await again.findSession(s.id), s);
        const page = await again.revocationsAfter(cursor, 1_000_000);
        assert.deepEqual(page, { cursor, snapshot: false, more: false, revocations: [] }, 'the database keeps its id');
        await again.ping();
      } finally {
        await again.close();
      }
    });

    test('several processes opening a fresh database at the same moment migrate it once', async () => {
      const fresh = await backend.create();
      try {
        // Each process (on dist/, which npm test builds first) loads, then all open the store
        // at one agreed instant.
        const at = Date.now() + 1500;
        const script = `
          import { loadConfig, storeOptions } from ${JSON.stringify(join(packageRoot, 'dist/src/config.js'))};
          import { openStore } from ${JSON.stringify(join(packageRoot, 'dist/src/store/open.js'))};
          await new Promise((resolve) => setTimeout(resolve, ${at} - Date.now()));
          await (await openStore(storeOptions(loadConfig()))).close();`;
        const env = { ...process.env, DATABASE_URL: fresh.url };
        await Promise.all(
          [1, 2, 3].map(() =>
            promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { env, timeout: 30_000 }),
          ),
        );
        const migrated = await openOn(fresh);
        try {
          assert.equal(await migrated.addUser(newUser('erin@example.test')), true);
        } finally {
          await migrated.close();
        }
      } finally {
        await fresh.drop();
      }
    });
  });
}

// SQLite's group commit (src/store/group-commit.ts): writes that arrive together share one
// transaction, so when that transaction cannot start, all of them fail and none takes effect.
describe('SQLite group commit when the write lock stays taken', () => {
  testOn('the writes sent together all fail with the lock error, change nothing, and work once the lock is free', async () => {
    const database = await DATABASES.find((backend) => backend.name === 'SQLite')!.create();
    const store = await openStore(storeOptions(loadConfig({ DATABASE_URL: database.url, DATABASE_TIMEOUT: '1' })));
    // Another process (as the CLI or a second server would be) holds the write lock until told.
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const db = new (require('better-sqlite3'))(${JSON.stringify(database.url.slice('sqlite:'.length))});
        db.exec('begin immediate'); console.log('locked');
        process.stdin.once('data', () => { db.exec('commit'); db.close(); });`,
      ],
      { cwd: packageRoot, stdio: ['pipe', 'pipe', 'inherit'] },
    );
    try {
      await store.addUser(newUser('alice@wonderland.space'));
      const live = session();
      await store.createSession(live);
      await new Promise((resolve) => createInterface({ input: holder.stdout }).once('line', resolve));

      const fresh = session();
      const outcomes = await Promise.allSettled([store.endSession(live.id, live.accessJti, NOW + 1), store.createSession(fresh)]);
      for (const outcome of outcomes) {
        assert.equal(outcome.status, 'rejected');
        assert.equal((outcome.reason as { code?: string }).code, 'SQLITE_BUSY');
      }

      holder.stdin.end('release\n');
      await new Promise((resolve) => holder.once('exit', resolve));
      assert.equal((await store.findSession(live.id))?.revokedAt, null, 'the failed logout changed nothing');
      assert.equal(await store.findSession(fresh.id), undefined, 'the failed insert stored nothing');
      assert.equal(await store.endSession(live.id, live.accessJti, NOW + 1), true);
      assert.equal(await store.createSession(fresh), true);
    } finally {
      holder.kill();
      await store.close();
      await database.drop();
    }
  });
});

// The PostgreSQL backend prepares its statements once per connection (src/store/backends/postgres.ts).
// Another instance that migrates first (a rolling upgrade) may add a column to a table this
// one reads with `select *`: PostgreSQL then refuses the prepared statement, and the store
// must still answer.
describe('PostgreSQL prepared statements after another instance changed a table', () => {
  const backend = DATABASES.find((b) => b.name === 'PostgreSQL')!;
  testOn(
    'a read prepared before a column was added still answers, and so does every read after it',
    { skip: backend.skip },
    async () => {
      const database = await backend.create();
      const store = await openStore(storeOptions(loadConfig({ DATABASE_URL: database.url, DATABASE_POOL_SIZE: '1' })));
      const migrator = new pg.Client({ connectionString: database.url });
      try {
        const email = `user-${randomUUID()}@example.test`;
        await store.addUser(userRecord(email));
        const session = sessionRecord(email);
        assert.equal(await store.createSession(session), true);
        assert.equal((await store.findSession(session.id))?.id, session.id, 'prepared on the pool’s one connection');
        await migrator.connect();
        await migrator.query('alter table sessions add column added_by_a_later_version text');
        for (let i = 0; i < 3; i++) {
          assert.equal((await store.findSession(session.id))?.id, session.id, `read ${i + 1} after the column was added`);
        }
        assert.equal(await store.endSession(session.id, session.accessJti, NOW + 1), true, 'a logout still commits');
      } finally {
        await migrator.end();
        await store.close();
        await database.drop();
      }
    },
  );
});
