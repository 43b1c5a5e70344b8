import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test as testOn } from 'node:test';
import { Kysely, Migrator, sql } from 'kysely';
import pg from 'pg';
import { loadConfig, storeOptions } from '../src/config.js';
import type { Revocation, Store } from '../src/domain/store.js';
import { REVOCATION_RETENTION_SECONDS } from '../src/domain/revocation-feed.js';
import { fibAuth } from './support/cli.js';
import { backendOf, openStore } from '../src/store/open.js';
import { migrations, type Database } from '../src/store/schema.js';
import { DATABASES, type TestDatabase } from './support/databases.js';
import { NOW, sessionRecord, userRecord } from './support/records.js';

// The revocation feed as the store keeps it (docs/design.md §11): every change of a session
// that stops access tokens working adds one entry, in the same statement, in commit order.

const openOn = (database: TestDatabase) => openStore(storeOptions(loadConfig({ DATABASE_URL: database.url })));
const session = sessionRecord;
/** The position a cursor names (`<database id>:<seq>`, docs/design.md §11). */
const seqOf = (cursor: string) => Number(String(cursor).split(':').at(-1));

/** A fresh registered user, so that each test reads only its own entries. */
async function newUser(store: Store): Promise<string> {
  const email = `user-${randomUUID()}@example.test`;
  await store.addUser(userRecord(email));
  return email;
}

/** Resolves once `listener` was called, or rejects after `ms`. */
function calledWithin(store: Store, ms: number, action: () => Promise<unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (stop(), reject(new Error(`no revocation signal within ${ms} ms`))), ms);
    const stop = store.watchRevocations(() => {
      clearTimeout(timer);
      stop();
      resolve();
    });
    action().catch(reject);
  });
}

/**
 * Keeps a watch of `store` open, so that a later watcher's first call is a change's. On
 * PostgreSQL the watch's LISTEN connection calls it once when it starts listening, for what
 * came before: resolves after that call.
 */
async function keepWatching(store: Store, backendName: string): Promise<() => void> {
  if (backendName !== 'PostgreSQL') return store.watchRevocations(() => {});
  return new Promise((resolve) => {
    const stop = store.watchRevocations(() => resolve(stop));
  });
}

for (const backend of DATABASES) {
  describe(`the revocation feed in the store on ${backend.name}`, () => {
    const test = (name: string, fn: () => Promise<void>): void => {
      testOn(name, { skip: backend.skip }, fn);
    };
    let database: TestDatabase;
    let store: Store;
    const newest = async () => (await store.revocationsAfter(undefined, 1_000_000)).cursor;
    const listedAfter = async (cursor: string) => {
      const page = await store.revocationsAfter(cursor, 1000);
      assert.equal(page.snapshot, false);
      return page.revocations;
    };

    before(async () => {
      if (backend.skip) return;
      database = await backend.create();
      store = await openOn(database);
    });
    after(async () => {
      if (backend.skip) return;
      await store?.close();
      await database?.drop();
    });

    test('a logout, a refresh, a reuse revocation and a user removal each add their entry; a sign-in and a refused logout none', async () => {
      const email = await newUser(store);
      const [ended, rotated, reused, removed] = [session(email), session(email), session(email), session(email)];
      const start = await newest();
      for (const s of [ended, rotated, reused, removed]) assert.equal(await store.createSession(s), true);
      assert.equal(await store.endSession(ended.id, randomUUID(), NOW + 1), false);
      assert.deepEqual(await listedAfter(start), [], 'sign-ins and a refused logout revoke nothing');

      assert.equal(await store.endSession(ended.id, ended.accessJti, NOW + 1), true);
      const next = {
        accessJti: randomUUID(),
        refreshJti: randomUUID(),
        accessExpiresAt: NOW + 400,
        refreshExpiresAt: NOW + 90000,
      };
      assert.equal(await store.rotateSession(rotated.id, rotated.refreshJti, next), true);
      assert.equal(await store.revokeSession(reused.id, 'refresh-reuse', NOW + 2), true);
      assert.equal(await store.removeUser(email, NOW + 3), true);

      const expected: Revocation[] = [
        { sid: ended.id, reason: 'logout', until: NOW + 300 },
        { sid: rotated.id, jti: rotated.accessJti, reason: 'refresh', until: NOW + 300 },
        { sid: reused.id, reason: 'refresh-reuse', until: NOW + 300 },
      ];
      const listed = await listedAfter(start);
      assert.deepEqual(listed.slice(0, 3), expected, 'in the order they happened');
      // The removal revokes both sessions it found live, in either order.
      assert.deepEqual(
        listed.slice(3).sort((a, b) => String(a.sid).localeCompare(String(b.sid))),
        [
          { sid: rotated.id, reason: 'user-removed', until: NOW + 400 },
          { sid: removed.id, reason: 'user-removed', until: NOW + 300 },
        ].sort((a, b) => a.sid.localeCompare(b.sid)),
      );
    });

    test('a global logout adds one entry per session it ends', async () => {
      const email = await newUser(store);
      const sessions = [session(email), session(email), session(email)];
      for (const s of sessions) await store.createSession(s);
      const start = await newest();
      assert.equal(await store.endSession(sessions[0].id, sessions[0].accessJti, NOW + 1, true), true);
      const listed = await listedAfter(start);
      assert.deepEqual(listed.map((r) => r.sid).sort(), sessions.map((s) => s.id).sort());
      assert.ok(listed.every((r) => r.reason === 'logout' && r.jti === undefined));
    });

    test('cursors: pages follow one another, `more` says a page was cut, and a cursor never given out gets a snapshot', async () => {
      const email = await newUser(store);
      const start = await newest();
      const sessions = Array.from({ length: 5 }, () => session(email));
      for (const s of sessions) {
        await store.createSession(s);
        await store.endSession(s.id, s.accessJti, NOW + 1);
      }
      const first = await store.revocationsAfter(start, 3);
      assert.deepEqual([first.snapshot, first.more, first.revocations.length], [false, true, 3]);
      const second = await store.revocationsAfter(first.cursor, 3);
      assert.deepEqual([second.snapshot, second.more, second.revocations.length], [false, false, 2]);
      assert.deepEqual(
        [...first.revocations, ...second.revocations].map((r) => r.sid),
        sessions.map((s) => s.id),
      );
      const idle = await store.revocationsAfter(second.cursor, 3);
      assert.deepEqual(idle, { cursor: second.cursor, snapshot: false, more: false, revocations: [] });

      const [database] = second.cursor.split(':');
      const beyond = await store.revocationsAfter(`${database}:${seqOf(second.cursor) + 1000}`, 1_000_000);
      assert.equal(beyond.snapshot, true, 'a position beyond the newest entry (a database restored from a backup)');
      const snapshot = await store.revocationsAfter(undefined, 1_000_000);
      assert.equal(snapshot.snapshot, true);
      assert.deepEqual(beyond, snapshot);
      assert.ok(sessions.every((s) => snapshot.revocations.some((r) => r.sid === s.id)));
    });

    test('a cursor another database gave out gets a snapshot, also where this one has passed its position', async () => {
      // The database a service was moved away from (or failed over from) gave the reader its cursor.
      const other = await backend.create();
      const otherStore = await openOn(other);
      try {
        const gone = session(await newUser(otherStore));
        await otherStore.createSession(gone);
        await otherStore.endSession(gone.id, gone.accessJti, NOW + 1);
        const fromOther = (await otherStore.revocationsAfter(undefined, 1_000_000)).cursor;

        const email = await newUser(store);
        for (const s of [session(email), session(email), session(email)]) {
          await store.createSession(s);
          await store.endSession(s.id, s.accessJti, NOW + 1);
        }
        const everything = await store.revocationsAfter(undefined, 1_000_000);
        assert.ok(seqOf(everything.cursor) > seqOf(fromOther), 'this database has passed the other cursor’s position');
        // Read as a position here, it would skip this database's entries up to it.
        const page = await store.revocationsAfter(fromOther, 1_000_000);
        assert.equal(page.snapshot, true, 'a cursor of another database is answered with a snapshot');
        assert.deepEqual(page, everything);
      } finally {
        await otherStore.close();
        await other.drop();
      }
    });

    test('a bare position, the cursor of a version before cursors named their database, gets a snapshot', async () => {
      const email = await newUser(store);
      const s = session(email);
      await store.createSession(s);
      await store.endSession(s.id, s.accessJti, NOW + 1);
      const everything = await store.revocationsAfter(undefined, 1_000_000);
      const page = await store.revocationsAfter(String(seqOf(everything.cursor) - 1), 1_000_000);
      assert.equal(page.snapshot, true, 'a bare position is answered with a snapshot');
      assert.deepEqual(page, everything);
    });

    test('entries are purged a minute after their tokens expired, and an old cursor still gets what remains', async () => {
      const email = await newUser(store);
      const start = await newest();
      const short = session(email, { accessExpiresAt: NOW + 10 });
      const long = session(email, { accessExpiresAt: NOW + 1000 });
      for (const s of [short, long]) {
        await store.createSession(s);
        await store.endSession(s.id, s.accessJti, NOW + 1);
      }
      // A resource server whose clock lags this one's still accepts the short session's tokens
      // for the lag: a snapshot must still list the entry, as the library keeps it 60 s past until.
      await store.purgeExpiredRevocations(NOW + 10 + 30);
      const snapshot = await store.revocationsAfter(undefined, 1_000_000);
      assert.ok(
        snapshot.revocations.some((r) => r.sid === short.id),
        'an entry whose until passed 30 s ago is still in a snapshot',
      );
      assert.ok((await store.purgeExpiredRevocations(NOW + 10 + 61)) >= 1);
      assert.deepEqual(
        (await listedAfter(start)).map((r) => r.sid),
        [long.id],
      );
      assert.ok(!(await store.revocationsAfter(undefined, 1_000_000)).revocations.some((r) => r.sid === short.id));
    });

    test('a key withdrawal adds one entry naming the key, in order; the key stays withdrawn after the entry is purged', async () => {
      const email = await newUser(store);
      const [before, after] = [session(email), session(email)];
      for (const s of [before, after]) await store.createSession(s);
      const start = await newest();
      const kid = `kid-${randomUUID()}`;
      await store.endSession(before.id, before.accessJti, NOW + 1);
      assert.equal(await store.withdrawKey(kid, NOW + 2, NOW + 2000), true);
      assert.equal(await store.withdrawKey(kid, NOW + 3, NOW + 3000), false, 'withdrawn once');
      await store.endSession(after.id, after.accessJti, NOW + 4);
      assert.deepEqual(await listedAfter(start), [
        { sid: before.id, reason: 'logout', until: NOW + 300 },
        { kid, reason: 'key-withdrawn', until: NOW + 2000 },
        { sid: after.id, reason: 'logout', until: NOW + 300 },
      ]);
      assert.ok(
        (await store.revocationsAfter(undefined, 1_000_000)).revocations.some((r) => r.kid === kid),
        'in snapshots',
      );
      assert.ok((await store.withdrawnKeys()).includes(kid));

      await store.purgeExpiredRevocations(NOW + 2000 + REVOCATION_RETENTION_SECONDS);
      assert.ok(!(await store.revocationsAfter(undefined, 1_000_000)).revocations.some((r) => r.kid === kid), 'purged');
      assert.ok((await store.withdrawnKeys()).includes(kid), 'withdrawn for good');
    });

    test('watchRevocations hears a key withdrawal', async () => {
      await calledWithin(store, 2000, () => store.withdrawKey(`kid-${randomUUID()}`, NOW, NOW + 100));
    });

    test('a database from before migration 0004 keeps its revocations, their numbering and its triggers', async () => {
      const old = await backend.create();
      try {
        const db = await migratedUpTo(old, '0003_sign_in_challenges');
        const email = `user-${randomUUID()}@example.test`;
        const [first, second, purged, live] = [session(email), session(email), session(email), session(email)];
        try {
          await sql`insert into users (email, account_id, auth_public_key_hex, role, created_at)
                    values (${email}, ${randomUUID()}, ${'ef'.repeat(32)}, 'ROLE_PEER', ${NOW})`.execute(db);
          for (const s of [first, second, purged, live]) {
            await sql`insert into sessions (id, user_email, access_jti, refresh_jti, access_expires_at, refresh_expires_at, created_at)
                      values (${s.id}, ${email}, ${s.accessJti}, ${s.refreshJti}, ${s.accessExpiresAt}, ${s.refreshExpiresAt}, ${NOW})`.execute(
              db,
            );
          }
          for (const s of [first, second, purged]) {
            await sql`update sessions set revoked_at = ${NOW + 1}, revoked_reason = 'logout' where id = ${s.id}`.execute(db);
          }
          // The newest entry was purged: a reader may still hold its number as its cursor.
          await sql`delete from revocations where sid = ${purged.id}`.execute(db);
        } finally {
          await db.destroy();
        }

        const migrated = await openOn(old);
        try {
          const snapshot = await migrated.revocationsAfter(undefined, 1000);
          assert.deepEqual(snapshot.revocations, [
            { sid: first.id, reason: 'logout', until: NOW + 300 },
            { sid: second.id, reason: 'logout', until: NOW + 300 },
          ]);
          const [databaseId, newest] = snapshot.cursor.split(':');
          const heldCursor = `${databaseId}:${Number(newest) + 1}`; // the purged entry's
          assert.equal(await migrated.endSession(live.id, live.accessJti, NOW + 2), true, 'the triggers still write the feed');
          assert.equal(await migrated.withdrawKey('kid-after-0004', NOW + 2, NOW + 100), true);
          const page = await migrated.revocationsAfter(heldCursor, 1000);
          assert.equal(page.snapshot, false, 'numbers go on after the purged entry’s');
          assert.deepEqual(page.revocations, [
            { sid: live.id, reason: 'logout', until: NOW + 300 },
            { kid: 'kid-after-0004', reason: 'key-withdrawn', until: NOW + 100 },
          ]);
        } finally {
          await migrated.close();
        }
      } finally {
        await old.drop();
      }
    });

    test('watchRevocations hears this store’s own revoking writes', async () => {
      const email = await newUser(store);
      const s = session(email);
      await store.createSession(s);
      await calledWithin(store, 2000, () => store.endSession(s.id, s.accessJti, NOW + 1));
    });

    test('watchRevocations hears a revocation another process commits (fib-auth users remove)', async () => {
      const email = await newUser(store);
      await store.createSession(session(email));
      const removal = () => fibAuth(['users', 'remove', '--email', email], { DATABASE_URL: database.url });
      const watching = await keepWatching(store, backend.name);
      try {
        await calledWithin(store, 10_000, removal);
      } finally {
        watching();
      }
    });
  });
}

/** The database with the store's migrations run up to `last` only, as an older release left it. */
async function migratedUpTo(database: TestDatabase, last: string): Promise<Kysely<unknown>> {
  const backend = await backendOf(database.url).open(storeOptions(loadConfig({ DATABASE_URL: database.url })));
  const db = new Kysely<Database>({ dialect: backend.dialect });
  const { error } = await new Migrator({
    db,
    migrationTableSchema: await backend.migrationTableSchema(db), // where the store keeps Kysely's tables
    provider: { getMigrations: () => Promise.resolve(migrations(backend.schema)) },
  }).migrateTo(last);
  if (error) throw error as Error;
  return db as Kysely<unknown>;
}

describe('the revocation cursor on PostgreSQL while a revocation is still being committed', () => {
  const backend = DATABASES.find((b) => b.name === 'PostgreSQL')!;
  // PostgreSQL numbers an entry when it is written, not when it commits. Here entry N is
  // written by a transaction that stays open while entry N + 1 commits: a reader that read then
  // would move its cursor past N and never list it. The reader must wait for N (schema.ts).
  testOn('a reader never moves its cursor past an entry that commits later', { skip: backend.skip }, async () => {
    const database = await backend.create();
    const store = await openOn(database);
    const slow = new pg.Client({ connectionString: database.url });
    try {
      const email = await newUser(store);
      const [first, second] = [session(email), session(email)];
      for (const s of [first, second]) await store.createSession(s);
      const start = (await store.revocationsAfter(undefined, 1)).cursor;

      await slow.connect();
      await slow.query('begin');
      await slow.query(`update sessions set revoked_at = $1, revoked_reason = 'logout' where id = $2`, [NOW + 1, first.id]);
      assert.equal(await store.endSession(second.id, second.accessJti, NOW + 1), true);
      const reading = store.revocationsAfter(start, 1000);
      let read = false;
      void reading.then(() => (read = true));
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(read, false, 'the reader waits while a revocation is still being committed');
      await slow.query('commit');

      const page = await reading;
      const rest = await store.revocationsAfter(page.cursor, 1000);
      assert.deepEqual([...page.revocations, ...rest.revocations].map((r) => r.sid).sort(), [first.id, second.id].sort());
    } finally {
      await slow.end();
      await store.close();
      await database.drop();
    }
  });
});

describe('the feed’s triggers on PostgreSQL notify nobody inside the writer’s transaction', () => {
  const backend = DATABASES.find((b) => b.name === 'PostgreSQL')!;
  // A transaction that sends a NOTIFY holds one database-wide lock through its commit's WAL
  // flush: with a NOTIFY in the triggers, every logout committed alone. The process that
  // committed notifies afterwards (backends/postgres.ts); migration 0008 rewrote the functions.
  const triggerFunctions = async (db: Kysely<unknown>) =>
    (
      await sql<{ name: string; body: string }>`select proname as name, prosrc as body from pg_proc
        where pronamespace = current_schema()::regnamespace and proname in ('sessions_revoke', 'withdrawn_keys_revoke')
        order by proname`.execute(db)
    ).rows;
  testOn(
    'in a database made before migration 0008, and the store’s watch still hears revocations',
    { skip: backend.skip },
    async () => {
      const database = await backend.create();
      const old = await migratedUpTo(database, '0007_ssf_push');
      const before = await triggerFunctions(old);
      await old.destroy();
      assert.deepEqual(
        before.map((f) => [f.name, f.body.includes('pg_notify')]),
        [
          ['sessions_revoke', true],
          ['withdrawn_keys_revoke', true],
        ],
      );
      const [store, listening] = [await openOn(database), await openOn(database)];
      const db = new Kysely<unknown>({
        dialect: (await backendOf(database.url).open(storeOptions(loadConfig({ DATABASE_URL: database.url })))).dialect,
      });
      try {
        const now = await triggerFunctions(db);
        assert.deepEqual(
          now.map((f) => [f.name, f.body.includes('pg_notify'), f.body.includes('insert into revocations')]),
          [
            ['sessions_revoke', false, true],
            ['withdrawn_keys_revoke', false, true],
          ],
        );
        const email = await newUser(store);
        const loggedIn = session(email);
        await store.createSession(loggedIn);
        const watching = await keepWatching(listening, backend.name);
        try {
          await calledWithin(listening, 10_000, () => store.endSession(loggedIn.id, loggedIn.accessJti, NOW + 1));
        } finally {
          watching();
        }
      } finally {
        await db.destroy();
        await store.close();
        await listening.close();
        await database.drop();
      }
    },
  );
});
