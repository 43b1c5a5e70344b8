import Database from 'better-sqlite3';
import pg from 'pg';
import type { LiveSession } from '../test/support/tokens.js';

export interface BenchUser {
  email: string;
  accountId: string;
  authPublicKeyHex: string;
}

/**
 * The bench's own connection to the server's database, for what would be slow through the
 * API: seeding users and sessions, bulk filler rows, and measuring storage. The server
 * creates the schema (its migrations) before the bench connects.
 */
export interface BenchDatabase {
  addUsers(users: readonly BenchUser[]): Promise<void>;
  addSessions(sessions: readonly LiveSession[]): Promise<void>;
  /** Makes logged-out sessions live again under new access ids, so they can log out once more. */
  rearm(sessions: readonly LiveSession[]): Promise<void>;
  /** Adds `count` live sessions of the users already there, generated in the database itself. */
  addFiller(count: number): Promise<void>;
  countSessions(): Promise<number>;
  /** Bytes of the sessions table with its indexes. */
  sessionBytes(): Promise<number>;
  close(): Promise<void>;
}

const SESSION_COLUMNS = 'id, user_email, access_jti, refresh_jti, access_expires_at, refresh_expires_at, created_at';
const sessionValues = (s: LiveSession) => [
  s.id,
  s.userEmail,
  s.accessJti,
  s.refreshJti,
  s.accessExpiresAt,
  s.refreshExpiresAt,
  s.createdAt,
];
const now = () => Math.floor(Date.now() / 1000);

export function openSqlite(path: string): BenchDatabase {
  const db = new Database(path);
  db.pragma('busy_timeout = 5000');
  db.pragma('cache_size = -262144'); // 256 MiB: random-key inserts of a million rows stay in memory
  const insertUser = db.prepare(
    'insert into users (email, account_id, auth_public_key_hex, role, created_at) values (?, ?, ?, ?, ?)',
  );
  const insertSession = db.prepare(`insert into sessions (${SESSION_COLUMNS}) values (?, ?, ?, ?, ?, ?, ?)`);
  const rearmSession = db.prepare('update sessions set access_jti = ?, revoked_at = null, revoked_reason = null where id = ?');
  // A UUID-shaped text id, as randomUUID() gives, so that filler rows are as large as real ones.
  const uuid = `lower(printf('%s-%s-4%s-a%s-%s', hex(randomblob(4)), hex(randomblob(2)), substr(hex(randomblob(2)), 2), substr(hex(randomblob(2)), 2), hex(randomblob(6))))`;
  const fill = db.prepare(`
    with recursive n(i) as (select 0 union all select i + 1 from n where i + 1 < :count)
    insert into sessions (${SESSION_COLUMNS})
    select ${uuid} as id, (select email from users where rowid = 1 + i % :users), ${uuid}, ${uuid}, :now + 3600, :now + 86400, :now
    from n order by id`); // in key order, the primary-key index grows at its end: several times faster
  const userCount = () => (db.prepare('select count(*) as n from users').get() as { n: number }).n;
  return {
    async addUsers(users) {
      db.transaction(() => users.forEach((u) => insertUser.run(u.email, u.accountId, u.authPublicKeyHex, 'ROLE_PEER', now())))();
    },
    async addSessions(sessions) {
      db.transaction(() => sessions.forEach((s) => insertSession.run(...sessionValues(s))))();
    },
    async rearm(sessions) {
      db.transaction(() => sessions.forEach((s) => rearmSession.run(s.accessJti, s.id)))();
    },
    async addFiller(count) {
      fill.run({ count, users: userCount(), now: now() });
      db.pragma('wal_checkpoint(TRUNCATE)');
    },
    async countSessions() {
      return (db.prepare('select count(*) as n from sessions').get() as { n: number }).n;
    },
    async sessionBytes() {
      const row = db
        .prepare(
          `select sum(pgsize) as bytes from dbstat where name in (select name from sqlite_schema where tbl_name = 'sessions')`,
        )
        .get();
      return (row as { bytes: number }).bytes;
    },
    async close() {
      db.close();
    },
  };
}

export async function openPostgres(url: string): Promise<BenchDatabase> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  const column = (values: unknown[][], index: number) => values.map((row) => row[index]);
  return {
    async addUsers(users) {
      await db.query(
        `insert into users (email, account_id, auth_public_key_hex, role, created_at)
         select e, a, k, 'ROLE_PEER', $4 from unnest($1::text[], $2::text[], $3::text[]) as u(e, a, k)`,
        [users.map((u) => u.email), users.map((u) => u.accountId), users.map((u) => u.authPublicKeyHex), now()],
      );
    },
    async addSessions(sessions) {
      const rows = sessions.map(sessionValues);
      await db.query(
        `insert into sessions (${SESSION_COLUMNS})
         select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[])`,
        [0, 1, 2, 3, 4, 5, 6].map((i) => column(rows, i)),
      );
    },
    async rearm(sessions) {
      await db.query(
        `update sessions set access_jti = r.jti, revoked_at = null, revoked_reason = null
         from unnest($1::text[], $2::text[]) as r(id, jti) where sessions.id = r.id`,
        [sessions.map((s) => s.id), sessions.map((s) => s.accessJti)],
      );
    },
    async addFiller(count) {
      await db.query(
        `with u as (select array_agg(email) as emails from users)
         insert into sessions (${SESSION_COLUMNS})
         select gen_random_uuid()::text, u.emails[1 + i % cardinality(u.emails)], gen_random_uuid()::text, gen_random_uuid()::text, $2 + 3600, $2 + 86400, $2
         from generate_series(0, $1 - 1) as i, u`,
        [count, now()],
      );
      await db.query('vacuum analyze sessions');
    },
    async countSessions() {
      return Number((await db.query<{ n: string }>('select count(*) as n from sessions')).rows[0].n);
    },
    async sessionBytes() {
      return Number((await db.query<{ bytes: string }>(`select pg_total_relation_size('sessions') as bytes`)).rows[0].bytes);
    },
    close: () => db.end(),
  };
}
