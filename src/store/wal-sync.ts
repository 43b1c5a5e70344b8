import { closeSync, fdatasync, openSync } from 'node:fs';
import { coalesced } from './coalesced.js';

/**
 * Makes a SQLite WAL file durable off the event loop (docs/design.md §13). The connection
 * commits with `synchronous = NORMAL`: COMMIT writes the transaction's frames to the WAL and
 * returns without waiting for the disk, so neither the event loop nor the write lock waits for
 * it. The answers wait here instead, for an `fdatasync` of the WAL that began after their
 * COMMIT, run on libuv's thread pool. One `fdatasync` covers every frame written before it began,
 * by any process, so calls that arrive while one runs share the next.
 *
 * A checkpoint copies frames into the database file only after syncing the WAL, and syncs the
 * database file before the WAL starts over (SQLite's rule for `synchronous = NORMAL`), so frames
 * that a checkpoint moved are on disk when a later `fdatasync` finds the WAL rewritten.
 */
export class WalSync {
  private descriptor: number | undefined;
  private latest: Promise<void> = Promise.resolve();
  private readonly sync = coalesced(
    () =>
      new Promise<void>((resolve, reject) => {
        // Opened at the first commit, when the WAL exists; it stays while this process's connection is open.
        this.descriptor ??= openSync(this.walPath, 'r');
        fdatasync(this.descriptor, (error) => (error ? reject(error) : resolve()));
      }),
  );

  constructor(private readonly walPath: string) {}

  /** Resolves once everything written to the WAL before this call is on disk. */
  flush(): Promise<void> {
    this.latest = this.sync();
    return this.latest;
  }

  /** Closes the file once the syncs asked for are done: one still running must not find it closed. */
  close(): void {
    const close = () => {
      if (this.descriptor !== undefined) closeSync(this.descriptor);
      this.descriptor = undefined;
    };
    this.latest.then(close, close);
  }
}
