import type { CreateTableBuilder, Dialect, Kysely } from 'kysely';
import type { Database } from '../schema.js';

/** What the store needs of the process that opens it: nothing of its configuration but these. */
export interface StoreOptions {
  /** `DATABASE_URL`: its scheme picks the backend. */
  url: string;
  /** Connections a backend with a pool may open in this process. */
  poolSize: number;
  /** How long any wait on the database (a connection, a lock, a statement) may last before it fails. */
  timeoutMs: number;
  /** Where a backend reports what it recovered from (a broken connection, a file's mode). */
  log?: StoreLog;
}

/** The part of a logger the store uses; pino's loggers are one. */
export interface StoreLog {
  warn(fields: Record<string, unknown>, message: string): void;
}

/** How many statements a write runs: a single statement is atomic by itself on every backend. */
export type Statements = 'one' | 'several';

/** Runs a write of one or several statements as one atomic step, and answers once it is durable. */
export type Write = <T>(work: (db: Kysely<Database>) => Promise<T>, statements: Statements) => Promise<T>;

/**
 * Tells a store that another process may have added revocations (a PostgreSQL NOTIFY, a
 * SQLite file changed by another connection); returns the function that stops watching.
 */
export type ExternalRevocationWatch = (changed: () => void) => () => void;

/** The SQL of the migrations (schema.ts) that differs between backends. */
export interface SchemaDialect {
  /** Adds a position `seq`: a primary key that only grows (the revocation feed's, migration 0002; the SET queue's, 0006). */
  addPosition: <Table extends string>(table: CreateTableBuilder<Table>) => CreateTableBuilder<Table>;
  /**
   * Statements that make the database itself write a revocation in the statement that changes
   * a session (docs/design.md §11): a session ended revokes its access tokens; a refresh, the
   * old access token. Each insert is visible to `readInCommitOrder` and `watchExternalRevocations`.
   */
  revocationTriggers: readonly string[];
  /** Migration 0004: lets a revocation name a key (sid nullable, a kid, REVOCATION_NAMES_ONE), keeping every seq. */
  letRevocationsNameKeys(db: Kysely<unknown>): Promise<void>;
  /** The same as `revocationTriggers`, for a key inserted into withdrawn_keys. */
  withdrawalTriggers: readonly string[];
  /**
   * Migration 0006: a session ended queues its session-revoked event on every stream that asks
   * for it (docs/design.md §15), in the statement that ends it, as `revocationTriggers` write the feed.
   */
  sessionEndEventTriggers: readonly string[];
  /** Migration 0008: the functions behind the feed's triggers without the notification in the writer's transaction that 0002 and 0004 gave them. */
  revocationTriggersWithoutNotify: readonly string[];
}

/** One database opened by a profile: everything `SqlStore` asks that differs between backends. */
export interface OpenedBackend {
  readonly dialect: Dialect;
  readonly schema: SchemaDialect;
  /**
   * Where Kysely keeps its migration bookkeeping; undefined for Kysely's default. Migrations
   * must run once when several processes start together: the dialect's adapter takes a lock.
   */
  migrationTableSchema(db: Kysely<Database>): Promise<string | undefined>;
  /** Called once the schema is current, before the first request. */
  migrated(): void;
  /**
   * Whether transactions run side by side: then a statement that depends on a row it only
   * reads must lock it (`for share`), and two transactions may deadlock.
   */
  readonly concurrentWriters: boolean;
  /** How this database runs writes (group commit, or a pool's transactions). */
  writer(db: Kysely<Database>): Write;
  /** Whether the database aborted a transaction only to resolve a conflict, so running it again is right. */
  isRetryable(error: unknown): boolean;
  /**
   * Reads the revocation feed so that no entry below the positions it returns commits later
   * (docs/design.md §11): positions assigned at insert must not be skipped by a reader.
   */
  readInCommitOrder<T>(db: Kysely<Database>, read: (db: Kysely<Database>) => Promise<T>): Promise<T>;
  /** How this store learns of revocations other processes commit. */
  readonly watchExternalRevocations: ExternalRevocationWatch;
  /**
   * Tells every other process's `watchExternalRevocations` that something a long poll waits for
   * was written outside the triggers (a verification event); a no-op where the watch sees every commit.
   */
  announceChange(db: Kysely<Database>): Promise<void>;
  /**
   * Called after each write that added revocations committed: tells every other process's
   * `watchExternalRevocations`, once for the commits that come close together. Never rejects
   * (a failure is logged); resolves once the commits before the call were announced.
   */
  revocationsCommitted(db: Kysely<Database>): Promise<void>;
}

/**
 * A store backend (docs/design.md §7): the one place that knows a database's dialect, locks,
 * error codes and notifications. `open.ts` lists the profiles; `SqlStore` asks only this.
 */
export interface BackendProfile {
  /** Its name in logs and messages. */
  readonly name: string;
  /** Whether `url` (a `DATABASE_URL`) names a database of this backend. */
  handles(url: string): boolean;
  /** Where `url` points, with no secret in it, for the CLI to say where it wrote. */
  location(url: string): string;
  /** Connects (a file, a pool), ready to migrate. */
  open(options: StoreOptions): Promise<OpenedBackend>;
}
