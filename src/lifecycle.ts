import cluster from 'node:cluster';
import type { Logger } from './logger.js';

/**
 * Stops on SIGTERM or SIGINT, or when the returned function is called: logs `why`, runs `close`
 * once, and exits 0 when it resolves, 1 when it fails. A second signal ends the process at once,
 * but a worker's: its primary passes SIGTERM on, and a signal to the whole process group
 * (systemd's, Ctrl-C's) reaches the worker too, which would otherwise end it with its requests
 * in flight (docs/design.md §13).
 */
export function stopOn(logger: Logger, why: string, close: () => Promise<void>): (signal: string) => void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const closed = close(); // a server stops listening before this returns
    logger.info({ signal }, why);
    closed.then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  if (cluster.isWorker) process.on('SIGTERM', stop).on('SIGINT', stop);
  else process.once('SIGTERM', stop).once('SIGINT', stop);
  return stop;
}

/** Reads the keys again on SIGHUP (docs/design.md §5); keys that cannot be read leave the old ones in use. */
export function reloadKeysOnSighup(server: { reloadKeys(): Promise<void> }, logger: Logger): void {
  process.on('SIGHUP', () => {
    server.reloadKeys().catch((err: unknown) => logger.error({ err }, 'reloading the keys failed; the old keys stay in use'));
  });
}
