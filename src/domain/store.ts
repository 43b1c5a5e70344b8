import type { SecurityEventStore } from './security-events.js';

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

/** A resource server allowed to introspect tokens and read the revocation feed (docs/design.md §11). */
export interface ClientRecord {
  id: string;
  /** SHA-256 of the secret, hex; the secret itself is shown once and never stored. */
  secretHash: string;
  createdAt: number;
}

/**
 * A sign-in challenge (docs/design.md §12): a single-use nonce bound to one email, for the
 * user to sign with the message built from it. Stored for any email, registered or not, so
 * that the answer tells nobody whether the email is registered.
 */
export interface SignInChallengeRecord {
  nonce: string;
  /** Lower-cased, as users' emails are. */
  email: string;
  expiresAt: number;
  /** When a sign-in used it; null while it is unused. */
  usedAt: number | null;
}

/** Why a session's access tokens stopped working before their expiry: its end, or a refresh. */
export type RevocationReason = RevokeReason | 'refresh';

/**
 * An entry of the revocation feed for a session: without `jti`, every access token of
 * session `sid`; with it, only that access token (retired by a refresh). From `until` on they
 * are expired anyway, so the entry can be forgotten.
 */
export interface SessionRevocation {
  sid: string;
  jti?: string;
  kid?: never;
  reason: RevocationReason;
  until: number;
}

/**
 * An entry of the revocation feed for a withdrawn key (`fib-auth keys revoke`, docs/design.md
 * §5): every token whose `kid` it is. By `until` every token the key could have signed has
 * expired; the key itself stays withdrawn for good (`Store.withdrawnKeys`).
 */
export interface KeyWithdrawal {
  kid: string;
  sid?: never;
  jti?: never;
  reason: 'key-withdrawn';
  until: number;
}

/** An entry names a session or a key, never both: `kid` or `sid` tells which. */
export type Revocation = SessionRevocation | KeyWithdrawal;

export interface RevocationPage {
  /**
   * The position after the last entry listed (or the given one when none is), naming the
   * database it is a position in; opaque outside the store.
   */
  cursor: string;
  /** True when the entries are everything still relevant, not only those after the cursor. */
  snapshot: boolean;
  /** True when the page was cut at the limit: more entries follow. */
  more: boolean;
  revocations: Revocation[];
}

/**
 * Persistence for users and sessions. Every state change of a session is one conditional
 * statement whose row count tells whether it happened, so concurrent requests on one session,
 * on one instance or several, cannot both succeed.
 */
export interface Store extends SecurityEventStore {
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
  /** Ends a live session whose current refresh id is `refreshJti` (docs/design.md §12). */
  endSessionByRefreshJti(id: string, refreshJti: string, now: number): Promise<boolean>;
  /** Replaces the credentials of a live session whose current refresh id is `refreshJti`. */
  rotateSession(id: string, refreshJti: string, next: SessionCredentials): Promise<boolean>;
  /** Revokes a live session. */
  revokeSession(id: string, reason: RevokeReason, now: number): Promise<boolean>;
  /** Sessions neither revoked nor past their refresh expiry. */
  countLiveSessions(now: number): Promise<number>;
  /** Deletes sessions whose every credential has expired; returns how many. */
  purgeExpiredSessions(now: number): Promise<number>;

  createSignInChallenge(challenge: SignInChallengeRecord): Promise<void>;
  findSignInChallenge(nonce: string): Promise<SignInChallengeRecord | undefined>;
  /**
   * Marks an unused, unexpired challenge of `email` used, in one conditional statement: of
   * sign-ins racing with one nonce, on one instance or several, exactly one gets true.
   */
  useSignInChallenge(nonce: string, email: string, now: number): Promise<boolean>;
  /** Deletes challenges that have expired, used or not; returns how many. */
  purgeExpiredSignInChallenges(now: number): Promise<number>;

  addClient(client: ClientRecord): Promise<boolean>;
  removeClient(id: string): Promise<boolean>;
  findClient(id: string): Promise<ClientRecord | undefined>;
  listClients(): Promise<ClientRecord[]>;

  /**
   * The revocations after `after`, in the order they committed, at most `limit`. Every change
   * of a session that stops access tokens working (its end, a refresh) adds one in the same
   * statement, so none can be missed; on several instances the order is the database's.
   * Without `after`, or with one this database never gave out (another database's, one
   * beyond its newest entry, or a bare position of a version before cursors named their
   * database), a snapshot of all that remain.
   */
  revocationsAfter(after: string | undefined, limit: number): Promise<RevocationPage>;
  /**
   * Calls `listener` whenever revocations may have been added, by this process or another
   * (another instance, the CLI); returns the function that stops it.
   */
  watchRevocations(listener: () => void): () => void;
  /**
   * Deletes revocations whose tokens have all expired more than REVOCATION_RETENTION_SECONDS
   * (revocation-feed.ts) before `now`; returns how many.
   */
  purgeExpiredRevocations(now: number): Promise<number>;

  /**
   * Withdraws a verification key for good and adds its entry to the revocation feed (until
   * `until`), in one transaction; false, and nothing written, when it was withdrawn before.
   */
  withdrawKey(kid: string, now: number, until: number): Promise<boolean>;
  /** The kid of every key ever withdrawn, which no process may trust again. */
  withdrawnKeys(): Promise<string[]>;

  /** Resolves when the store answers a query. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
