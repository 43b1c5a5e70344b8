import cluster, { type Worker } from 'node:cluster';
import type { CountedRequest } from '../http/rate-limits.js';

/**
 * What a worker and its primary say to each other (docs/design.md §13), beside prom-client's own
 * messages: this list is the one place their names are written.
 */
export const MESSAGE_TYPES = ['limits:counted', 'worker:closed', 'worker:failed'] as const;
export type MessageType = (typeof MESSAGE_TYPES)[number];

/** What each message carries besides its type; a name missing here, or one not in the list, does not compile. */
interface Payloads extends Record<MessageType, object> {
  /** A worker counted a request against a limit (§12.3); the primary tells every other worker. */
  'limits:counted': { counted: CountedRequest };
  /** A worker stopped listening and drains its requests in flight. */
  'worker:closed': Record<never, never>;
  /** A worker could not start; `message` is the one line the primary prints for it. */
  'worker:failed': { message: string };
}

export type ClusterMessage<T extends MessageType = MessageType> = { [K in T]: { type: K } & Payloads[K] }[T];

export const isClusterMessage = (message: unknown): message is ClusterMessage =>
  typeof message === 'object' &&
  message !== null &&
  (MESSAGE_TYPES as readonly unknown[]).includes((message as { type?: unknown }).type);

/** In a worker: sends `message` to the primary; `sent` runs once it is written (or could not be). */
export function sendToPrimary(message: ClusterMessage, sent?: () => void): void {
  try {
    process.send!(message, undefined, {}, () => sent?.());
  } catch {
    sent?.(); // the channel is closed: the primary is gone, and 'disconnect' stops this worker
  }
}

/** In a worker: calls `listener` with each message of this type from the primary. */
export function onMessageFromPrimary<T extends MessageType>(type: T, listener: (message: ClusterMessage<T>) => void): void {
  process.on('message', (message) => {
    if (isClusterMessage(message) && message.type === type) listener(message as ClusterMessage<T>);
  });
}

/** In the primary: calls `listener` with each message of this type from any worker. */
export function onMessageFromWorkers<T extends MessageType>(
  type: T,
  listener: (from: Worker, message: ClusterMessage<T>) => void,
): () => void {
  const handle = (from: Worker, message: unknown) => {
    if (isClusterMessage(message) && message.type === type) listener(from, message as ClusterMessage<T>);
  };
  cluster.on('message', handle);
  return () => void cluster.off('message', handle);
}
