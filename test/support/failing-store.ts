import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';

export interface FailingStore {
  /** The real SQLite store, wrapped: while `failing` is on, every call but `close` rejects. */
  store: Store;
  failing: boolean;
}

/** Makes the server answer 500 on demand, through the store interface only. */
export async function openFailingStore(databaseUrl: string): Promise<FailingStore> {
  const real = await openStore(databaseUrl);
  const switchable: FailingStore = {
    failing: false,
    store: new Proxy(real, {
      get(target, name: keyof Store) {
        const value = target[name];
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          if (switchable.failing && name !== 'close') return Promise.reject(new Error(`injected failure in ${name}: /var/db/secret.sqlite`));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    }),
  };
  return switchable;
}
