import { Kysely, Migrator, sql, type Compilable, type QueryResult, type Selectable } from 'kysely';
import type { OpenedBackend, Statements, Write } from './backends/profile.js';
import { migrations, type Database } from './schema.js';
import { streamStatements } from './streams.js';
import type {
  ClientRecord,
  Revocation,
  RevocationPage,
  RevocationReason,
  RevokeReason,
  Role,
  SessionCredentials,
  SessionRevocation,
  SessionRecord,
  SignInChallengeRecord,
  Store,
  UserRecord,
} from '../domain/store.js';
import { REVOCATION_RETENTION_SECONDS } from '../domain/revocation-feed.js';
import { SESSION_REVOKED, type SetError, type StreamRecord } from '../domain/security-events.js';

type UserRow = Selectable<Database['users']>;
type SessionRow = Selectable<Database['sessions']>;

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

function clientOf(row: Selectable<Database['clients']>): ClientRecord {
  return { id: row.id, secretHash: row.secret_hash, createdAt: instant(row.created_at) };
}

function revocationOf(row: Selectable<Database['revocations']>): Revocation {
  const until = instant(row.until);
  if (row.kid !== null) return { kid: row.kid, reason: 'key-withdrawn', until };
  const revocation: SessionRevocation = { sid: row.sid!, reason: row.reason as RevocationReason, until };
  if (row.jti !== null) revocation.jti = row.jti;
  return revocation;
}

/**
 * The revocation feed's cursor (docs/design.md §11): `<database id>:<seq>`, the id migration
 * 0005 gave this database and the position of the last entry listed. A bare `<seq>` is a
 * cursor of a version before cursors named their database. The contract's pattern for `after`.
 */
const FEED_CURSOR = /^(?:([0-9a-f]{16}):)?([0-9]{1,15})$/;

const changed = (result: { numUpdatedRows?: bigint; numDeletedRows?: bigint; numAffectedRows?: bigint }) =>
  (result.numUpdatedRows ?? result.numDeletedRows ?? result.numAffectedRows ?? 0n) > 0n;

/** Stands for an argument of a query compiled once, while it is compiled. */
interface ArgumentSlot {
  readonly argument: number;
}

/**
 * A query that Kysely builds and compiles once, for the statements every request runs:
 * building and compiling a query anew each time cost about as much as running it. It is built
 * with a placeholder for each of `build`'s arguments; each run sends the compiled SQL with the
 * arguments in the placeholders' places.
 */
function compiledOnce<Args extends unknown[], Row>(
  build: (...args: Args) => Compilable<Row>,
): (db: Kysely<Database>, ...args: Args) => Promise<QueryResult<Row>> {
  const slots = Array.from({ length: build.length }, (_, argument): ArgumentSlot => ({ argument }));
  const compiled = build(...(slots as unknown as Args)).compile();
  if (!slots.every((slot) => compiled.parameters.includes(slot)))
    throw new Error(`an argument is not a parameter of: ${compiled.sql}`);
  const positions = compiled.parameters.map((value) => slots.indexOf(value as ArgumentSlot));
  return (db, ...args) =>
    db.executeQuery({ ...compiled, parameters: positions.map((at, i) => (at < 0 ? compiled.parameters[i] : args[at])) });
}

/** Ends a live session whose current access or refresh id is `jti`: a logout. */
function endLiveSession(db: Kysely<Database>, id: string, column: 'access_jti' | 'refresh_jti', jti: string, now: number) {
  return db
    .updateTable('sessions')
    .set({ revoked_at: now, revoked_reason: 'logout' satisfies RevokeReason })
    .where('id', '=', id)
    .where(column, '=', jti)
    .where('revoked_at', 'is', null);
}

/**
 * The statements of sign-in, refresh, logout and introspection, and the withdrawn keys every
 * process reads four times a second, compiled once (`compiledOnce`).
 */
function requestQueries(db: Kysely<Database>, concurrentWriters: boolean) {
  // The casts type the parameters for databases that do not infer them in a select list.
  const bigint = (value: number | null) => sql<number>`cast(${value} as bigint)`;
  const text = (value: string | null) => sql<string>`cast(${value} as text)`;
  return {
    findUser: compiledOnce((email: string) => db.selectFrom('users').selectAll().where('email', '=', email)),
    findSession: compiledOnce((id: string) => db.selectFrom('sessions').selectAll().where('id', '=', id)),
    findClient: compiledOnce((id: string) => db.selectFrom('clients').selectAll().where('id', '=', id)),
    withdrawnKeys: compiledOnce(() => db.selectFrom('withdrawn_keys').select('kid')),
    // One statement that copies the user's row into the session: while the user is registered
    // it stores the session, and after `users remove` it stores nothing. A sign-in racing the
    // removal thus either lands before it (and the removal revokes it) or has no session.
    // With concurrent writers the user's row is share-locked, so that the removal waits for
    // this insert and then revokes the session, or this insert waits and finds no user.
    createSession: compiledOnce(
      (
        id: string,
        email: string,
        accessJti: string,
        refreshJti: string,
        accessExpiresAt: number,
        refreshExpiresAt: number,
        createdAt: number,
        revokedAt: number | null,
        revokedReason: string | null,
      ) =>
        db
          .insertInto('sessions')
          .columns([
            'id',
            'user_email',
            'access_jti',
            'refresh_jti',
            'access_expires_at',
            'refresh_expires_at',
            'created_at',
            'revoked_at',
            'revoked_reason',
          ])
          .expression(
            db
              .selectFrom('users')
              .select([
                text(id).as('id'),
                'email',
                text(accessJti).as('access_jti'),
                text(refreshJti).as('refresh_jti'),
                bigint(accessExpiresAt).as('access_expires_at'),
                bigint(refreshExpiresAt).as('refresh_expires_at'),
                bigint(createdAt).as('created_at'),
                bigint(revokedAt).as('revoked_at'),
                text(revokedReason).as('revoked_reason'),
              ])
              .where('email', '=', email)
              .$if(concurrentWriters, (select) => select.forShare()),
          ),
    ),
    endSessionByAccessJti: compiledOnce((id: string, jti: string, now: number) => endLiveSession(db, id, 'access_jti', jti, now)),
    endSessionByAccessJtiReturningUser: compiledOnce((id: string, jti: string, now: number) =>
      endLiveSession(db, id, 'access_jti', jti, now).returning('user_email'),
    ),
    endSessionByRefreshJti: compiledOnce((id: string, jti: string, now: number) =>
      endLiveSession(db, id, 'refresh_jti', jti, now),
    ),
    rotateSession: compiledOnce(
      (
        id: string,
        refreshJti: string,
        accessJtiNext: string,
        refreshJtiNext: string,
        accessExpiresAt: number,
        refreshExpiresAt: number,
      ) =>
        db
          .updateTable('sessions')
          .set({
            access_jti: accessJtiNext,
            refresh_jti: refreshJtiNext,
            access_expires_at: accessExpiresAt,
            refresh_expires_at: refreshExpiresAt,
          })
          .where('id', '=', id)
          .where('refresh_jti', '=', refreshJti)
          .where('revoked_at', 'is', null),
    ),
    createSignInChallenge: compiledOnce((nonce: string, email: string, expiresAt: number, usedAt: number | null) =>
      db.insertInto('sign_in_challenges').values({ nonce, email, expires_at: expiresAt, used_at: usedAt }),
    ),
    findSignInChallenge: compiledOnce((nonce: string) =>
      db.selectFrom('sign_in_challenges').selectAll().where('nonce', '=', nonce),
    ),
    // One conditional UPDATE: on PostgreSQL a second one waits for the first's row lock, then
    // finds `used_at` set and changes nothing.
    useSignInChallenge: compiledOnce((nonce: string, email: string, now: number) =>
      db
        .updateTable('sign_in_challenges')
        .set({ used_at: now })
        .where('nonce', '=', nonce)
        .where('email', '=', email)
        .where('used_at', 'is', null)
        .where('expires_at', '>', now),
    ),
  };
}

/** The store on any SQL database Kysely speaks to; what differs between them, the backend's profile answers (backends/profile.ts). */
export class SqlStore implements Store {
  /** Who waits for revocations, and the external watch that runs while anyone does. */
  private readonly revocationListeners = new Set<() => void>();
  private stopExternalWatch: (() => void) | undefined;
  /** The announcement of the latest revoking write, which closing waits for. */
  private announced: Promise<void> = Promise.resolve();
  private readonly queries: ReturnType<typeof requestQueries>;
  private readonly writer: Write;
  private readonly streams: ReturnType<typeof streamStatements>;

  private constructor(
    private readonly db: Kysely<Database>,
    private readonly backend: OpenedBackend,
  ) {
    this.queries = requestQueries(db, backend.concurrentWriters);
    this.writer = backend.writer(db);
    this.streams = streamStatements(backend, SESSION_REVOKED);
  }

  /**
   * Brings the schema up to date and opens the store on it. Several instances may start at
   * once: Kysely's Migrator holds the backend's lock while it migrates, so the first one
   * migrates and the others find the schema current.
   */
  static async open(backend: OpenedBackend): Promise<SqlStore> {
    const db = new Kysely<Database>({ dialect: backend.dialect });
    try {
      const migrator = new Migrator({
        db,
        migrationTableSchema: await backend.migrationTableSchema(db),
        provider: { getMigrations: () => Promise.resolve(migrations(backend.schema)) },
      });
      const { error } = await migrator.migrateToLatest();
      if (error) throw error as unknown; // what a migration threw, as it threw it (the test narrowed unknown to {})
    } catch (error) {
      await db.destroy();
      throw error;
    }
    backend.migrated();
    return new SqlStore(db, backend);
  }

  /** Runs a write of one or several statements as one atomic step, as the backend runs writes. */
  private write<T>(work: (db: Kysely<Database>) => Promise<T>, statements: Statements = 'one'): Promise<T> {
    return this.writer(work, statements);
  }

  /** A write that may end sessions or retire access tokens: the feed's waiters hear of it once it committed. */
  private async revokingWrite<T>(work: (db: Kysely<Database>) => Promise<T>, statements: Statements = 'one'): Promise<T> {
    const result = await this.write(work, statements);
    this.revocationsChanged();
    this.announced = this.backend.revocationsCommitted(this.db);
    return result;
  }

  private readonly revocationsChanged = () => {
    for (const listener of this.revocationListeners) listener();
  };

  async addUser(user: UserRecord): Promise<boolean> {
    const result = await this.write((db) =>
      db
        .insertInto('users')
        .values({
          email: user.email.toLowerCase(),
          account_id: user.accountId,
          auth_public_key_hex: user.authPublicKeyHex.toLowerCase(),
          role: user.role,
          created_at: user.createdAt,
        })
        .onConflict((oc) => oc.doNothing())
        .executeTakeFirst(),
    );
    return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  removeUser(email: string, now: number): Promise<boolean> {
    return this.revokingWrite(async (trx) => {
      const key = email.toLowerCase();
      const removed = changed(await trx.deleteFrom('users').where('email', '=', key).executeTakeFirst());
      await trx
        .updateTable('sessions')
        .set({ revoked_at: now, revoked_reason: 'user-removed' satisfies RevokeReason })
        .where('user_email', '=', key)
        .where('revoked_at', 'is', null)
        .execute();
      return removed;
    }, 'several');
  }

  async findUser(email: string): Promise<UserRecord | undefined> {
    const [row] = (await this.queries.findUser(this.db, email.toLowerCase())).rows;
    return row && userOf(row);
  }

  async listUsers(): Promise<UserRecord[]> {
    return (await this.db.selectFrom('users').selectAll().orderBy('email').execute()).map(userOf);
  }

  async createSession(session: SessionRecord): Promise<boolean> {
    const result = await this.write((db) =>
      this.queries.createSession(
        db,
        session.id,
        session.userEmail.toLowerCase(),
        session.accessJti,
        session.refreshJti,
        session.accessExpiresAt,
        session.refreshExpiresAt,
        session.createdAt,
        session.revokedAt,
        session.revokedReason,
      ),
    );
    return changed(result);
  }

  async findSession(id: string): Promise<SessionRecord | undefined> {
    const [row] = (await this.queries.findSession(this.db, id)).rows;
    return row && sessionOf(row);
  }

  async endSessionByRefreshJti(id: string, refreshJti: string, now: number): Promise<boolean> {
    return changed(await this.revokingWrite((db) => this.queries.endSessionByRefreshJti(db, id, refreshJti, now)));
  }

  async endSession(id: string, accessJti: string, now: number, everySessionOfUser = false): Promise<boolean> {
    const logout = { revoked_at: now, revoked_reason: 'logout' satisfies RevokeReason };
    if (!everySessionOfUser) {
      return changed(await this.revokingWrite((db) => this.queries.endSessionByAccessJti(db, id, accessJti, now)));
    }
    const endAll = () =>
      this.revokingWrite(async (trx) => {
        const [ended] = (await this.queries.endSessionByAccessJtiReturningUser(trx, id, accessJti, now)).rows;
        if (ended) {
          await trx
            .updateTable('sessions')
            .set(logout)
            .where('user_email', '=', ended.user_email)
            .where('revoked_at', 'is', null)
            .execute();
        }
        return ended !== undefined;
      }, 'several');
    // Two global logouts of one user lock its sessions in opposite orders; a database with
    // concurrent writers aborts one of them, and running it again finds its own session ended
    // (a 401), as it should.
    for (let attempt = 1; ; attempt++) {
      try {
        return await endAll();
      } catch (error) {
        if (!this.backend.isRetryable(error) || attempt === 3) throw error;
      }
    }
  }

  async rotateSession(id: string, refreshJti: string, next: SessionCredentials): Promise<boolean> {
    const result = await this.revokingWrite((db) =>
      this.queries.rotateSession(
        db,
        id,
        refreshJti,
        next.accessJti,
        next.refreshJti,
        next.accessExpiresAt,
        next.refreshExpiresAt,
      ),
    );
    return changed(result);
  }

  async revokeSession(id: string, reason: RevokeReason, now: number): Promise<boolean> {
    const result = await this.revokingWrite((db) =>
      db
        .updateTable('sessions')
        .set({ revoked_at: now, revoked_reason: reason })
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst(),
    );
    return changed(result);
  }

  async countLiveSessions(now: number): Promise<number> {
    const row = await this.db
      .selectFrom('sessions')
      .select((eb) => eb.fn.countAll<number | string>().as('live'))
      .where('revoked_at', 'is', null)
      .where('refresh_expires_at', '>', now)
      .executeTakeFirstOrThrow();
    return Number(row.live);
  }

  async purgeExpiredSessions(now: number): Promise<number> {
    const result = await this.write((db) =>
      db.deleteFrom('sessions').where('refresh_expires_at', '<=', now).where('access_expires_at', '<=', now).executeTakeFirst(),
    );
    return Number(result.numDeletedRows);
  }

  async createSignInChallenge(challenge: SignInChallengeRecord): Promise<void> {
    await this.write((db) =>
      this.queries.createSignInChallenge(db, challenge.nonce, challenge.email, challenge.expiresAt, challenge.usedAt),
    );
  }

  async findSignInChallenge(nonce: string): Promise<SignInChallengeRecord | undefined> {
    const [row] = (await this.queries.findSignInChallenge(this.db, nonce)).rows;
    return (
      row && {
        nonce: row.nonce,
        email: row.email,
        expiresAt: instant(row.expires_at),
        usedAt: row.used_at === null ? null : instant(row.used_at),
      }
    );
  }

  async useSignInChallenge(nonce: string, email: string, now: number): Promise<boolean> {
    return changed(await this.write((db) => this.queries.useSignInChallenge(db, nonce, email, now)));
  }

  async purgeExpiredSignInChallenges(now: number): Promise<number> {
    const result = await this.write((db) =>
      db.deleteFrom('sign_in_challenges').where('expires_at', '<=', now).executeTakeFirst(),
    );
    return Number(result.numDeletedRows);
  }

  async addClient(client: ClientRecord): Promise<boolean> {
    const result = await this.write((db) =>
      db
        .insertInto('clients')
        .values({ id: client.id, secret_hash: client.secretHash, created_at: client.createdAt })
        .onConflict((oc) => oc.doNothing())
        .executeTakeFirst(),
    );
    return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  async removeClient(id: string): Promise<boolean> {
    return changed(await this.write((db) => db.deleteFrom('clients').where('id', '=', id).executeTakeFirst()));
  }

  async findClient(id: string): Promise<ClientRecord | undefined> {
    const [row] = (await this.queries.findClient(this.db, id)).rows;
    return row && clientOf(row);
  }

  async listClients(): Promise<ClientRecord[]> {
    return (await this.db.selectFrom('clients').selectAll().orderBy('id').execute()).map(clientOf);
  }

  revocationsAfter(after: string | undefined, limit: number): Promise<RevocationPage> {
    const read = async (db: Kysely<Database>): Promise<RevocationPage> => {
      const { database, newest } = await db
        .selectFrom('database_id')
        .select((eb) => [
          'id as database',
          eb
            .selectFrom('revocations')
            .select((max) => max.fn.max('seq').as('seq'))
            .as('newest'),
        ])
        .executeTakeFirstOrThrow();
      const newestSeq = Number(newest ?? 0);
      const [, named, position] = FEED_CURSOR.exec(after ?? '') ?? [];
      // A position counts only in the database that gave it out, and only up to its newest
      // entry. Otherwise (no cursor, another database's, one beyond the newest as after a
      // restore, or a bare position of a version before cursors named their database)
      // everything still relevant is listed, and the reader replaces what it holds.
      const snapshot = named !== database || Number(position) > newestSeq;
      const from = snapshot ? 0 : Number(position);
      const rows = await db
        .selectFrom('revocations')
        .selectAll()
        .where('seq', '>', from)
        .orderBy('seq')
        .limit(limit + 1)
        .execute();
      const more = rows.length > limit;
      const listed = more ? rows.slice(0, limit) : rows;
      const last = listed.length > 0 ? Number(listed[listed.length - 1].seq) : snapshot ? newestSeq : from;
      return { cursor: `${database}:${last}`, snapshot, more, revocations: listed.map(revocationOf) };
    };
    return this.backend.readInCommitOrder(this.db, read);
  }

  watchRevocations(listener: () => void): () => void {
    this.revocationListeners.add(listener);
    this.stopExternalWatch ??= this.backend.watchExternalRevocations(this.revocationsChanged);
    return () => {
      this.revocationListeners.delete(listener);
      if (this.revocationListeners.size === 0) {
        this.stopExternalWatch?.();
        this.stopExternalWatch = undefined;
      }
    };
  }

  async purgeExpiredRevocations(now: number): Promise<number> {
    const before = now - REVOCATION_RETENTION_SECONDS;
    const result = await this.write((db) => db.deleteFrom('revocations').where('until', '<=', before).executeTakeFirst());
    return Number(result.numDeletedRows);
  }

  async withdrawKey(kid: string, now: number, until: number): Promise<boolean> {
    // The database adds the feed's entry (the backend's withdrawalTriggers), only when the row is new.
    const result = await this.revokingWrite((db) =>
      db
        .insertInto('withdrawn_keys')
        .values({ kid, withdrawn_at: now, feed_until: until })
        .onConflict((oc) => oc.doNothing())
        .executeTakeFirst(),
    );
    return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  async withdrawnKeys(): Promise<string[]> {
    return (await this.queries.withdrawnKeys(this.db)).rows.map((row) => row.kid);
  }

  createStream(stream: StreamRecord): Promise<boolean> {
    return this.write((db) => this.streams.createStream(db, stream));
  }

  findStream(id: string): Promise<StreamRecord | undefined> {
    return this.streams.findStream(this.db, id);
  }

  listStreams(clientId: string): Promise<StreamRecord[]> {
    return this.streams.listStreams(this.db, clientId);
  }

  updateStream(stream: StreamRecord): Promise<boolean> {
    return this.write((db) => this.streams.updateStream(db, stream), 'several');
  }

  deleteStream(id: string): Promise<boolean> {
    return this.write((db) => this.streams.deleteStream(db, id), 'several');
  }

  /** Wakes this process's polls as a session's end does; PostgreSQL's NOTIFY wakes the other instances'. */
  queueVerification(streamId: string, jti: string, state: string | null, now: number, expiresAt: number): Promise<boolean> {
    return this.revokingWrite((db) => this.streams.queueVerification(db, streamId, jti, state, now, expiresAt), 'several');
  }

  pendingEvents(streamId: string, limit: number) {
    return this.streams.pendingEvents(this.db, streamId, limit);
  }

  acknowledgeEvents(streamId: string, jtis: readonly string[]): Promise<number[]> {
    return this.write((db) => this.streams.acknowledgeEvents(db, streamId, jtis));
  }

  queueDepths() {
    return this.streams.queueDepths(this.db);
  }

  trimQueue(streamId: string, keep: number): Promise<number> {
    return this.write((db) => this.streams.trimQueue(db, streamId, keep));
  }

  recordEventErrors(streamId: string, errors: readonly SetError[]): Promise<number> {
    return this.write((db) => this.streams.recordEventErrors(db, streamId, errors), 'several');
  }

  leasePushEvents(now: number, leasedUntil: number, limit: number) {
    return this.write((db) => this.streams.leasePushEvents(db, now, leasedUntil, limit), 'several');
  }

  deferPushEvent(jti: string, nextAttemptAt: number): Promise<void> {
    return this.write((db) => this.streams.deferPushEvent(db, jti, nextAttemptAt));
  }

  purgeExpiredEvents(before: number): Promise<number> {
    return this.write((db) => this.streams.purgeExpiredEvents(db, before));
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  async close(): Promise<void> {
    this.stopExternalWatch?.();
    this.stopExternalWatch = undefined;
    this.revocationListeners.clear();
    await this.announced;
    return this.db.destroy();
  }
}
