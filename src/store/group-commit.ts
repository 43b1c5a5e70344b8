import { setTimeout as sleep } from 'node:timers/promises';
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

/** How long a batch waits before it asks again for the write lock another process holds. */
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
 * Group commit for SQLite. better-sqlite3 runs every statement on the event loop, and a commit
 * waits for its fsync (about 130 µs on this project's machines), during which the server does
 * nothing else. The writes that arrive in one turn of the event loop therefore run one after
 * another in a single immediate transaction and share its fsync. Each is answered only after
 * that commit, so a write that was answered is on disk, as with a commit of its own.
 *
 * A write that fails is undone alone and answered with its error, and the others still commit:
 * SQLite undoes a failed statement by itself, and a write of several statements runs under a
 * savepoint. When the transaction cannot start (another process holds the write lock past
 * `lockTimeoutMs`) or cannot commit, every write of the batch fails and none took effect.
 *
 * Other processes (the other workers, docs/design.md §13) write the same file. SQLite's own
 * busy handler would wait for their lock by sleeping on the event loop; so the connection has
 * no busy timeout (backends/sqlite.ts) and a batch that finds the lock taken asks again a millisecond
 * later, while this process goes on serving requests, whose writes join the next batch.
 */
export class GroupCommit<DB> {
  private queue: Queued<DB>[] = [];
  /** Phase timing (src/request-phases.ts) is decided once, when the store opens. */
  private readonly timed = phaseTimingRequested();

  constructor(
    private readonly db: Kysely<DB>,
    private readonly lockTimeoutMs: number,
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
    } catch (error) {
      for (const { reject } of batch) reject(error);
      return;
    }
    timing?.committed(batch.map((queued) => queued.phases));
    for (const answer of answers) answer();
  }

  private async begin(connection: Kysely<DB>, timing: BatchTiming | undefined): Promise<void> {
    const deadline = performance.now() + this.lockTimeoutMs;
    for (;;) {
      try {
        await connection.executeQuery(BEGIN);
        return;
      } catch (error) {
        if ((error as { code?: unknown }).code !== 'SQLITE_BUSY' || performance.now() >= deadline) throw error;
        timing?.retried();
        await sleep(LOCK_RETRY_MS);
      }
    }
  }
}
