import { randomUUID } from 'node:crypto';
import type { SessionRecord, UserRecord } from '../../src/domain/store.js';

/** The instant the store tests live at, in epoch seconds. */
export const NOW = 1_800_000_000;

/** A user to register as `email`; no store test reads its key. */
export const userRecord = (email: string): UserRecord => ({
  email,
  accountId: randomUUID(),
  authPublicKeyHex: 'ef'.repeat(32),
  role: 'ROLE_PEER',
  createdAt: NOW,
});

/** A live session of `userEmail`, signed in at NOW. */
export function sessionRecord(userEmail: string, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    id: randomUUID(),
    userEmail,
    accessJti: randomUUID(),
    refreshJti: randomUUID(),
    accessExpiresAt: NOW + 300,
    refreshExpiresAt: NOW + 86400,
    createdAt: NOW,
    revokedAt: null,
    revokedReason: null,
    ...overrides,
  };
}
