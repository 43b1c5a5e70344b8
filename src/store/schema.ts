import { randomBytes } from 'node:crypto';
import { sql, type ColumnType, type Generated, type Kysely, type Migration } from 'kysely';
import type { SchemaDialect } from './backends/profile.js';
import { pushMigration, streamsMigration, type StreamTables } from './streams.js';

/** Epoch seconds in an int8 column: better-sqlite3 reads it as a number, pg as a string. */
type Instant = ColumnType<number | string, number, number>;
type OptionalInstant = ColumnType<number | string | null, number | null, number | null>;

export interface Database extends StreamTables {
  users: {
    email: string;
    account_id: string;
    auth_public_key_hex: string;
    role: string;
    created_at: Instant;
  };
  sessions: {
    id: string;
    user_email: string;
    access_jti: string;
    refresh_jti: string;
    access_expires_at: Instant;
    refresh_expires_at: Instant;
    created_at: Instant;
    revoked_at: OptionalInstant;
    revoked_reason: string | null;
  };
  clients: {
    id: string;
    secret_hash: string;
    created_at: Instant;
  };
  sign_in_challenges: {
    nonce: string;
    email: string;
    expires_at: Instant;
    used_at: OptionalInstant;
  };
  revocations: {
    /** The feed's position: read in commit order (`OpenedBackend.readInCommitOrder`). */
    seq: Generated<number | string>;
    /** A session's entry names the session (and, retired by a refresh, one access token)... */
    sid: string | null;
    jti: string | null;
    /** ...a withdrawn key's names the key (migration 0004). */
    kid: string | null;
    reason: string;
    until: Instant;
  };
  /** Keys withdrawn by `fib-auth keys revoke`, kept for good: no process may trust them again. */
  withdrawn_keys: {
    kid: string;
    withdrawn_at: Instant;
    /** When every token the key could have signed has expired: its feed entry's `until`. */
    feed_until: Instant;
  };
  /** One row: this database's random id, which the feed's cursors name (sql-store.ts, FEED_CURSOR). */
  database_id: {
    singleton: Generated<number>;
    id: string;
  };
}

/** Each revocation names either a session (and maybe one of its access tokens) or a key. */
export const REVOCATION_NAMES_ONE = sql`(sid is not null and kid is null) or (sid is null and jti is null and kid is not null)`;

/**
 * Schema changes, in order. Append new ones; never edit or drop one that has shipped. What
 * differs between backends comes from the backend's profile (backends/profile.ts).
 */
export const migrations = (dialect: SchemaDialect): Record<string, Migration> => ({
  '0001_users_and_sessions': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('users')
        .addColumn('email', 'text', (c) => c.primaryKey())
        .addColumn('account_id', 'text', (c) => c.notNull().unique())
        .addColumn('auth_public_key_hex', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('sessions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_email', 'text', (c) => c.notNull())
        .addColumn('access_jti', 'text', (c) => c.notNull())
        .addColumn('refresh_jti', 'text', (c) => c.notNull())
        .addColumn('access_expires_at', 'bigint', (c) => c.notNull())
        .addColumn('refresh_expires_at', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('revoked_at', 'bigint')
        .addColumn('revoked_reason', 'text')
        .execute();
      await db.schema.createIndex('sessions_user_email').on('sessions').column('user_email').execute();
      await db.schema.createIndex('sessions_refresh_expires_at').on('sessions').column('refresh_expires_at').execute();
    },
  },
  '0002_clients_and_revocations': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('clients')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('secret_hash', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('revocations')
        .$call(dialect.addPosition)
        .addColumn('sid', 'text', (c) => c.notNull())
        .addColumn('jti', 'text')
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('until', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('revocations_until').on('revocations').column('until').execute();
      for (const statement of dialect.revocationTriggers) await sql.raw(statement).execute(db);
    },
  },
  '0003_sign_in_challenges': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('sign_in_challenges')
        .addColumn('nonce', 'text', (c) => c.primaryKey())
        .addColumn('email', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('used_at', 'bigint')
        .execute();
      await db.schema.createIndex('sign_in_challenges_expires_at').on('sign_in_challenges').column('expires_at').execute();
    },
  },
  '0004_withdrawn_keys': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('withdrawn_keys')
        .addColumn('kid', 'text', (c) => c.primaryKey())
        .addColumn('withdrawn_at', 'bigint', (c) => c.notNull())
        .addColumn('feed_until', 'bigint', (c) => c.notNull())
        .execute();
      // A revocation may now name a key instead of a session.
      await dialect.letRevocationsNameKeys(db);
      for (const statement of dialect.withdrawalTriggers) await sql.raw(statement).execute(db);
    },
  },
  // The random id the revocation feed's cursors name (docs/design.md §11), made once per database.
  '0005_database_id': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('database_id')
        .addColumn('singleton', 'integer', (c) =>
          c
            .primaryKey()
            .defaultTo(1)
            .check(sql`singleton = 1`),
        )
        .addColumn('id', 'text', (c) => c.notNull())
        .execute();
      await sql`insert into database_id (id) values (${randomBytes(8).toString('hex')})`.execute(db);
    },
  },
  // Shared Signals' streams and their queues (docs/design.md §15).
  '0006_ssf_streams': streamsMigration(dialect),
  '0007_ssf_push': pushMigration,
  // PostgreSQL: the feed's triggers stop notifying in the writer's transaction (backends/postgres.ts).
  '0008_revocation_triggers_without_notify': {
    async up(db: Kysely<unknown>) {
      for (const statement of dialect.revocationTriggersWithoutNotify) await sql.raw(statement).execute(db);
    },
  },
});
