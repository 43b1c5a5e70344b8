import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Registry } from 'prom-client';
import type { Config } from './config.js';
import { epochSeconds, systemClock } from './domain/clock.js';
import { KeyRing } from './domain/key-ring.js';
import type { Store } from './domain/store.js';
import type { CountedRequest } from './http/rate-limits.js';
import { keyFileSource } from './key-files.js';
import type { Logger } from './logger.js';
import { startManagementServer } from './management.js';
import { countLiveSessions } from './metrics.js';
import type { ClusterLinks, ServerParts } from './server.js';
import { purgeExpiredEntries } from './server.js';
import { watchSecurityEventQueues } from './ssf-queues.js';
import { openStore } from './store/open.js';

/**
 * Several processes serve HTTP on one port (docs/design.md §13): node:cluster's primary forks
 * WORKERS workers and hands each new connection to one of them in turn. The primary serves no
 * request: it opens the store first (migrations) and purges it; each worker opens the store
 * too (SQLite: a connection with its own group commit; PostgreSQL: a pool). The primary counts
 * the live sessions and serves the metrics on the management port, every worker's summed; it
 * tells every worker what one counted against a rate limit, passes SIGHUP on to each, and on
 * SIGTERM lets each drain before it closes the store.
 */

/** What a worker and its primary say to each other, beside prom-client's own messages. */
type ClusterMessage = { type: 'limits:counted'; counted: CountedRequest } | { type: 'worker:closed' };

const isClusterMessage = (message: unknown): message is ClusterMessage =>
  typeof message === 'object' &&
  message !== null &&
  ['limits:counted', 'worker:closed'].includes((message as { type?: string }).type ?? '');

/** Tells the primary that this worker accepts no more connections (it drains the ones it has). */
export function tellPrimaryClosed(): void {
  process.send!({ type: 'worker:closed' } satisfies ClusterMessage);
}

/** What a worker needs of its primary to serve as part of the whole server. */
export function workerParts(): ServerParts {
  const send = (message: ClusterMessage) => process.send!(message);
  const limitListeners: ((counted: CountedRequest) => void)[] = [];
  process.on('message', (message) => {
    if (isClusterMessage(message) && message.type === 'limits:counted')
      for (const listener of limitListeners) listener(message.counted);
  });
  const cluster: ClusterLinks = {
    shareMetrics(registry) {
      AggregatorRegistry.setRegistries(registry);
      new AggregatorRegistry(); // from now on answers the primary's requests for this worker's metrics
    },
    limitPeers: {
      publish: (counted) => send({ type: 'limits:counted', counted }),
      subscribe: (listener) => void limitListeners.push(listener),
    },
  };
  return { cluster };
}

export interface Primary {
  /** Resolves once every worker listens, with the port they share. */
  listening: Promise<number>;
  /** The port of the management listener, which the primary serves. */
  managementPort: number;
  /** Resolves once every worker stopped (SIGTERM to the process group stops them all). */
  stopped: Promise<void>;
  /** Lets every worker drain and stop, then closes the store. */
  close(): Promise<void>;
  /** Tells every worker to read the keys again. */
  reloadKeys(): void;
}

/** Starts the primary of a cluster of `config.workers` workers. */
export async function startPrimary(config: Config, logger: Logger): Promise<Primary> {
  const store: Store = await openStore(config, logger);
  // Before any worker reads it: the first start creates the key file, once, and key files
  // that cannot be used (§5) stop the server here, with one line, rather than in every worker.
  await KeyRing.load(
    keyFileSource(config.signingKeyFile, () => logger.info({ file: config.signingKeyFile }, 'created a new signing key')),
    systemClock,
    await store.withdrawnKeys(),
  );
  const stopPurging = await purgeExpiredEntries(store, systemClock, logger);
  // The workers' registries, summed, and the primary's own: the live sessions, counted here
  // once for the whole server. A scrape asks each worker for its registry, nothing more.
  const workerMetrics = new AggregatorRegistry();
  const ownMetrics = new Registry();
  const stopCounting = await countLiveSessions(ownMetrics, () => store.countLiveSessions(epochSeconds(systemClock)), logger);
  const stopWatchingQueues = await watchSecurityEventQueues(ownMetrics, store, logger);
  const management = await startManagementServer(config, logger, async () => {
    const [workers, own] = await Promise.all([workerMetrics.clusterMetrics(), ownMetrics.metrics()]);
    return workers + own;
  });
  let closing = false;

  const closed = new Set<Worker>();
  let announcedClosed = false;
  /** Logs once that no worker listens: a worker that drained and exited counts as closed too. */
  const announceWhenClosed = () => {
    if (announcedClosed || closed.size === 0 || ![...running].every((worker) => closed.has(worker))) return;
    announcedClosed = true;
    logger.info('shutting down: no new connections, every worker drains its requests in flight');
  };
  const relay = (from: Worker, message: unknown) => {
    if (!isClusterMessage(message)) return;
    // Node's cluster closes the shared port once no worker listens, which is before this
    // message arrives (the worker's close goes first on the same channel).
    if (message.type === 'worker:closed') {
      closed.add(from);
      announceWhenClosed();
    }
    if (message.type === 'limits:counted') {
      for (const worker of Object.values(cluster.workers ?? {}))
        if (worker && worker !== from && worker.isConnected()) worker.send(message);
    }
  };

  let started = 0;
  let resolveListening!: (port: number) => void;
  let rejectListening!: (error: Error) => void;
  const listening = new Promise<number>((resolve, reject) => ((resolveListening = resolve), (rejectListening = reject)));
  const listened = new Set<Worker>();
  const running = new Set<Worker>();
  let resolveStopped!: () => void;
  /** Resolves once no worker runs any more. */
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));
  const fork = () => {
    const worker = cluster.fork();
    running.add(worker);
    worker.on('message', (message) => relay(worker, message));
    worker.once('listening', ({ port }) => {
      listened.add(worker);
      if (++started === config.workers) resolveListening(port);
    });
    worker.once('exit', (code, signal) => {
      running.delete(worker);
      if (!listened.has(worker)) {
        // It could not start (the store, the keys): another would fail alike.
        rejectListening(new Error(`a worker exited (${signal ?? code}) before it listened`));
      } else if (!closing && (code !== 0 || signal !== null)) {
        // A worker that crashed is replaced; its connections are gone, the others' are not.
        // One that exited 0 was stopped (SIGTERM to the process group): it is not.
        logger.error({ worker: worker.id, code, signal }, 'a worker exited; starting another');
        fork();
      }
      announceWhenClosed();
      if (running.size === 0) resolveStopped();
    });
  };
  for (let i = 0; i < config.workers; i++) fork();

  return {
    listening,
    managementPort: management.port,
    stopped,
    reloadKeys() {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGHUP');
    },
    async close() {
      closing = true;
      stopPurging();
      stopCounting();
      stopWatchingQueues();
      await management.close();
      // Each worker drains its requests in flight with its own store, then exits.
      for (const worker of running) worker.process.kill('SIGTERM');
      await stopped;
      await store.close();
    },
  };
}
