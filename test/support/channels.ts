import type { Channel, StoreMessage } from '../../src/store/remote-store.js';

/**
 * Two ends of a channel inside one process, delivering as the cluster's IPC does: later (not
 * in the sender's turn), in order, as a structured clone. `close` tells both ends the other is gone.
 */
export function channelPair(): { primary: Channel; worker: Channel; close(): void } {
  const listeners = { primary: [] as ((m: StoreMessage) => void)[], worker: [] as ((m: StoreMessage) => void)[] };
  const closers: (() => void)[] = [];
  const end = (self: 'primary' | 'worker', other: 'primary' | 'worker'): Channel => ({
    send: (message) => {
      const copy = structuredClone(message);
      setImmediate(() => listeners[other].forEach((listener) => listener(copy)));
    },
    onMessage: (listener) => void listeners[self].push(listener),
    onClose: (listener) => void closers.push(listener),
  });
  return { primary: end('primary', 'worker'), worker: end('worker', 'primary'), close: () => closers.forEach((c) => c()) };
}
