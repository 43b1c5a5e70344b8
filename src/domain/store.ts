export const ROLES = ['ROLE_PEER', 'ROLE_ADMIN', 'ROLE_DOMAIN_ADMIN'] as const;
export type Role = (typeof ROLES)[number];

export interface UserRecord {
  /** Lower-cased: emails match case-insensitively. */
  email: string;
  accountId: string;
  authPublicKeyHex: string;
  role: Role;
  /** Epoch seconds, like every instant in the store. */
  createdAt: number;
}

export type RevokeReason = 'logout' | 'refresh-reuse' | 'user-removed';

export interface SessionRecord {
  id: string;
  userEmail: string;
  accessJti: string;
  refreshJti: string;
  accessExpiresAt: number;
  refreshExpiresAt: number;
  createdAt: number;
  revokedAt: number | null;
  revokedReason: RevokeReason | null;
}

export interface SessionCredentials {
  accessJti: string;
  refreshJti: string;
  accessExpiresAt: number;
  refreshExpiresAt: number;
}

/**
 * Persistence for users and sessions. Every state change of a session is one conditional
 * statement whose row count tells whether it happened, so concurrent requests on one session,
 * on one instance or several, cannot both succeed.
 */
export interface Store {
  /** False when a user with that email already exists. */
  addUser(user: UserRecord): Promise<boolean>;
  /** Removes the user and revokes their sessions; false when there was no such user. */
  removeUser(email: string, now: number): Promise<boolean>;
  findUser(email: string): Promise<UserRecord | undefined>;
  listUsers(): Promise<UserRecord[]>;

  /**
   * Stores a session of a registered user, in one statement with the check that the user is
   * registered; false, and nothing stored, when the user is not (removed while signing in).
   */
  createSession(session: SessionRecord): Promise<boolean>;
  findSession(id: string): Promise<SessionRecord | undefined>;
  /**
   * Ends a live session whose current access id is `accessJti` (logout); with `everySessionOfUser`,
   * in the same transaction every other live session of its user too.
   */
  endSession(id: string, accessJti: string, now: number, everySessionOfUser?: boolean): Promise<boolean>;
  /** Replaces the credentials of a live session whose current refresh id is `refreshJti`. */
  rotateSession(id: string, refreshJti: string, next: SessionCredentials): Promise<boolean>;
  /** Revokes a live session. */
  revokeSession(id: string, reason: RevokeReason, now: number): Promise<boolean>;
  /** Sessions neither revoked nor past their refresh expiry. */
  countLiveSessions(now: number): Promise<number>;
  /** Deletes sessions whose every credential has expired; returns how many. */
  purgeExpiredSessions(now: number): Promise<number>;

  /** Resolves when the store answers a query. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
