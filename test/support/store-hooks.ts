import { loadConfig, storeOptions } from '../../src/config.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/domain/store.js';
import type { ServerParts } from '../../src/server.js';
import { startTestServer, type TestServer } from './harness.js';

type Method = keyof Store;

export interface StoreHooks {
  /** The real store underneath, to act as another request or another process would. */
  real: Store;
  /** The SQLite file of the real store. */
  file: string;
  /** Runs `action` just before the next call of `method`, as if another request got in first. */
  beforeNext(method: Method, action: () => unknown): void;
  /**
   * Makes the next call of `method` fail, as a database that went away would: before it ran,
   * or, with `afterItRan`, once its change is stored (the answer, not the change, was lost).
   */
  failNext(method: Method, afterItRan?: 'after it ran'): void;
  /** While on, every call but `close` fails, as a database that is down would. */
  failing: boolean;
}

/**
 * Starts the test server on a store that can be interfered with through the store interface
 * only: the server under test is unchanged, and only what it is given behaves differently.
 * `parts` gives it the rest of what startTestServer takes (a clock).
 */
export async function startServerWithStoreHooks(
  env: Record<string, string> = {},
  parts: Omit<ServerParts, 'store'> = {},
): Promise<{ t: TestServer; hooks: StoreHooks }> {
  const dir = mkdtempSync(join(tmpdir(), 'fib-auth-hooked-'));
  const file = join(dir, 'store.sqlite');
  const real = await openStore(storeOptions(loadConfig({ DATABASE_URL: `sqlite:${file}` })));
  const before = new Map<string | symbol, () => unknown>();
  const failAfter = new Set<string | symbol>();
  const injected = (method: string | symbol) => new Error(`injected failure in ${String(method)}: /var/db/secret.sqlite`);
  const store = new Proxy(real, {
    get(target, name) {
      const value: unknown = Reflect.get(target, name);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      // Subscribing is synchronous and reaches no database; what it wakes (reads) is hooked.
      if (name === 'watchRevocations') return method.bind(target);
      return async (...args: unknown[]) => {
        if (hooks.failing && name !== 'close') throw injected(name);
        const action = before.get(name);
        before.delete(name);
        await action?.();
        const result = await method.apply(target, args);
        if (failAfter.delete(name)) throw injected(name);
        return result;
      };
    },
  });
  const hooks: StoreHooks = {
    failing: false,
    real,
    file,
    beforeNext: (method, action) => void before.set(method, action),
    failNext: (method, afterItRan) =>
      afterItRan
        ? void failAfter.add(method)
        : hooks.beforeNext(method, () => {
            throw injected(method);
          }),
  };
  const t = await startTestServer(env, { ...parts, store });
  const stop = t.stop;
  t.stop = async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return { t, hooks };
}
