import { StoreChanges } from './store-changes.js';
import type { RevocationPage, Store } from './store.js';

/** Entries per answer; a reader whose page says `more` asks again at once. */
export const FEED_PAGE_LIMIT = 1000;
/** The longest a reader may ask to wait, below common proxy idle timeouts (60 s). */
export const FEED_MAX_WAIT_SECONDS = 30;
/**
 * How long after its `until` an entry stays in the feed (docs/design.md §11): as long as
 * `fib-auth-resource-server` keeps it, so that a snapshot still lists an entry that a reader
 * whose clock lags this one's up to a minute would still need.
 */
export const REVOCATION_RETENTION_SECONDS = 60;

/**
 * The revocation feed's long poll (docs/design.md §11): a read answers at once when revocations
 * follow the cursor, and otherwise waits until one commits (here or on another instance), the
 * wait runs out, the reader goes away, or the feed closes.
 */
export class RevocationFeed {
  private readonly changes: StoreChanges;

  constructor(private readonly store: Store) {
    this.changes = new StoreChanges(store);
  }

  async read(after: string | undefined, waitSeconds: number, gone?: AbortSignal): Promise<RevocationPage> {
    const deadline = performance.now() + waitSeconds * 1000;
    for (;;) {
      const seen = this.changes.mark(); // before the read: a change during it wakes the wait below at once
      const page = await this.store.revocationsAfter(after, FEED_PAGE_LIMIT);
      const remaining = deadline - performance.now();
      if (page.revocations.length > 0 || page.snapshot || remaining <= 0 || this.changes.closed || gone?.aborted) return page;
      if (!(await this.changes.since(seen, remaining, gone))) return page;
    }
  }

  /** Answers every waiting reader now (with what it has) and stops watching the store. */
  close(): void {
    this.changes.close();
  }
}
