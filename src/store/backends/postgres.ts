import { PostgresDialect, sql, type Kysely, type PostgresPool, type PostgresPoolClient } from 'kysely';
import pg from 'pg';
import { REVOCATION_NAMES_ONE, type Database } from '../schema.js';
import { coalesced } from '../coalesced.js';
import type { BackendProfile, ExternalRevocationWatch, SchemaDialect, StoreOptions } from './profile.js';

/** PostgreSQL's NOTIFY channel that tells every instance a revocation committed. */
const REVOCATION_CHANNEL = 'fib_auth_revocations';

/**
 * PostgreSQL assigns `seq` when a row is inserted, not when it commits: a reader could see
 * seq 8 committed while seq 7 is still in flight, move its cursor past 7 and never see it.
 * So each transaction that writes a revocation holds this advisory lock shared until it ends,
 * and a reader takes it exclusively first: it waits for the writes in flight, and every seq
 * below what it then reads has committed or rolled back. The key is the schema's, so that
 * several stores in one database (tests) do not wait for each other.
 */
const REVOCATION_LOCK_KEY = `hashtext('${REVOCATION_CHANNEL}.' || current_schema())`;

/** Two transactions that lock rows in opposite orders: PostgreSQL aborts one of them. */
const DEADLOCK_DETECTED = '40P01';

/** The most statement texts one process prepares: a store's statements are a fixed set. */
const MAX_PREPARED_STATEMENTS = 500;

/** PostgreSQL refuses a prepared `select *` whose table gained or lost a column since (another instance migrated). */
const FEATURE_NOT_SUPPORTED = '0A000';
const isStalePlan = (error: unknown) =>
  (error as { code?: unknown }).code === FEATURE_NOT_SUPPORTED && /cached plan must not change result type/.test(String(error));

/**
 * The pool as Kysely sees it, with every statement that has parameters prepared once per
 * connection under a name: without one, PostgreSQL parses and plans the same logout UPDATE
 * (and its triggers' statements) on every request. Statements without parameters (the
 * migrations' DDL, BEGIN, COMMIT) are sent as they are. A prepared statement that another
 * instance's migration made stale runs again unprepared, and its connection is closed when
 * released, so that the pool's next one prepares it anew.
 */
function preparingStatements(pool: pg.Pool): PostgresPool {
  const names = new Map<string, string>();
  const nameOf = (text: string) => {
    let name = names.get(text);
    if (name === undefined && names.size < MAX_PREPARED_STATEMENTS) names.set(text, (name = `fib_auth_${names.size}`));
    return name;
  };
  return {
    async connect() {
      const client = await pool.connect();
      let stale = false;
      // Kysely streams no cursors here: every call is a text and its parameters.
      const query = async (text: string, values: readonly unknown[]) => {
        const name = values.length > 0 && !stale ? nameOf(text) : undefined;
        if (!name) return client.query({ text, values: [...values] });
        try {
          return await client.query({ name, text, values: [...values] });
        } catch (error) {
          if (!isStalePlan(error)) throw error;
          stale = true;
          return client.query({ text, values: [...values] }); // inside a transaction this fails too, and the write with it
        }
      };
      return {
        query: query as unknown as PostgresPoolClient['query'],
        release: (destroy?: boolean) => client.release(destroy === true || stale),
      };
    },
    end: () => pool.end(),
  };
}

/** How long a broken LISTEN connection waits before it connects again. */
const LISTEN_RETRY_MS = 1000;

/**
 * Every revocation committed sends a NOTIFY (the triggers below), heard here on one
 * connection of its own. A connection that breaks is replaced, and `changed` is called each
 * time it starts listening, for what was sent while it was not.
 */
function listen({ url, timeoutMs, log }: StoreOptions): ExternalRevocationWatch {
  return (changed) => {
    let client: pg.Client | undefined;
    let stopped = false;
    let retry: NodeJS.Timeout | undefined;
    const connect = async () => {
      const next = new pg.Client({
        connectionString: url,
        application_name: 'fib-auth-listen',
        connectionTimeoutMillis: timeoutMs,
        keepAlive: true,
      });
      next.on('notification', changed);
      next.on('error', (err) => {
        log?.warn({ err }, 'the revocation LISTEN connection failed; connecting again');
        void next.end().catch(() => undefined);
        schedule();
      });
      try {
        await next.connect();
        await next.query(`listen ${REVOCATION_CHANNEL}`);
      } catch (err) {
        log?.warn({ err }, 'could not LISTEN for revocations; trying again');
        void next.end().catch(() => undefined);
        schedule();
        return;
      }
      if (stopped) return void next.end();
      client = next;
      changed(); // for what committed before it listened
    };
    const schedule = () => {
      client = undefined;
      if (!stopped && !retry) retry = setTimeout(() => ((retry = undefined), void connect()), LISTEN_RETRY_MS).unref();
    };
    void connect();
    return () => {
      stopped = true;
      clearTimeout(retry);
      void client?.end().catch(() => undefined);
    };
  };
}

/**
 * Kysely's bookkeeping tables stay in the connection's current schema, beside the store's
 * tables: otherwise Kysely would take a bookkeeping table in any other schema of the database
 * as its own and never create one here.
 */
async function currentSchema(db: Kysely<Database>): Promise<string> {
  const { rows } = await sql<{ name: string | null }>`select current_schema() as name`.execute(db);
  const name = rows[0]?.name;
  if (!name) throw new Error('DATABASE_URL names no existing schema: create the schema its search_path names first');
  return name;
}

/**
 * The functions behind the feed's triggers: each takes the feed's lock shared and writes the
 * entry, in the writer's transaction. Until migration 0008 they also sent the NOTIFY there;
 * but a transaction that notifies holds one database-wide lock through its commit's WAL flush,
 * so every logout committed alone. Now the process that committed notifies after its commit
 * (`revocationsCommitted`); the migrations before 0008 still write the functions as they ran.
 */
const NOTIFY_IN_TRANSACTION = `perform pg_notify('${REVOCATION_CHANNEL}', '');`;
const sessionsRevoke = (notify = '') => `create or replace function sessions_revoke() returns trigger language plpgsql as $$
     begin
       if old.revoked_at is null and new.revoked_at is not null then
         perform pg_advisory_xact_lock_shared(${REVOCATION_LOCK_KEY});
         insert into revocations (sid, jti, reason, until) values (new.id, null, new.revoked_reason, new.access_expires_at);
         ${notify}
       elsif old.access_jti <> new.access_jti then
         perform pg_advisory_xact_lock_shared(${REVOCATION_LOCK_KEY});
         insert into revocations (sid, jti, reason, until) values (old.id, old.access_jti, 'refresh', old.access_expires_at);
         ${notify}
       end if;
       return null;
     end $$`;
const withdrawnKeysRevoke = (
  notify = '',
) => `create or replace function withdrawn_keys_revoke() returns trigger language plpgsql as $$
     begin
       perform pg_advisory_xact_lock_shared(${REVOCATION_LOCK_KEY});
       insert into revocations (kid, reason, until) values (new.kid, 'key-withdrawn', new.feed_until);
       ${notify}
       return null;
     end $$`;

const schema: SchemaDialect = {
  addPosition: (table) => table.addColumn('seq', 'bigserial', (c) => c.primaryKey()),
  revocationTriggers: [
    sessionsRevoke(NOTIFY_IN_TRANSACTION),
    `create trigger sessions_revoke after update on sessions for each row execute function sessions_revoke()`,
  ],
  async letRevocationsNameKeys(db) {
    await sql`alter table revocations alter column sid drop not null`.execute(db);
    await db.schema.alterTable('revocations').addColumn('kid', 'text').execute();
    await db.schema.alterTable('revocations').addCheckConstraint('revocations_names_one', REVOCATION_NAMES_ONE).execute();
  },
  withdrawalTriggers: [
    withdrawnKeysRevoke(NOTIFY_IN_TRANSACTION),
    `create trigger withdrawn_keys_revoke after insert on withdrawn_keys for each row execute function withdrawn_keys_revoke()`,
  ],
  revocationTriggersWithoutNotify: [sessionsRevoke(), withdrawnKeysRevoke()],
  // The NOTIFY after the same update's commit wakes the polls.
  sessionEndEventTriggers: [
    `create function sessions_end_queues_security_events() returns trigger language plpgsql as $$
     begin
       insert into ssf_events (stream_id, jti, event_type, sid, email, reason, event_timestamp, expires_at, queued_at)
       select id, replace(gen_random_uuid()::text, '-', ''), 'session-revoked', new.id, new.user_email, new.revoked_reason,
              new.revoked_at, greatest(new.access_expires_at, new.refresh_expires_at),
              (extract(epoch from clock_timestamp()) * 1000)::bigint
       from ssf_streams where status <> 'disabled' and session_revoked = 1;
       return null;
     end $$`,
    `create trigger sessions_end_queues_security_events after update of revoked_at on sessions for each row
       when (old.revoked_at is null and new.revoked_at is not null)
       execute function sessions_end_queues_security_events()`,
  ],
};

/** PostgreSQL through pg: a pool per process, for several instances sharing one database. */
export const postgres: BackendProfile = {
  name: 'PostgreSQL',
  handles: (url) => /^postgres(ql)?:\/\//.test(url),
  location(url) {
    const location = new URL(url);
    location.password = '';
    // Deleting re-encodes the whole query: only when there is a password in it.
    if (location.searchParams.has('password')) location.searchParams.delete('password');
    return location.href;
  },
  open(options) {
    const { url, poolSize, timeoutMs, log } = options;
    const pool = new pg.Pool({
      connectionString: url,
      max: poolSize,
      application_name: 'fib-auth',
      // Every wait is bounded, so an unreachable or stuck database gives a 500 instead of a
      // hang. Getting a connection, from the pool or a new one:
      connectionTimeoutMillis: timeoutMs,
      // A statement (waiting for a lock, say) is cancelled by the server, so nothing of it
      // runs on after the 500; the client's own timer, a little later, catches a silent network.
      statement_timeout: timeoutMs,
      query_timeout: timeoutMs + 500,
      // A transaction left open by an instance that lost its network would hold its row
      // locks against every other instance.
      idle_in_transaction_session_timeout: timeoutMs,
      keepAlive: true,
    });
    // An idle connection that breaks is dropped by the pool and replaced on the next query;
    // without a listener the error would end the process.
    pool.on('error', (err) => log?.warn({ err }, 'an idle database connection failed; it will be replaced'));
    // A connection that breaks while it is checked out between two statements (the pool listens
    // only to idle ones) would end the process the same way: its next statement fails instead,
    // and the pool drops it when it is released.
    pool.on('connect', (client) =>
      client.on('error', (err) => log?.warn({ err }, 'a database connection in use failed; it will be replaced')),
    );
    // One NOTIFY, in a transaction of its own that does not wait for its WAL flush (a wake-up
    // need not survive a crash), tells the other processes of every revocation committed here
    // before it was sent; those committed while it is on its way share the next.
    let notifyRevocations: (() => Promise<void>) | undefined;
    return Promise.resolve({
      dialect: new PostgresDialect({ pool: preparingStatements(pool) }),
      schema,
      // Kysely's PostgreSQL adapter migrates under an advisory lock of its own.
      migrationTableSchema: currentSchema,
      migrated: () => undefined,
      concurrentWriters: true,
      // The pool runs writes side by side: a single statement as it is, several in a transaction.
      writer: (db) => (work, statements) => (statements === 'one' ? work(db) : db.transaction().execute(work)),
      isRetryable: (error) => (error as { code?: unknown }).code === DEADLOCK_DETECTED,
      // Waits for the revocations in flight, so that none commits later below the cursor.
      readInCommitOrder: (db, read) =>
        db.transaction().execute(async (trx) => {
          await sql`select pg_advisory_xact_lock(${sql.raw(REVOCATION_LOCK_KEY)})`.execute(trx);
          return read(trx);
        }),
      announceChange: async (db) => {
        await sql`select pg_notify(${REVOCATION_CHANNEL}, '')`.execute(db);
      },
      revocationsCommitted(db) {
        notifyRevocations ??= coalesced(async () => {
          await sql`select set_config('synchronous_commit', 'off', true), pg_notify(${REVOCATION_CHANNEL}, '')`.execute(db);
        });
        return notifyRevocations().catch((err: unknown) =>
          log?.warn({ err }, 'could not NOTIFY the other processes of a revocation; they see it at their next read'),
        );
      },
      watchExternalRevocations: listen(options),
    });
  },
};
