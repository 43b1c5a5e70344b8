import cluster from 'node:cluster';
import type { Config } from './config.js';
import { reloadKeysOnSighup, stopOn } from './lifecycle.js';
import { createLogger } from './logger.js';

/**
 * `fib-auth serve`: one process that serves HTTP (WORKERS=1), or a cluster (docs/design.md §13),
 * whose primary and workers each run this. Each role loads only what it runs: the primary
 * never loads the server (src/server.ts) nor builds the API.
 */
export async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  if (config.issuer === undefined && cluster.isPrimary) {
    logger.warn(
      `ISSUER is not set: tokens name http://localhost:${config.port || '<port>'} as their issuer, which only clients on this machine can discover; set ISSUER to the service's public https origin`,
    );
  }
  if (cluster.isWorker) return (await import('./cluster/worker.js')).serveWorker(config, logger);
  if (config.workers > 1) return (await import('./cluster/primary.js')).servePrimary(config, logger);
  const { startServer } = await import('./server.js');
  const server = await startServer(config, logger);
  stopOn(logger, 'shutting down: no new connections, draining requests in flight', () => server.close());
  reloadKeysOnSighup(server, logger);
}
