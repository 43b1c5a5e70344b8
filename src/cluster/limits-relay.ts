import cluster from 'node:cluster';
import type { LimitPeers } from '../http/rate-limits.js';
import { onMessageFromPrimary, onMessageFromWorkers, sendToPrimary } from './messages.js';

/**
 * The limits of §12.3 are the server's, not each worker's (docs/design.md §13): a worker that
 * counts a request tells the primary the limit's name and key, and the primary tells every other
 * worker. Two IPC hops, well under a millisecond.
 */

/** A worker's half: its peers are the other workers, reached through the primary. */
export function limitPeersThroughPrimary(): LimitPeers {
  return {
    publish: (counted) => sendToPrimary({ type: 'limits:counted', counted }),
    subscribe: (listener) => onMessageFromPrimary('limits:counted', (message) => listener(message.counted)),
  };
}

/** The primary's half: what one worker counted goes to every other. Returns the function that stops relaying. */
export function relayCountedRequests(): () => void {
  return onMessageFromWorkers('limits:counted', (from, message) => {
    for (const worker of Object.values(cluster.workers ?? {}))
      if (worker && worker !== from && worker.isConnected()) worker.send(message);
  });
}
