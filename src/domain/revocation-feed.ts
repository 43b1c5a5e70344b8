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
  /** Counts the changes the store reported, so a reader can tell whether one came since it looked. */
  private changes = 0;
  private readonly waiting = new Set<() => void>();
  private stopWatching: (() => void) | undefined;
  private closed = false;

  constructor(private readonly store: Store) {}

  async read(after: string | undefined, waitSeconds: number, gone?: AbortSignal): Promise<RevocationPage> {
    this.stopWatching ??= this.store.watchRevocations(() => this.changed());
    const deadline = performance.now() + waitSeconds * 1000;
    for (;;) {
      const seen = this.changes; // before the read: a change during it wakes the wait below at once
      const page = await this.store.revocationsAfter(after, FEED_PAGE_LIMIT);
      const remaining = deadline - performance.now();
      if (page.revocations.length > 0 || page.snapshot || remaining <= 0 || this.closed || gone?.aborted) return page;
      if (!(await this.changeSince(seen, remaining, gone))) return page;
    }
  }

  /** Resolves true when a change came after `seen`, false when the wait ran out or ended. */
  private changeSince(seen: number, ms: number, gone: AbortSignal | undefined): Promise<boolean> {
    if (this.changes !== seen) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (changed: boolean) => {
        clearTimeout(timer);
        this.waiting.delete(wake);
        gone?.removeEventListener('abort', stop);
        resolve(changed);
      };
      const wake = () => done(true);
      const stop = () => done(false);
      const timer = setTimeout(stop, ms);
      this.waiting.add(wake);
      gone?.addEventListener('abort', stop, { once: true });
    });
  }

  private changed(): void {
    this.changes++;
    for (const wake of [...this.waiting]) wake();
  }

  /** Answers every waiting reader now (with what it has) and stops watching the store. */
  close(): void {
    this.closed = true;
    this.stopWatching?.();
    for (const wake of [...this.waiting]) wake();
  }
}
