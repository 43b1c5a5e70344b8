import { Registry } from 'prom-client';
import { storeOptions, type Config } from '../config.js';
import { epochSeconds, systemClock } from '../domain/clock.js';
import { ensureSigningKey } from '../key-files.js';
import { stopOn } from '../lifecycle.js';
import type { Logger } from '../logger.js';
import { startManagementServer } from '../management.js';
import { countLiveSessions } from '../metrics.js';
import { watchSecurityEventQueues } from '../ssf-queues.js';
import { purgeExpiredEntries } from '../store/maintenance.js';
import { openStore } from '../store/open.js';
import { relayCountedRequests } from './limits-relay.js';
import { clusterMetricsText } from './metrics-relay.js';
import { superviseWorkers } from './supervisor.js';

/**
 * The primary of a cluster (docs/design.md §13): node:cluster's primary forks WORKERS workers and
 * hands each new connection to one of them in turn. It serves no API request and builds no API
 * (no contract compiled, no key ring). Before any worker starts it opens the store (migrations run once) and checks the key
 * files (the first start creates the signing key, once), so a store or key that cannot be used
 * is one line from the primary rather than one from each worker. Then it purges the store,
 * counts the live sessions and serves the metrics for the whole server, relays what the limits
 * count, and leaves the workers' lives to the supervisor.
 */
export async function servePrimary(config: Config, logger: Logger): Promise<void> {
  const store = await openStore(storeOptions(config, logger));
  await ensureSigningKey(config.signingKeyFile, await store.withdrawnKeys(), () =>
    logger.info({ file: config.signingKeyFile }, 'created a new signing key'),
  );
  const stopPurging = await purgeExpiredEntries(store, systemClock, logger);
  // The live sessions, counted here once for the whole server, in the primary's own registry.
  const ownMetrics = new Registry();
  const stopCounting = await countLiveSessions(ownMetrics, () => store.countLiveSessions(epochSeconds(systemClock)), logger);
  const stopWatchingQueues = await watchSecurityEventQueues(ownMetrics, store, logger);
  const management = await startManagementServer(config, logger, clusterMetricsText(ownMetrics));
  const stopRelaying = relayCountedRequests();
  const workers = superviseWorkers(config.workers, logger);

  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      const drained = workers.close(); // each worker drains its requests in flight with its own store, then exits
      stopPurging();
      stopCounting();
      stopWatchingQueues();
      stopRelaying();
      await management.close();
      await drained;
      await store.close();
    })());
  // Before the first fork: a signal while the workers start stops them too, rather than
  // leaving them without their primary.
  const stop = stopOn(logger, 'shutting down: stopping every worker', close);
  process.on('SIGHUP', () => workers.reloadKeys());
  workers.start();
  const port = await workers.listening.catch(async (error: unknown) => {
    await close(); // every worker has exited already
    throw error;
  });
  logger.info({ port, host: config.host, managementPort: management.port, workers: config.workers }, 'fib-auth listening');
  void workers.stopped.then(() => stop('every worker stopped'));
}
