import type { ColumnType, Kysely, Migration } from 'kysely';

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
}

/** Schema changes, in order. Append new ones; never edit or drop one that has shipped. */
export const migrations: Record<string, Migration> = {
  '0001_users_and_sessions': {
    async up(db: Kysely<any>) {
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
};
