import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { PostgresDialect, SqliteAdapter, SqliteDialect, sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { REVOCATION_CHANNEL } from './schema.js';
import { SqlStore, type ExternalRevocationWatch } from './sql-store.js';
import { withStatementCache } from './statement-cache.js';
import type { Store } from '../domain/store.js';

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
function readableByOwnerOnly(path: string, logger: Logger | undefined): void {
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
    logger?.warn(
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
const SQLITE_WATCH_INTERVAL_MS = 10;
/** How long a broken PostgreSQL LISTEN connection waits before it connects again. */
const LISTEN_RETRY_MS = 1000;

/**
 * SQLite tells a connection, in `data_version`, whether another connection committed since it
 * last looked; reading it touches no page, so it is checked often.
 */
function watchSqliteFile(database: Database.Database): ExternalRevocationWatch {
  return (changed) => {
    let seen = database.pragma('data_version', { simple: true });
    const timer = setInterval(() => {
      const version = database.pragma('data_version', { simple: true });
      if (version !== seen) changed();
      seen = version;
    }, SQLITE_WATCH_INTERVAL_MS).unref();
    return () => clearInterval(timer);
  };
}

/**
 * Every revocation committed on PostgreSQL sends a NOTIFY (schema.ts), heard here on one
 * connection of its own. A connection that breaks is replaced, and `changed` is called each
 * time it starts listening, for what was sent while it was not.
 */
function listenOnPostgres(config: StoreConfig, logger: Logger | undefined): ExternalRevocationWatch {
  return (changed) => {
    let client: pg.Client | undefined;
    let stopped = false;
    let retry: NodeJS.Timeout | undefined;
    const connect = async () => {
      const next = new pg.Client({
        connectionString: config.databaseUrl,
        application_name: 'fib-auth-listen',
        connectionTimeoutMillis: config.databaseTimeout * 1000,
        keepAlive: true,
      });
      next.on('notification', changed);
      next.on('error', (err) => {
        logger?.warn({ err }, 'the revocation LISTEN connection failed; connecting again');
        void next.end().catch(() => undefined);
        schedule();
      });
      try {
        await next.connect();
        await next.query(`listen ${REVOCATION_CHANNEL}`);
      } catch (err) {
        logger?.warn({ err }, 'could not LISTEN for revocations; trying again');
        void next.end().catch(() => undefined);
        schedule();
        return;
      }
      if (stopped) return void next.end();
      client = next;
      changed(); // for what committed before it listened
    };
    const schedule = () => {
      client = undefined;
      if (!stopped && !retry) retry = setTimeout(() => ((retry = undefined), void connect()), LISTEN_RETRY_MS).unref();
    };
    void connect();
    return () => {
      stopped = true;
      clearTimeout(retry);
      void client?.end().catch(() => undefined);
    };
  };
}

export type StoreConfig = Pick<Config, 'databaseUrl' | 'databasePoolSize' | 'databaseTimeout'>;

/**
 * Which store `DATABASE_URL` names, for the CLI to say where it wrote: the SQLite file's full
 * path (a relative one depends on the folder the command ran in), or the PostgreSQL URL
 * without its password.
 */
export function storeLocation(databaseUrl: string): string {
  if (databaseUrl.startsWith('sqlite:')) {
    const path = databaseUrl.slice('sqlite:'.length);
    return path === ':memory:' ? databaseUrl : `sqlite:${resolve(path)}`;
  }
  const url = new URL(databaseUrl);
  url.password = '';
  if (url.searchParams.has('password')) url.searchParams.delete('password');
  return url.href;
}

/**
 * Opens the store that `DATABASE_URL` names (docs/design.md §7). One that cannot be opened is
 * one line naming the variable and the store (without a password) before the driver's reason:
 * `connect ECONNREFUSED 127.0.0.1:5432` alone does not say which setting to fix.
 */
export async function openStore(config: StoreConfig, logger?: Logger): Promise<Store> {
  try {
    return await openBackend(config, logger);
  } catch (error) {
    const { message, code } = error as NodeJS.ErrnoException; // Node's AggregateError (one per address) has no message
    throw new Error(`the store DATABASE_URL names (${storeLocation(config.databaseUrl)}) cannot be opened: ${message || code}`, {
      cause: error,
    });
  }
}

async function openBackend(config: StoreConfig, logger?: Logger): Promise<Store> {
  const { databaseUrl } = config;
  const timeoutMs = config.databaseTimeout * 1000;
  if (databaseUrl.startsWith('sqlite:')) {
    const path = databaseUrl.slice('sqlite:'.length);
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true });
      readableByOwnerOnly(path, logger);
    }
    const database = new Database(path);
    // Another process (a worker, the CLI, a second server) may hold the write lock for a
    // moment while this one switches to WAL and migrates.
    database.pragma(`busy_timeout = ${timeoutMs}`);
    await switchToWal(database, timeoutMs);
    // A write that was answered survives a power failure, as on PostgreSQL: each commit waits
    // for its fsync (better-sqlite3's build would otherwise skip it in WAL mode). The group
    // commit (group-commit.ts) lets writes that arrive together share one fsync.
    database.pragma('synchronous = FULL');
    const store = await SqlStore.open(new SqliteDialectLockingMigrations({ database: withStatementCache(database) }), {
      backend: 'sqlite',
      groupCommit: { lockTimeoutMs: timeoutMs },
      externalWatch: watchSqliteFile(database),
    });
    // Migrated: from now on every write waits for the lock in the group commit, without
    // blocking the event loop (group-commit.ts). WAL readers take no lock.
    database.pragma('busy_timeout = 0');
    return store;
  }
  if (/^postgres(ql)?:\/\//.test(databaseUrl)) {
    const pool = new pg.Pool({
      connectionString: databaseUrl,
      max: config.databasePoolSize,
      application_name: 'fib-auth',
      // Every wait is bounded, so an unreachable or stuck database gives a 500 instead of a
      // hang. Getting a connection, from the pool or a new one:
      connectionTimeoutMillis: timeoutMs,
      // A statement (waiting for a lock, say) is cancelled by the server, so nothing of it
      // runs on after the 500; the client's own timer, a little later, catches a silent network.
      statement_timeout: timeoutMs,
      query_timeout: timeoutMs + 500,
      // A transaction left open by an instance that lost its network would hold its row
      // locks against every other instance.
      idle_in_transaction_session_timeout: timeoutMs,
      keepAlive: true,
    });
    // An idle connection that breaks is dropped by the pool and replaced on the next query;
    // without a listener the error would end the process.
    pool.on('error', (err) => logger?.warn({ err }, 'an idle database connection failed; it will be replaced'));
    // A connection that breaks while it is checked out between two statements (the pool listens
    // only to idle ones) would end the process the same way: its next statement fails instead,
    // and the pool drops it when it is released.
    pool.on('connect', (client) =>
      client.on('error', (err) => logger?.warn({ err }, 'a database connection in use failed; it will be replaced')),
    );
    return SqlStore.open(new PostgresDialect({ pool }), { backend: 'postgres', externalWatch: listenOnPostgres(config, logger) });
  }
  throw new Error(`DATABASE_URL names a store this build does not support: ${databaseUrl.split(':')[0]}`);
}
