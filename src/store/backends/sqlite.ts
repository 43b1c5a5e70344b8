import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { SqliteAdapter, SqliteDialect, sql, type Kysely } from 'kysely';
import { GroupCommit } from '../group-commit.js';
import { REVOCATION_NAMES_ONE } from '../schema.js';
import { withStatementCache } from '../statement-cache.js';
import type { BackendProfile, ExternalRevocationWatch, SchemaDialect, StoreLog } from './profile.js';

const SCHEME = 'sqlite:';

/**
 * Kysely's SQLite adapter takes no lock while migrating: it expects one connection per
 * database. Several processes on one file (two servers, or the CLI beside a server) may start
 * together, so here the migrations run in an immediate transaction: the first process takes
 * the write lock, the others wait for it (busy_timeout) and then find the schema current.
 */
class SqliteAdapterLockingMigrations extends SqliteAdapter {
  override async acquireMigrationLock(db: Kysely<unknown>): Promise<void> {
    await sql`begin immediate`.execute(db);
  }
  override async releaseMigrationLock(db: Kysely<unknown>): Promise<void> {
    await sql`commit`.execute(db);
  }
}

class SqliteDialectLockingMigrations extends SqliteDialect {
  override createAdapter() {
    return new SqliteAdapterLockingMigrations();
  }
}

/**
 * Switching a new file to WAL answers SQLITE_BUSY at once, without waiting for busy_timeout,
 * while another process opening the same new file switches it too: try again until it is done.
 */
async function switchToWal(database: Database.Database, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      database.pragma('journal_mode = WAL');
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() > deadline) throw error;
      await sleep(10);
    }
  }
}

/**
 * The database holds emails, public keys, session ids and client-secret hashes: only its owner
 * may read it. It is created 0600, and SQLite gives its -wal and -shm files the database file's
 * mode. A file that others may read or change (every database created before this rule) loses
 * those permissions, and that is logged: refusing to start instead would stop every server upgraded over an old
 * file until someone ran chmod by hand.
 */
function readableByOwnerOnly(path: string, log: StoreLog | undefined): void {
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    let mode: number;
    try {
      mode = statSync(file).mode & 0o777;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    if ((mode & 0o077) === 0) continue;
    chmodSync(file, mode & 0o700);
    const octal = (m: number) => m.toString(8).padStart(4, '0');
    log?.warn(
      { file, mode: octal(mode), now: octal(mode & 0o700) },
      'other users could read or change the database file; now only its owner can',
    );
  }
}

/**
 * How often a SQLite file is checked for commits of other processes (another worker, the CLI, a
 * second server) while the revocation feed is followed: a logout on another worker reaches the
 * feed's readers within this. Reading `data_version` costs about a microsecond.
 */
const WATCH_INTERVAL_MS = 10;

/**
 * SQLite tells a connection, in `data_version`, whether another connection committed since it
 * last looked; reading it touches no page, so it is checked often.
 */
function watchFile(database: Database.Database): ExternalRevocationWatch {
  return (changed) => {
    let seen = database.pragma('data_version', { simple: true });
    const timer = setInterval(() => {
      const version = database.pragma('data_version', { simple: true });
      if (version !== seen) changed();
      seen = version;
    }, WATCH_INTERVAL_MS).unref();
    return () => clearInterval(timer);
  };
}

const revocationTriggers = [
  `create trigger sessions_end_revokes after update of revoked_at on sessions
     when old.revoked_at is null and new.revoked_at is not null
   begin
     insert into revocations (sid, jti, reason, until) values (new.id, null, new.revoked_reason, new.access_expires_at);
   end`,
  `create trigger sessions_refresh_revokes after update of access_jti on sessions
     when old.access_jti <> new.access_jti
   begin
     insert into revocations (sid, jti, reason, until) values (old.id, old.access_jti, 'refresh', old.access_expires_at);
   end`,
];

const schema: SchemaDialect = {
  addPosition: (table) => table.addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement()),
  revocationTriggers,
  // SQLite cannot drop a NOT NULL: the table is rebuilt with its rows and its numbering, so
  // every reader's cursor stays valid. The triggers that write it are dropped first (renaming a
  // table checks every trigger naming it) and made again as they were.
  async letRevocationsNameKeys(db) {
    for (const trigger of ['sessions_end_revokes', 'sessions_refresh_revokes']) {
      await sql`drop trigger ${sql.ref(trigger)}`.execute(db);
    }
    await db.schema
      .createTable('revocations_rebuilt')
      .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('sid', 'text')
      .addColumn('jti', 'text')
      .addColumn('kid', 'text')
      .addColumn('reason', 'text', (c) => c.notNull())
      .addColumn('until', 'bigint', (c) => c.notNull())
      .addCheckConstraint('revocations_names_one', REVOCATION_NAMES_ONE)
      .execute();
    await sql`insert into revocations_rebuilt (seq, sid, jti, reason, until) select seq, sid, jti, reason, until from revocations`.execute(
      db,
    );
    await sql`delete from sqlite_sequence where name = 'revocations_rebuilt'`.execute(db);
    await sql`insert into sqlite_sequence (name, seq) select 'revocations_rebuilt', seq from sqlite_sequence where name = 'revocations'`.execute(
      db,
    );
    await db.schema.dropTable('revocations').execute();
    await db.schema.alterTable('revocations_rebuilt').renameTo('revocations').execute();
    await db.schema.createIndex('revocations_until').on('revocations').column('until').execute();
    for (const statement of revocationTriggers) await sql.raw(statement).execute(db);
  },
  withdrawalTriggers: [
    `create trigger withdrawn_keys_revoke after insert on withdrawn_keys
     begin
       insert into revocations (kid, reason, until) values (new.kid, 'key-withdrawn', new.feed_until);
     end`,
  ],
  // The triggers write only the database: there is nothing to notify.
  revocationTriggersWithoutNotify: [],
  sessionEndEventTriggers: [
    `create trigger sessions_end_queues_security_events after update of revoked_at on sessions
       when old.revoked_at is null and new.revoked_at is not null
     begin
       insert into ssf_events (stream_id, jti, event_type, sid, email, reason, event_timestamp, expires_at, queued_at)
       select id, lower(hex(randomblob(16))), 'session-revoked', new.id, new.user_email, new.revoked_reason,
              new.revoked_at, max(new.access_expires_at, new.refresh_expires_at),
              cast((julianday('now') - 2440587.5) * 86400000 as integer)
       from ssf_streams where status <> 'disabled' and session_revoked = 1;
     end`,
  ],
};

/**
 * SQLite through better-sqlite3: one file, one writer at a time, written by every process of
 * the server (the workers, the CLI) with the group commit (group-commit.ts).
 */
export const sqlite: BackendProfile = {
  name: 'SQLite',
  handles: (url) => url.startsWith(SCHEME),
  location(url) {
    // The file's full path: a relative one depends on the folder the command ran in.
    const path = url.slice(SCHEME.length);
    return path === ':memory:' ? url : `${SCHEME}${resolve(path)}`;
  },
  async open({ url, timeoutMs, log }) {
    const path = url.slice(SCHEME.length);
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true });
      readableByOwnerOnly(path, log);
    }
    const database = new Database(path);
    // Another process (a worker, the CLI, a second server) may hold the write lock for a
    // moment while this one switches to WAL and migrates.
    database.pragma(`busy_timeout = ${timeoutMs}`);
    await switchToWal(database, timeoutMs);
    // A write that was answered survives a power failure, as on PostgreSQL: each commit waits
    // for its fsync (better-sqlite3's build would otherwise skip it in WAL mode). The group
    // commit lets writes that arrive together share one fsync.
    database.pragma('synchronous = FULL');
    return {
      dialect: new SqliteDialectLockingMigrations({ database: withStatementCache(database) }),
      schema,
      migrationTableSchema: () => Promise.resolve(undefined),
      // From now on every write waits for the lock in the group commit, without blocking the
      // event loop (group-commit.ts). WAL readers take no lock.
      migrated: () => database.pragma('busy_timeout = 0'),
      concurrentWriters: false,
      writer(db) {
        const groupCommit = new GroupCommit(db, timeoutMs);
        return (work, statements) => groupCommit.run(work, statements);
      },
      // One writer at a time never deadlocks; a write that waited too long for the lock is an error.
      isRetryable: () => false,
      // Positions are assigned by the only writer, in commit order.
      readInCommitOrder: (db, read) => read(db),
      // Every process's file check sees every commit.
      announceChange: () => Promise.resolve(),
      revocationsCommitted: () => Promise.resolve(),
      watchExternalRevocations: watchFile(database),
    };
  },
};
