import type { Store } from '../domain/store.js';

/**
 * A message channel between two processes (a cluster worker and its primary): what one end
 * sends, the other's listener receives, in order, as a structured clone (undefined included).
 */
export interface Channel {
  send(message: StoreMessage): void;
  onMessage(listener: (message: StoreMessage) => void): void;
  /** Called once the other end is gone: nothing sent will be answered any more. */
  onClose(listener: () => void): void;
}

/** The store's methods that answer a value: everything but watching and closing. */
type CallableMethod = Exclude<keyof Store, 'watchRevocations' | 'close'>;

interface Call {
  id: number;
  method: CallableMethod;
  args: unknown[];
}

type Outcome = { id: number; value: unknown } | { id: number; error: { message: string; code?: string } };

/** What the two ends of a store channel say to each other. */
export type StoreMessage =
  | { type: 'store:calls'; calls: Call[] }
  | { type: 'store:outcomes'; outcomes: Outcome[] }
  | { type: 'store:watch' }
  | { type: 'store:revocations' };

/** Every method a remote store forwards; the type makes the list complete. */
const CALLABLE: Record<CallableMethod, true> = {
  addUser: true,
  removeUser: true,
  findUser: true,
  listUsers: true,
  createSession: true,
  findSession: true,
  endSession: true,
  endSessionByRefreshJti: true,
  rotateSession: true,
  revokeSession: true,
  countLiveSessions: true,
  purgeExpiredSessions: true,
  createSignInChallenge: true,
  findSignInChallenge: true,
  useSignInChallenge: true,
  purgeExpiredSignInChallenges: true,
  addClient: true,
  removeClient: true,
  findClient: true,
  listClients: true,
  revocationsAfter: true,
  purgeExpiredRevocations: true,
  ping: true,
};
const isCallable = (method: string): method is CallableMethod => Object.hasOwn(CALLABLE, method);

export const isStoreMessage = (message: unknown): message is StoreMessage =>
  typeof message === 'object' &&
  message !== null &&
  typeof (message as { type?: unknown }).type === 'string' &&
  (message as { type: string }).type.startsWith('store:');

/**
 * Sends what is queued at the end of this turn of the event loop, as one message: the calls
 * (or answers) of concurrent requests cross the channel together, as the SQLite store commits
 * the writes of one turn together (group commit).
 */
class Batcher<T> {
  private queued: T[] = [];

  constructor(private readonly flush: (items: T[]) => void) {}

  add(item: T): void {
    if (this.queued.push(item) === 1) {
      setImmediate(() => {
        const items = this.queued;
        this.queued = [];
        this.flush(items);
      });
    }
  }
}

/**
 * A store in another process, behind a channel (docs/design.md §13): each method is a call the
 * other end (`serveStore`) runs on the real store and answers; watchers are told when it says
 * revocations may have been added. One SQLite file has one writer this way, however many
 * processes serve HTTP.
 */
export function remoteStore(channel: Channel): Store {
  let nextId = 0;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  const watchers = new Set<() => void>();
  let watching = false;
  const calls = new Batcher<Call>((batch) => channel.send({ type: 'store:calls', calls: batch }));
  channel.onMessage((message) => {
    if (message.type === 'store:revocations') for (const watcher of watchers) watcher();
    if (message.type !== 'store:outcomes') return;
    for (const outcome of message.outcomes) {
      const waiting = pending.get(outcome.id);
      pending.delete(outcome.id);
      if ('error' in outcome) waiting?.reject(Object.assign(new Error(outcome.error.message), { code: outcome.error.code }));
      else waiting?.resolve(outcome.value);
    }
  });
  let closed = false;
  channel.onClose(() => {
    closed = true;
    for (const { reject } of pending.values()) reject(new Error('the store process is gone'));
    pending.clear();
  });
  const call = (method: CallableMethod, args: unknown[]) =>
    new Promise((resolve, reject) => {
      if (closed) return reject(new Error('the store process is gone'));
      const id = nextId++;
      pending.set(id, { resolve, reject });
      calls.add({ id, method, args });
    });
  const methods = Object.fromEntries(
    (Object.keys(CALLABLE) as CallableMethod[]).map((method) => [method, (...args: unknown[]) => call(method, args)]),
  );
  return {
    ...(methods as Omit<Store, 'watchRevocations' | 'close'>),
    watchRevocations(listener) {
      // The other end tells only a store that watches: most workers never serve the feed.
      if (watchers.size === 0 && !watching) channel.send({ type: 'store:watch' });
      watching = true;
      watchers.add(listener);
      return () => watchers.delete(listener);
    },
    // The store itself belongs to the other end, which closes it after every worker stopped.
    close: async () => {},
  };
}

/**
 * Runs the calls that come over `channel` on `store`, and answers them; once the other end
 * watches, tells it whenever the store says revocations may have been added (at most once per
 * turn of the event loop). Returns the function that stops the telling.
 */
export function serveStore(store: Store, channel: Channel): () => void {
  const outcomes = new Batcher<Outcome>((batch) => channel.send({ type: 'store:outcomes', outcomes: batch }));
  const revocations = new Batcher<true>(() => channel.send({ type: 'store:revocations' }));
  let stopWatching: (() => void) | undefined;
  channel.onMessage((message) => {
    if (message.type === 'store:watch') stopWatching ??= store.watchRevocations(() => revocations.add(true));
    if (message.type !== 'store:calls') return;
    for (const { id, method, args } of message.calls) {
      if (!isCallable(method)) {
        outcomes.add({ id, error: { message: `the store has no method ${String(method)}` } });
        continue;
      }
      const methods = store as unknown as Record<CallableMethod, (...a: unknown[]) => Promise<unknown>>;
      methods[method](...args).then(
        (value) => outcomes.add({ id, value }),
        (error: unknown) => {
          const { message: text, code } = error as { message?: string; code?: unknown };
          outcomes.add({ id, error: { message: String(text ?? error), code: typeof code === 'string' ? code : undefined } });
        },
      );
    }
  });
  return () => stopWatching?.();
}
