import { epochSeconds, type Clock } from '../domain/clock.js';
import { QUEUE_RETENTION_SECONDS } from '../domain/shared-signals.js';
import type { Store } from '../domain/store.js';

/** The part of a logger the upkeep uses; pino's loggers are one. */
export interface MaintenanceLog {
  info(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

/** Expired entries are deleted this often, so storage stays bounded by what is live. */
const PURGE_INTERVAL_MS = 60_000;

/**
 * The store's upkeep (docs/design.md §6): deletes the expired sessions, revocations, sign-in
 * challenges and Shared Signals events (§15) now, and again every minute until the returned function is called. One process of
 * a server runs it: the single process, or a cluster's primary (§13).
 */
export async function purgeExpiredEntries(store: Store, clock: Clock, logger: MaintenanceLog): Promise<() => void> {
  const purge = () => {
    const now = epochSeconds(clock);
    return Promise.all([
      store.purgeExpiredSessions(now),
      store.purgeExpiredRevocations(now),
      store.purgeExpiredSignInChallenges(now),
      store.purgeExpiredEvents(now - QUEUE_RETENTION_SECONDS),
    ]).then(
      ([sessions, revocations, challenges, securityEvents]) =>
        sessions + revocations + challenges + securityEvents > 0 &&
        logger.info({ sessions, revocations, challenges, securityEvents }, 'purged expired entries'),
      (err: unknown) => logger.error({ err }, 'purging expired entries failed'),
    );
  };
  const timer = setInterval(() => void purge(), PURGE_INTERVAL_MS).unref();
  await purge();
  return () => clearInterval(timer);
}
