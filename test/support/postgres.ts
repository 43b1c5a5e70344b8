import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestDatabase } from './databases.js';

/** Runs one statement on a connection of its own to the database at `url`. */
async function runOn(url: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/**
 * A fresh schema `PREFIX_<random>` in the PostgreSQL database at `adminUrl`, with the
 * DATABASE_URL that names it as search_path on every connection.
 */
export async function createSchema(adminUrl: string, prefix: string): Promise<TestDatabase> {
  const schema = `${prefix}_${randomBytes(6).toString('hex')}`;
  await runOn(adminUrl, `create schema ${schema}`);
  const url = new URL(adminUrl);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return { url: url.href, drop: () => runOn(adminUrl, `drop schema ${schema} cascade`) };
}
