import { Gauge, type Registry } from 'prom-client';
import type { Store } from './domain/store.js';
import type { Logger } from './logger.js';

/**
 * SETs a stream's queue holds at most (docs/design.md §15): past it the oldest are dropped,
 * so a receiver that never acknowledges cannot grow the database without bound. At ~10 logouts
 * a second that is a day of them.
 */
export const SSF_QUEUE_BOUND = 1_000_000;
/** A receiver whose oldest pending SET is older than this is logged as falling behind. */
export const SSF_BEHIND_SECONDS = 60;
const WATCH_INTERVAL_MS = 15_000;

/**
 * Puts `fib_auth_ssf_queue_depth` (per stream) into `registry`, counted now and then every 15 s,
 * never by a scrape; logs a receiver that falls behind (and when it caught up), and drops the
 * oldest SETs of a queue past SSF_QUEUE_BOUND. One process of a server watches (the primary of
 * a cluster). Resolves once counted, with the function that stops the timer.
 */
export async function watchSecurityEventQueues(
  registry: Registry,
  store: Store,
  logger: Logger,
  bound = SSF_QUEUE_BOUND,
): Promise<() => void> {
  const gauge = new Gauge({
    name: 'fib_auth_ssf_queue_depth',
    help: `Shared Signals events queued for a stream and not yet delivered, counted every ${WATCH_INTERVAL_MS / 1000} s.`,
    labelNames: ['stream_id'],
    registers: [registry],
  });
  const behind = new Set<string>();
  const watch = async () => {
    try {
      const depths = await store.queueDepths();
      gauge.reset();
      const now = Date.now();
      for (const { streamId, depth, oldestQueuedAt } of depths) {
        gauge.set({ stream_id: streamId }, depth);
        const oldestSeconds = Math.round((now - oldestQueuedAt) / 1000);
        if (depth > bound) {
          const dropped = await store.trimQueue(streamId, bound);
          logger.error({ streamId, dropped, bound }, "a receiver's queue passed its bound: its oldest SETs were dropped");
        }
        if (oldestSeconds > SSF_BEHIND_SECONDS && !behind.has(streamId)) {
          behind.add(streamId);
          logger.warn({ streamId, depth, oldestSeconds }, 'a Shared Signals receiver falls behind: its oldest SET waits');
        }
      }
      for (const streamId of behind) {
        const queue = depths.find((entry) => entry.streamId === streamId);
        if (queue && now - queue.oldestQueuedAt <= SSF_BEHIND_SECONDS * 1000) continue;
        behind.delete(streamId);
        logger.info({ streamId }, 'a Shared Signals receiver caught up');
      }
    } catch (err) {
      logger.warn({ err }, 'counting the Shared Signals queues failed; the gauge keeps its last count');
    }
  };
  const timer = setInterval(() => void watch(), WATCH_INTERVAL_MS).unref();
  await watch();
  return () => clearInterval(timer);
}
