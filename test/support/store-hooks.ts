import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';
import { startTestServer, type TestServer } from './harness.js';

type Method = keyof Store;

export interface StoreHooks {
  /** The real store underneath, to act as another request or another process would. */
  real: Store;
  /** The SQLite file of the real store. */
  file: string;
  /** Runs `action` just before the next call of `method`, as if another request got in first. */
  beforeNext(method: Method, action: () => unknown): void;
  /** Makes the next call of `method` fail, as a database that went away would. */
  failNext(method: Method): void;
}

/**
 * Starts the test server on a store that can be interfered with through the store interface
 * only: the server under test is unchanged, and only what it is given behaves differently.
 */
export async function startServerWithStoreHooks(env: Record<string, string> = {}): Promise<{ t: TestServer; hooks: StoreHooks }> {
  const dir = mkdtempSync(join(tmpdir(), 'fib-auth-hooked-'));
  const file = join(dir, 'store.sqlite');
  const real = await openStore(`sqlite:${file}`);
  const pending = new Map<string | symbol, () => unknown>();
  const store = new Proxy(real, {
    get(target, name) {
      const value: unknown = Reflect.get(target, name);
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        const action = pending.get(name);
        pending.delete(name);
        await action?.();
        return value.apply(target, args);
      };
    },
  });
  const hooks: StoreHooks = {
    real,
    file,
    beforeNext: (method, action) => void pending.set(method, action),
    failNext: (method) =>
      hooks.beforeNext(method, () => {
        throw new Error(`injected failure in ${method}: /var/db/secret.sqlite`);
      }),
  };
  const t = await startTestServer(env, store);
  const stop = t.stop;
  t.stop = async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return { t, hooks };
}
