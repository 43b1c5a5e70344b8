import { randomBytes } from 'node:crypto';
import { sql, type ColumnType, type Generated, type Kysely, type Migration } from 'kysely';
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
    /** The feed's position: assigned in commit order (see REVOCATION_LOCK_KEY for PostgreSQL). */
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

/**
 * A withdrawn key's feed entry is written by the database too, in the statement that
 * withdraws it (`fib-auth keys revoke`), under the same lock and with the same NOTIFY as a
 * session's.
 */
const withdrawalTriggers: Record<Backend, string[]> = {
  sqlite: [
    `create trigger withdrawn_keys_revoke after insert on withdrawn_keys
     begin
       insert into revocations (kid, reason, until) values (new.kid, 'key-withdrawn', new.feed_until);
     end`,
  ],
  postgres: [
    `create function withdrawn_keys_revoke() returns trigger language plpgsql as $$
     begin
       perform pg_advisory_xact_lock_shared(${REVOCATION_LOCK_KEY});
       insert into revocations (kid, reason, until) values (new.kid, 'key-withdrawn', new.feed_until);
       perform pg_notify('${REVOCATION_CHANNEL}', '');
       return null;
     end $$`,
    `create trigger withdrawn_keys_revoke after insert on withdrawn_keys for each row execute function withdrawn_keys_revoke()`,
  ],
};

/** Each revocation names either a session (and maybe one of its access tokens) or a key. */
const REVOCATION_NAMES_ONE = sql`(sid is not null and kid is null) or (sid is null and jti is null and kid is not null)`;

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
  '0004_withdrawn_keys': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('withdrawn_keys')
        .addColumn('kid', 'text', (c) => c.primaryKey())
        .addColumn('withdrawn_at', 'bigint', (c) => c.notNull())
        .addColumn('feed_until', 'bigint', (c) => c.notNull())
        .execute();
      // A revocation may now name a key instead of a session.
      if (backend === 'postgres') {
        await sql`alter table revocations alter column sid drop not null`.execute(db);
        await db.schema.alterTable('revocations').addColumn('kid', 'text').execute();
        await db.schema.alterTable('revocations').addCheckConstraint('revocations_names_one', REVOCATION_NAMES_ONE).execute();
      } else {
        // SQLite cannot drop a NOT NULL: the table is rebuilt with its rows and its numbering,
        // so every reader's cursor stays valid. The triggers that write it are dropped first
        // (renaming a table checks every trigger naming it) and made again as they were.
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
        for (const statement of revocationTriggers.sqlite) await sql.raw(statement).execute(db);
      }
      for (const statement of withdrawalTriggers[backend]) await sql.raw(statement).execute(db);
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
  // Shared Signals' streams and their queues (docs/design.md §14).
  '0006_ssf_streams': streamsMigration(backend),
  '0007_ssf_push': pushMigration,
});
