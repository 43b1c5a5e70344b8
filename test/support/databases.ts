import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** A database one test run has to itself. */
export interface TestDatabase {
  /** Its DATABASE_URL, for the server, the CLI and openStore. */
  url: string;
  drop(): Promise<void>;
}

export interface DatabaseBackend {
  name: 'SQLite' | 'PostgreSQL';
  /** Why this backend cannot be tested here; its tests are then reported as skipped, with this reason. */
  skip: string | undefined;
  /** A fresh, empty database: a SQLite file, or a PostgreSQL schema. */
  create(): Promise<TestDatabase>;
}

const sqlite: DatabaseBackend = {
  name: 'SQLite',
  skip: undefined,
  async create() {
    const dir = mkdtempSync(join(tmpdir(), 'fib-auth-db-'));
    return { url: `sqlite:${join(dir, 'fib-auth.sqlite')}`, drop: async () => rmSync(dir, { recursive: true, force: true }) };
  },
};

const adminUrl = process.env.TEST_DATABASE_URL;

async function asAdmin(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

const postgres: DatabaseBackend = {
  name: 'PostgreSQL',
  skip: adminUrl ? undefined : 'TEST_DATABASE_URL is not set (for example postgres://postgres@127.0.0.1:5432/test); CI sets it',
  async create() {
    // Each run gets its own schema, named on every connection through search_path.
    const schema = `fib_auth_test_${randomBytes(6).toString('hex')}`;
    await asAdmin(`create schema ${schema}`);
    const url = new URL(adminUrl!);
    url.searchParams.set('options', `-c search_path=${schema}`);
    return { url: url.href, drop: () => asAdmin(`drop schema ${schema} cascade`) };
  },
};

if (postgres.skip) {
  console.warn(`\n!!! PostgreSQL tests SKIPPED: ${postgres.skip}. Only SQLite was tested. !!!\n`);
}

/** Every backend; each suite that takes a database runs once on each. */
export const DATABASES: readonly DatabaseBackend[] = [sqlite, postgres];
