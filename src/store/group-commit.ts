import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { CompiledQuery, type Kysely } from 'kysely';
import { BatchTiming, currentPhases, phaseTimingRequested, type RequestPhases } from '../request-phases.js';
import type { Statements } from './backends/profile.js';

type Write<DB, T> = (db: Kysely<DB>) => Promise<T>;

/** The transaction's statements, compiled once, as every batch runs them. */
const BEGIN = CompiledQuery.raw('begin immediate');
const SAVEPOINT = CompiledQuery.raw('savepoint write');
const RELEASE = CompiledQuery.raw('release write');
const ROLLBACK_TO = CompiledQuery.raw('rollback to write');
const COMMIT = CompiledQuery.raw('commit');
const ROLLBACK = CompiledQuery.raw('rollback');

/**
 * For how long a batch that finds the write lock taken asks again on every turn of the event
 * loop: several batches of another process, which hold the lock for their statements only (the
 * disk is waited for after the lock, in `durable`). After that, for a lock held long (a
 * checkpoint, the CLI), it asks every LOCK_RETRY_MS, the shortest a timer sleeps.
 */
const LOCK_RETRY_EACH_TURN_MS = 2;
const LOCK_RETRY_MS = 1;

interface Queued<DB> {
  write: Write<DB, unknown>;
  statements: Statements;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  /** The request's timeline, when phase timing is on (src/request-phases.ts). */
  phases: RequestPhases | undefined;
}

/**
 * Group commit for SQLite. better-sqlite3 runs every statement on the event loop, so the writes
 * that arrive in one turn of the event loop run one after another in a single immediate
 * transaction. COMMIT only writes the WAL; each write is answered after `durable` (wal-sync.ts)
 * has the WAL on disk, which happens off the event loop and after the write lock is released,
 * so the next batch runs while the disk works. A write that was answered is on disk, as with
 * a commit of its own that waited for its fsync.
 *
 * A write that fails is undone alone and answered with its error, and the others still commit:
 * SQLite undoes a failed statement by itself, and a write of several statements runs under a
 * savepoint. When the transaction cannot start (another process holds the write lock past
 * `lockTimeoutMs`) or cannot commit, every write of the batch fails and none took effect.
 *
 * Other processes (the other workers, docs/design.md §13) write the same file. SQLite's own
 * busy handler would wait for their lock by sleeping on the event loop; so the connection has
 * no busy timeout (backends/sqlite.ts) and a batch that finds the lock taken asks again on the
 * next turns of the event loop, then every millisecond, while this process goes on serving
 * requests, whose writes join the next batch.
 */
export class GroupCommit<DB> {
  private queue: Queued<DB>[] = [];
  /** Phase timing (src/request-phases.ts) is decided once, when the store opens. */
  private readonly timed = phaseTimingRequested();

  constructor(
    private readonly db: Kysely<DB>,
    private readonly lockTimeoutMs: number,
    /** Resolves once every commit made before the call is on disk. */
    private readonly durable: () => Promise<void>,
  ) {}

  run<T>(write: Write<DB, T>, statements: Statements): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.queue.length === 0) setImmediate(() => void this.commit());
      const phases = this.timed ? currentPhases() : undefined;
      this.queue.push({ write, statements, resolve: resolve as (value: unknown) => void, reject, phases });
    });
  }

  private async commit(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    const answers: (() => void)[] = [];
    let timing: BatchTiming | undefined;
    try {
      await this.db.connection().execute(async (connection) => {
        if (this.timed) timing = new BatchTiming();
        await this.begin(connection, timing);
        timing?.locked();
        try {
          for (const { write, statements, resolve, reject } of batch) {
            const atomic = statements === 'several';
            if (atomic) await connection.executeQuery(SAVEPOINT);
            try {
              const value = await write(connection);
              if (atomic) await connection.executeQuery(RELEASE);
              answers.push(() => resolve(value));
            } catch (error) {
              if (atomic) {
                await connection.executeQuery(ROLLBACK_TO);
                await connection.executeQuery(RELEASE);
              }
              answers.push(() => reject(error));
            }
            timing?.statementDone();
          }
          timing?.committing();
          await connection.executeQuery(COMMIT);
        } catch (error) {
          await connection.executeQuery(ROLLBACK).catch(() => undefined); // the error below says what failed
          throw error;
        }
      });
      timing?.committed();
      await this.durable();
    } catch (error) {
      for (const { reject } of batch) reject(error);
      return;
    }
    timing?.synced(batch.map((queued) => queued.phases));
    for (const answer of answers) answer();
  }

  private async begin(connection: Kysely<DB>, timing: BatchTiming | undefined): Promise<void> {
    const started = performance.now();
    const deadline = started + this.lockTimeoutMs;
    for (;;) {
      try {
        await connection.executeQuery(BEGIN);
        return;
      } catch (error) {
        if ((error as { code?: unknown }).code !== 'SQLITE_BUSY' || performance.now() >= deadline) throw error;
        timing?.retried();
        await (performance.now() - started < LOCK_RETRY_EACH_TURN_MS ? nextTurn() : sleep(LOCK_RETRY_MS));
      }
    }
  }
}
