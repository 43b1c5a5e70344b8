import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteDialect } from 'kysely';
import { SqlStore } from './sql-store.js';
import { withStatementCache } from './statement-cache.js';
import type { Store } from './store.js';

/** Opens the store that `DATABASE_URL` names (DESIGN §7). */
export async function openStore(databaseUrl: string): Promise<Store> {
  if (databaseUrl.startsWith('sqlite:')) {
    const path = databaseUrl.slice('sqlite:'.length);
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const database = new Database(path);
    database.pragma('journal_mode = WAL');
    // Another process (the CLI, a second server) may hold the write lock for a moment.
    database.pragma('busy_timeout = 5000');
    return SqlStore.open(new SqliteDialect({ database: withStatementCache(database) }));
  }
  throw new Error(`DATABASE_URL names a store this build does not support: ${databaseUrl.split(':')[0]}`);
}
