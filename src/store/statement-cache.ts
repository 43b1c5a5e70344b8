import type { Database, Statement } from 'better-sqlite3';
import type { SqliteDatabase } from 'kysely';

/**
 * Kysely prepares every query anew, and better-sqlite3 compiles the SQL on each prepare: on
 * the logout path that compile was as costly as running the statement. The store's queries
 * are a fixed set of texts with bound parameters, so each is compiled once and kept.
 */
export function withStatementCache(database: Database): SqliteDatabase {
  const statements = new Map<string, Statement>();
  return {
    close: () => database.close(),
    prepare(sql) {
      let statement = statements.get(sql);
      if (!statement) statements.set(sql, (statement = database.prepare(sql)));
      return statement;
    },
  };
}
