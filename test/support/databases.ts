import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSchema } from './postgres.js';

/** A database one test run has to itself. */
export interface TestDatabase {
  /** Its DATABASE_URL, for the server, the CLI and openStore. */
  url: string;
  drop(): Promise<void>;
}

/**
 * A store backend as the tests see it. A new backend is one more entry in DATABASES: every
 * suite that takes a database runs on it, and the members below say what it must be tested for.
 */
export interface DatabaseBackend {
  name: string;
  /** Why this backend cannot be tested here; its tests are then reported as skipped, with this reason. */
  skip: string | undefined;
  /** A fresh, empty database: a SQLite file, or a PostgreSQL schema. */
  create(): Promise<TestDatabase>;
  /**
   * Whether writes run side by side (the profile's `concurrentWriters`): two writes sent
   * together may then commit in either order. Otherwise they commit in the order sent.
   */
  concurrentWriters: boolean;
  /**
   * Whether the database is reached over the network, so that instances on separate machines
   * may share it: the several-instance suites run two instances on it.
   */
  overNetwork: boolean;
}

const sqlite: DatabaseBackend = {
  name: 'SQLite',
  skip: undefined,
  concurrentWriters: false,
  overNetwork: false,
  create() {
    const dir = mkdtempSync(join(tmpdir(), 'fib-auth-db-'));
    const drop = () => Promise.resolve(rmSync(dir, { recursive: true, force: true }));
    return Promise.resolve({ url: `sqlite:${join(dir, 'fib-auth.sqlite')}`, drop });
  },
};

const adminUrl = process.env.TEST_DATABASE_URL;

const postgres: DatabaseBackend = {
  name: 'PostgreSQL',
  skip: adminUrl ? undefined : 'TEST_DATABASE_URL is not set (for example postgres://postgres@127.0.0.1:5432/test); CI sets it',
  create: () => createSchema(adminUrl!, 'fib_auth_test'),
  concurrentWriters: true,
  overNetwork: true,
};

/** Every backend; each suite that takes a database runs once on each. */
export const DATABASES: readonly DatabaseBackend[] = [sqlite, postgres];

for (const { name, skip } of DATABASES) {
  if (skip) console.warn(`\n!!! ${name} tests SKIPPED: ${skip}. !!!\n`);
}
