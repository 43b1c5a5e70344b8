import type { components } from '../generated/openapi.js';

/** The contract's token pair. */
export type TokenPair = components['schemas']['TokenPair'];

/** A token pair as the client keeps it, with the time it arrived (ms since the epoch, this machine's clock). */
export type StoredTokens = TokenPair & { receivedAt: number };

/**
 * Where a client keeps its token pair. Clients that share one storage share the pair, and
 * `exclusive` lets only one of them refresh it at a time: a refresh token works once, and a
 * second use of it revokes the session. What `save` stored must be what `load` reads next, in
 * every client of the storage, once `save` has resolved.
 */
export interface TokenStorage {
  load(): StoredTokens | undefined | Promise<StoredTokens | undefined>;
  /** `undefined` forgets the pair. */
  save(tokens: StoredTokens | undefined): void | Promise<void>;
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

export interface IndexedDbStorageOptions {
  /** The database the pair is kept in, and the name of the lock its refreshes take. */
  name?: string;
  /** `indexedDB` by default. */
  indexedDB?: IDBFactory;
  /** The Web Locks API (`navigator.locks`) by default. */
  locks?: LockManager;
}

const STORE = 'tokens';
const KEY = 'pair';

/**
 * Keeps the pair in IndexedDB, shared by every tab of the origin and kept across reloads, so
 * that a sign-in in one tab signs them all in. Refreshes take a Web Lock, so that of several
 * tabs finding the access token expired at once, one refreshes and the others read its new pair.
 * Not localStorage: another tab may read localStorage's old value after the lock has passed to
 * it (Chromium propagates it between tab processes asynchronously), and would then present a
 * used refresh token; a committed IndexedDB write is what every tab reads next. Where the Web
 * Locks API is missing, refreshes take turns within the tab only.
 *
 * Any script running on the origin can read IndexedDB: an XSS flaw leaks the refresh token,
 * which outlives the page. The memory default leaks nothing after the page is gone, at the cost
 * of a sign-in per tab and per reload.
 */
export function indexedDbStorage({
  name = 'fib-auth',
  indexedDB = globalThis.indexedDB,
  locks = globalThis.navigator?.locks,
}: IndexedDbStorageOptions = {}): TokenStorage {
  if (!indexedDB) throw new TypeError('indexedDbStorage: there is no IndexedDB here; pass { indexedDB }');
  let opened: Promise<IDBDatabase> | undefined;
  const database = () =>
    (opened ??= new Promise((resolve, reject) => {
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(STORE);
      request.onerror = () => reject(request.error ?? new Error(`indexedDB.open(${name}) failed`));
      request.onsuccess = () => {
        const db = request.result;
        // Closed by the browser (site data cleared) or by a newer version elsewhere: open again next time.
        db.onclose = () => (opened = undefined);
        db.onversionchange = () => (db.close(), (opened = undefined));
        resolve(db);
      };
    }));
  /** One request in its own transaction; resolves once the transaction has committed. */
  const transact = async (mode: IDBTransactionMode, act: (store: IDBObjectStore) => IDBRequest): Promise<unknown> => {
    const transaction = (await database()).transaction(STORE, mode);
    const request = act(transaction.objectStore(STORE));
    return new Promise((resolve, reject) => {
      transaction.oncomplete = () => resolve(request.result);
      transaction.onerror = transaction.onabort = () => reject(transaction.error ?? new Error('IndexedDB transaction aborted'));
    });
  };
  return {
    async load() {
      const tokens: unknown = await transact('readonly', (store) => store.get(KEY));
      return isStoredTokens(tokens) ? tokens : undefined;
    },
    async save(tokens) {
      await transact('readwrite', (store) => (tokens === undefined ? store.delete(KEY) : store.put(tokens, KEY)));
    },
    // The lock is held until the task's promise settles, and request() resolves with its result.
    exclusive: locks ? <T>(task: () => Promise<T>) => locks.request(`fib-auth:${name}`, task) as Promise<T> : queue(),
  };
}

/** Whether a stored value is a pair this client stored. */
function isStoredTokens(value: unknown): value is StoredTokens {
  const tokens = value as Partial<StoredTokens> | null;
  return (
    typeof tokens?.accessToken === 'string' &&
    typeof tokens.refreshToken === 'string' &&
    typeof tokens.expirationTime === 'number' &&
    typeof tokens.receivedAt === 'number'
  );
}
