import { Kysely, Migrator, sql, type Dialect, type Selectable } from 'kysely';
import { migrations, type Database } from './schema.js';
import type { RevokeReason, Role, SessionCredentials, SessionRecord, Store, UserRecord } from './store.js';

type UserRow = Selectable<Database['users']>;
type SessionRow = Selectable<Database['sessions']>;

// Drivers return 64-bit integers as numbers (SQLite) or strings (PostgreSQL): normalise here.
const instant = (value: number | string) => Number(value);

function userOf(row: UserRow): UserRecord {
  return {
    email: row.email,
    accountId: row.account_id,
    authPublicKeyHex: row.auth_public_key_hex,
    role: row.role as Role,
    createdAt: instant(row.created_at),
  };
}

function sessionOf(row: SessionRow): SessionRecord {
  return {
    id: row.id,
    userEmail: row.user_email,
    accessJti: row.access_jti,
    refreshJti: row.refresh_jti,
    accessExpiresAt: instant(row.access_expires_at),
    refreshExpiresAt: instant(row.refresh_expires_at),
    createdAt: instant(row.created_at),
    revokedAt: row.revoked_at === null ? null : instant(row.revoked_at),
    revokedReason: row.revoked_reason as RevokeReason | null,
  };
}

const changed = (result: { numUpdatedRows?: bigint; numDeletedRows?: bigint }) =>
  (result.numUpdatedRows ?? result.numDeletedRows ?? 0n) > 0n;

/** The store on any SQL database Kysely speaks to; the dialect picks the backend. */
export class SqlStore implements Store {
  private constructor(private readonly db: Kysely<Database>) {}

  /** Opens the database and brings its schema up to date. */
  static async open(dialect: Dialect): Promise<SqlStore> {
    const db = new Kysely<Database>({ dialect });
    const { error } = await new Migrator({ db, provider: { getMigrations: async () => migrations } }).migrateToLatest();
    if (error) {
      await db.destroy();
      throw error;
    }
    return new SqlStore(db);
  }

  async addUser(user: UserRecord): Promise<boolean> {
    const result = await this.db
      .insertInto('users')
      .values({
        email: user.email.toLowerCase(),
        account_id: user.accountId,
        auth_public_key_hex: user.authPublicKeyHex.toLowerCase(),
        role: user.role,
        created_at: user.createdAt,
      })
      .onConflict((oc) => oc.doNothing())
      .executeTakeFirst();
    return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  removeUser(email: string, now: number): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const key = email.toLowerCase();
      const removed = changed(await trx.deleteFrom('users').where('email', '=', key).executeTakeFirst());
      await trx
        .updateTable('sessions')
        .set({ revoked_at: now, revoked_reason: 'user-removed' satisfies RevokeReason })
        .where('user_email', '=', key)
        .where('revoked_at', 'is', null)
        .execute();
      return removed;
    });
  }

  async findUser(email: string): Promise<UserRecord | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('email', '=', email.toLowerCase()).executeTakeFirst();
    return row && userOf(row);
  }

  async listUsers(): Promise<UserRecord[]> {
    return (await this.db.selectFrom('users').selectAll().orderBy('email').execute()).map(userOf);
  }

  async createSession(session: SessionRecord): Promise<boolean> {
    // One statement that copies the user's row into the session: while the user is registered
    // it stores the session, and after `users remove` it stores nothing. A sign-in racing the
    // removal thus either lands before it (and the removal revokes it) or has no session.
    // The casts type the parameters for databases that do not infer them in a select list.
    const bigint = (value: number | null) => sql<number>`cast(${value} as bigint)`;
    const text = (value: string | null) => sql<string>`cast(${value} as text)`;
    const result = await this.db
      .insertInto('sessions')
      .columns(['id', 'user_email', 'access_jti', 'refresh_jti', 'access_expires_at', 'refresh_expires_at', 'created_at', 'revoked_at', 'revoked_reason'])
      .expression(
        this.db
          .selectFrom('users')
          .select([
            text(session.id).as('id'),
            'email',
            text(session.accessJti).as('access_jti'),
            text(session.refreshJti).as('refresh_jti'),
            bigint(session.accessExpiresAt).as('access_expires_at'),
            bigint(session.refreshExpiresAt).as('refresh_expires_at'),
            bigint(session.createdAt).as('created_at'),
            bigint(session.revokedAt).as('revoked_at'),
            text(session.revokedReason).as('revoked_reason'),
          ])
          .where('email', '=', session.userEmail.toLowerCase()),
      )
      .executeTakeFirst();
    return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  async findSession(id: string): Promise<SessionRecord | undefined> {
    const row = await this.db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst();
    return row && sessionOf(row);
  }

  async endSession(id: string, accessJti: string, now: number): Promise<boolean> {
    const result = await this.db
      .updateTable('sessions')
      .set({ revoked_at: now, revoked_reason: 'logout' satisfies RevokeReason })
      .where('id', '=', id)
      .where('access_jti', '=', accessJti)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return changed(result);
  }

  async rotateSession(id: string, refreshJti: string, next: SessionCredentials): Promise<boolean> {
    const result = await this.db
      .updateTable('sessions')
      .set({
        access_jti: next.accessJti,
        refresh_jti: next.refreshJti,
        access_expires_at: next.accessExpiresAt,
        refresh_expires_at: next.refreshExpiresAt,
      })
      .where('id', '=', id)
      .where('refresh_jti', '=', refreshJti)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return changed(result);
  }

  async revokeSession(id: string, reason: RevokeReason, now: number): Promise<boolean> {
    const result = await this.db
      .updateTable('sessions')
      .set({ revoked_at: now, revoked_reason: reason })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return changed(result);
  }

  async purgeExpiredSessions(now: number): Promise<number> {
    const result = await this.db
      .deleteFrom('sessions')
      .where('refresh_expires_at', '<=', now)
      .where('access_expires_at', '<=', now)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  close(): Promise<void> {
    return this.db.destroy();
  }
}
