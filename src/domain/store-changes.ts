import type { Store } from './store.js';

/**
 * Tells long polls (the revocation feed's, Shared Signals' poll) that the store may have
 * changed: a session ended, a key was withdrawn, an event was queued, here or in another
 * process. Watches the store only once someone has asked.
 */
export class StoreChanges {
  /** Counts the changes the store reported, so a reader can tell whether one came since it looked. */
  private changes = 0;
  private readonly waiting = new Set<() => void>();
  private stopWatching: (() => void) | undefined;
  private ended = false;

  constructor(private readonly store: Pick<Store, 'watchRevocations'>) {}

  /** Where the count stands; take it before reading, so that a change during the read counts. */
  mark(): number {
    this.stopWatching ??= this.store.watchRevocations(() => this.changed());
    return this.changes;
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Resolves true when a change came after `mark`, false when `ms` ran out, `gone` aborted or it closed. */
  since(mark: number, ms: number, gone: AbortSignal | undefined): Promise<boolean> {
    if (this.changes !== mark) return Promise.resolve(true);
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

  /** Answers every waiting reader now and stops watching the store. */
  close(): void {
    this.ended = true;
    this.stopWatching?.();
    for (const wake of [...this.waiting]) wake();
  }
}
