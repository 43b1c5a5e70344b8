import type { Store } from '../domain/store.js';
import type { BackendProfile, StoreOptions } from './backends/profile.js';
import { postgres } from './backends/postgres.js';
import { sqlite } from './backends/sqlite.js';
import { SqlStore } from './sql-store.js';

export type { StoreLog, StoreOptions } from './backends/profile.js';

/** Every backend this build speaks to; a new one is one more profile here (docs/design.md §7). */
const BACKENDS: readonly BackendProfile[] = [sqlite, postgres];

/** The backend whose database `url` (a `DATABASE_URL`) names. */
export function backendOf(url: string): BackendProfile {
  const backend = BACKENDS.find((profile) => profile.handles(url));
  if (!backend) throw new Error(`DATABASE_URL names a store this build does not support: ${url.split(':')[0]}`);
  return backend;
}

/**
 * Which store `DATABASE_URL` names, for the CLI to say where it wrote: a SQLite file's full
 * path, or a PostgreSQL URL without its password.
 */
export function storeLocation(url: string): string {
  return backendOf(url).location(url);
}

/** Opens the store that `DATABASE_URL` names and brings its schema up to date (docs/design.md §7). */
export async function openStore(options: StoreOptions): Promise<Store> {
  return SqlStore.open(await backendOf(options.url).open(options));
}
