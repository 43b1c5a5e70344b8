import cluster, { type Worker } from 'node:cluster';
import type { Logger } from '../logger.js';
import { onMessageFromWorkers } from './messages.js';

/**
 * The workers' lives (docs/design.md §13): forks them, replaces one that crashes, and on close
 * lets each drain and waits for the last. A worker that could not start stops them all: another
 * would fail alike, and the primary exits only once none runs, so that none is left writing to a
 * closed channel.
 */
export interface Supervisor {
  /** Forks the workers. */
  start(): void;
  /** Resolves once every worker listens, with the port they share; rejects, once none runs, with why one could not start. */
  listening: Promise<number>;
  /** Resolves once no worker runs (SIGTERM to the process group stops them all). */
  stopped: Promise<void>;
  /** Tells every worker to read the keys again. */
  reloadKeys(): void;
  /** Lets every worker drain and stop; resolves once none runs. */
  close(): Promise<void>;
}

export function superviseWorkers(count: number, logger: Logger): Supervisor {
  const running = new Set<Worker>();
  const listened = new Set<Worker>();
  /** The workers that said they stopped listening. */
  const closed = new Set<Worker>();
  /** What a worker that could not start said about it, for the one line the primary prints. */
  const failures = new Map<Worker, string>();
  let closing = false;
  let startFailure: Error | undefined;

  let resolveListening!: (port: number) => void;
  let rejectListening!: (error: Error) => void;
  const listening = new Promise<number>((resolve, reject) => ((resolveListening = resolve), (rejectListening = reject)));
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));

  const stopEvery = () => {
    for (const worker of running) worker.process.kill('SIGTERM');
  };

  let announcedClosed = false;
  /** Logs once that no worker listens: a worker that drained and exited counts as closed too. */
  const announceWhenClosed = () => {
    if (announcedClosed || closed.size === 0 || ![...running].every((worker) => closed.has(worker))) return;
    announcedClosed = true;
    logger.info('shutting down: no new connections, every worker drains its requests in flight');
  };
  // Node's cluster closes the shared port once no worker listens, which is before this message
  // arrives (the worker's close goes first on the same channel).
  const stopHearingClosed = onMessageFromWorkers('worker:closed', (from) => {
    closed.add(from);
    announceWhenClosed();
  });
  const stopHearingFailed = onMessageFromWorkers('worker:failed', (from, { message }) => failures.set(from, message));

  const fork = () => {
    const worker = cluster.fork();
    running.add(worker);
    worker.once('listening', ({ port }) => {
      listened.add(worker);
      if (listened.size === count) resolveListening(port);
    });
    // Judged on the next turn: a signal to the whole process group (Ctrl-C, systemd) reaches the
    // primary and its workers together, and a worker's exit may be seen first; the primary's
    // own stop, handled meanwhile, says that the worker was stopped rather than failed.
    worker.once('exit', (code, signal) => setImmediate(() => exited(worker, code, signal)));
  };
  const exited = (worker: Worker, code: number, signal: string | null) => {
    running.delete(worker);
    if (!listened.has(worker) && !closing) {
      startFailure = new Error(failures.get(worker) ?? `a worker exited (${signal ?? code}) before it listened`);
      closing = true;
      stopEvery();
    } else if (!closing && (code !== 0 || signal !== null)) {
      // A worker that crashed is replaced; its connections are gone, the others' are not.
      // One that exited 0 was stopped (SIGTERM to the process group): it is not.
      logger.error({ worker: worker.id, code, signal }, 'a worker exited; starting another');
      fork();
    }
    announceWhenClosed();
    if (running.size > 0) return;
    stopHearingClosed();
    stopHearingFailed();
    resolveStopped();
    if (startFailure) rejectListening(startFailure);
  };
  return {
    start() {
      for (let i = 0; i < count; i++) fork();
    },
    listening,
    stopped,
    reloadKeys() {
      for (const worker of running) worker.process.kill('SIGHUP');
    },
    async close() {
      closing = true;
      stopEvery();
      await stopped;
    },
  };
}
