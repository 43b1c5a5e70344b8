import cluster from 'node:cluster';
import type { Config } from '../config.js';
import { reloadKeysOnSighup, stopOn } from '../lifecycle.js';
import type { Logger } from '../logger.js';
import { startServer, type RunningServer } from '../server.js';
import { limitPeersThroughPrimary } from './limits-relay.js';
import { sendToPrimary } from './messages.js';
import { shareMetrics } from './metrics-relay.js';

/**
 * A worker of a cluster (docs/design.md §13): serves HTTP as a single process does, with its
 * metrics and limits shared through the primary, which purges the store, counts the live
 * sessions and serves the metrics. It drains on its first SIGTERM, and when its primary is gone.
 */
export async function serveWorker(config: Config, processLogger: Logger): Promise<void> {
  const logger = processLogger.child({ worker: cluster.worker!.id }); // a worker's lines say which worker wrote them
  // A primary that is gone closes the channel; a write to it then fails with EPIPE, which Node
  // would throw as an unhandled 'error' with its stack. 'disconnect' below stops this worker.
  cluster.worker!.on('error', (err) => logger.debug({ err }, 'the channel to the primary failed'));
  let server: RunningServer;
  try {
    server = await startServer(config, logger, { cluster: { shareMetrics, limitPeers: limitPeersThroughPrimary() } });
  } catch (error) {
    // The primary prints the one line for the whole server, once every worker has exited.
    const message = (error instanceof Error ? error.message : String(error)).split('\n')[0];
    return sendToPrimary({ type: 'worker:failed', message }, () => process.exit(1));
  }
  const stop = stopOn(logger, 'worker stopped listening; draining its requests in flight', () => {
    const closed = server.close(); // stops listening before it returns
    sendToPrimary({ type: 'worker:closed' });
    return closed;
  });
  // A worker whose primary is gone has no peers for its limits and metrics: it stops as on SIGTERM.
  process.once('disconnect', () => stop('disconnect'));
  reloadKeysOnSighup(server, logger);
}
