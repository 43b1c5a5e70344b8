import { randomBytes } from 'node:crypto';
import { sql, type ColumnType, type Generated, type Kysely, type Migration } from 'kysely';

/** Epoch seconds in an int8 column: better-sqlite3 reads it as a number, pg as a string. */
type Instant = ColumnType<number | string, number, number>;
type OptionalInstant = ColumnType<number | string | null, number | null, number | null>;

export interface Database {
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
    /** The feed's position: assigned in commit order (see REVOCATION_LOCK_KEY for PostgreSQL). */
    seq: Generated<number | string>;
    sid: string;
    jti: string | null;
    reason: string;
    until: Instant;
  };
  /** One row: this database's random id, which the feed's cursors name (sql-store.ts, FEED_CURSOR). */
  database_id: {
    singleton: Generated<number>;
    id: string;
  };
}

export type Backend = 'sqlite' | 'postgres';

/** PostgreSQL's NOTIFY channel that tells every instance a revocation committed. */
export const REVOCATION_CHANNEL = 'fib_auth_revocations';

/**
 * PostgreSQL assigns `seq` when a row is inserted, not when it commits: a reader could see
 * seq 8 committed while seq 7 is still in flight, move its cursor past 7 and never see it.
 * So each transaction that writes a revocation holds this advisory lock shared until it ends,
 * and a reader takes it exclusively first: it waits for the writes in flight, and every seq
 * below what it then reads has committed or rolled back. The key is the schema's, so that
 * several stores in one database (tests) do not wait for each other.
 */
export const REVOCATION_LOCK_KEY = `hashtext('${REVOCATION_CHANNEL}.' || current_schema())`;

/**
 * The revocation feed is written by the database itself, in the statement that changes the
 * session, so that no code path (logout, global logout, refresh, reuse, `users remove`) can
 * change a session without its revocation: a session that ends revokes all its access tokens;
 * a refresh that replaces the access token revokes the old one.
 */
const revocationTriggers: Record<Backend, string[]> = {
  sqlite: [
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
  ],
  postgres: [
    `create function sessions_revoke() returns trigger language plpgsql as $$
     begin
       if old.revoked_at is null and new.revoked_at is not null then
         perform pg_advisory_xact_lock_shared(${REVOCATION_LOCK_KEY});
         insert into revocations (sid, jti, reason, until) values (new.id, null, new.revoked_reason, new.access_expires_at);
         perform pg_notify('${REVOCATION_CHANNEL}', '');
       elsif old.access_jti <> new.access_jti then
         perform pg_advisory_xact_lock_shared(${REVOCATION_LOCK_KEY});
         insert into revocations (sid, jti, reason, until) values (old.id, old.access_jti, 'refresh', old.access_expires_at);
         perform pg_notify('${REVOCATION_CHANNEL}', '');
       end if;
       return null;
     end $$`,
    `create trigger sessions_revoke after update on sessions for each row execute function sessions_revoke()`,
  ],
};

/** Schema changes, in order. Append new ones; never edit or drop one that has shipped. */
export const migrations = (backend: Backend): Record<string, Migration> => ({
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
        .addColumn('seq', backend === 'postgres' ? 'bigserial' : 'integer', (c) =>
          backend === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
        )
        .addColumn('sid', 'text', (c) => c.notNull())
        .addColumn('jti', 'text')
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('until', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('revocations_until').on('revocations').column('until').execute();
      for (const statement of revocationTriggers[backend]) await sql.raw(statement).execute(db);
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
});
