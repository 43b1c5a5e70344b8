/** Seconds each thing the server hands out lives, as the configuration gives them (docs/design.md §8). */
export interface LifetimeSeconds {
  accessToken: number;
  refreshToken: number;
  /** A sign-in challenge's nonce (docs/design.md §12). */
  signInChallenge: number;
}

/**
 * Every rule about how long things live (docs/design.md §5): a token's expiry, a challenge's,
 * and how long a key that stopped signing must stay trusted. Tokens, sign-in, key rotation and
 * key withdrawal all ask this one object, so a rule changes here alone.
 */
export class Lifetimes {
  /**
   * How long past the last token's expiry a retired key keeps verifying: time for every
   * instance to reload its keys (SIGHUP) after a rotation.
   */
  static readonly ROTATION_GRACE_SECONDS = 300;

  constructor(readonly seconds: Readonly<LifetimeSeconds>) {}

  /** Epoch seconds at which an access or refresh token issued at `issuedAt` expires. */
  tokenExpiry(type: 'access' | 'refresh', issuedAt: number): number {
    return issuedAt + (type === 'access' ? this.seconds.accessToken : this.seconds.refreshToken);
  }

  /** Epoch seconds from which a challenge issued at `issuedAt` no longer signs anyone in. */
  challengeExpiry(issuedAt: number): number {
    return issuedAt + this.seconds.signInChallenge;
  }

  /**
   * Epoch seconds until which a key that stops signing at `now` may still have live tokens,
   * plus the grace: a retired key verifies until then, and a withdrawn one stays in the
   * revocation feed until then, so that no resource server trusts it again from a stale copy.
   */
  retiredKeyUntil(now: number): number {
    return now + Math.max(this.seconds.accessToken, this.seconds.refreshToken) + Lifetimes.ROTATION_GRACE_SECONDS;
  }
}
