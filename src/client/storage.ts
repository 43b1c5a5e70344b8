import type { components } from '../../generated/openapi.js';

/** The contract's token pair. */
export type TokenPair = components['schemas']['TokenPair'];

/** A token pair as the client keeps it, with the time it arrived (ms since the epoch, this machine's clock). */
export type StoredTokens = TokenPair & { receivedAt: number };

/**
 * Where a client keeps its token pair. Clients that share one storage share the pair, and
 * `exclusive` lets only one of them refresh it at a time: a refresh token works once, and a
 * second use of it revokes the session.
 */
export interface TokenStorage {
  load(): StoredTokens | undefined;
  /** `undefined` forgets the pair. */
  save(tokens: StoredTokens | undefined): void;
  /** Runs `task` once no task of another client of this storage runs, and resolves with its result. */
  exclusive<T>(task: () => Promise<T>): Promise<T>;
}

/** Runs tasks one after the other, within this JavaScript realm. */
function queue(): TokenStorage['exclusive'] {
  let last: Promise<unknown> = Promise.resolve();
  return (task) => {
    const run = last.then(task);
    last = run.catch(() => undefined);
    return run;
  };
}

/** The default: the pair lives in this page's (or process's) memory and is gone on reload. */
export function memoryStorage(): TokenStorage {
  let tokens: StoredTokens | undefined;
  return {
    load: () => tokens,
    save: (next) => {
      tokens = next;
    },
    exclusive: queue(),
  };
}

export interface LocalStorageAdapterOptions {
  /** The item the pair is kept under, and the name of the lock its refreshes take. */
  key?: string;
  /** `localStorage` by default; `sessionStorage` keeps the pair per tab. */
  storage?: Storage;
  /** The Web Locks API (`navigator.locks`) by default. */
  locks?: LockManager;
}

/**
 * Keeps the pair in `localStorage`, shared by every tab of the origin, so that a sign-in in one
 * tab signs them all in. Refreshes take a Web Lock, so that of several tabs finding the access
 * token expired at once, one refreshes and the others use its new pair. Where the Web Locks API
 * is missing, refreshes are serialised within the tab only.
 *
 * Any script running on the origin can read `localStorage`: an XSS flaw leaks the refresh
 * token, which outlives the page. The memory default leaks nothing after the page is gone, at
 * the cost of a sign-in per tab and per reload.
 */
export function localStorageAdapter({
  key = 'fib-auth.tokens',
  storage = globalThis.localStorage,
  locks = globalThis.navigator?.locks,
}: LocalStorageAdapterOptions = {}): TokenStorage {
  if (!storage) throw new TypeError('localStorageAdapter: there is no localStorage here; pass { storage }');
  return {
    load() {
      const text = storage.getItem(key);
      if (text === null) return undefined;
      try {
        const tokens: unknown = JSON.parse(text);
        return isStoredTokens(tokens) ? tokens : undefined;
      } catch {
        return undefined;
      }
    },
    save(tokens) {
      if (tokens === undefined) storage.removeItem(key);
      else storage.setItem(key, JSON.stringify(tokens));
    },
    // The lock is held until the task's promise settles, and request() resolves with its result.
    exclusive: locks ? <T>(task: () => Promise<T>) => locks.request(`fib-auth:${key}`, task) as Promise<T> : queue(),
  };
}

/** Whether an item someone else may have written is a pair this client stored. */
function isStoredTokens(value: unknown): value is StoredTokens {
  const tokens = value as Partial<StoredTokens> | null;
  return (
    typeof tokens?.accessToken === 'string' &&
    typeof tokens.refreshToken === 'string' &&
    typeof tokens.expirationTime === 'number' &&
    typeof tokens.receivedAt === 'number'
  );
}
