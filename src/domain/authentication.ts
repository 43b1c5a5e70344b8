import { randomUUID } from 'node:crypto';
import type { SessionRecord, Store, UserRecord } from './store.js';
import { parseToken, type BearerToken } from './bearer.js';
import { epochSeconds, type Clock } from './clock.js';
import { AuthFailure, type FailureReason } from './failures.js';
import { isSignatureHex, parsePublicKeyHex, verifyEmailSignature } from './signature.js';
import type { AccessClaims, IssuedPair, Tokens, TokenType } from './tokens.js';

export interface SignInProof {
  email: string;
  signature: string;
  authPublicKeyHex: string;
}

/**
 * Sign-in, refresh and logout, each checking in the order of docs/design.md §3 and §4. The bearer
 * token arrives already parsed (§3.1, `parseBearer`); each step below throws the failure
 * that decides the answer.
 */
export class Authentication {
  constructor(
    private readonly store: Store,
    private readonly tokens: Tokens,
    private readonly now: Clock,
  ) {}

  async signIn(proof: SignInProof): Promise<IssuedPair> {
    if (!isSignatureHex(proof.signature)) throw new AuthFailure('signatureNotHex');
    const publicKey = parsePublicKeyHex(proof.authPublicKeyHex);
    if (!publicKey) throw new AuthFailure('publicKeyInvalid');
    const user = await this.registeredUser(proof.email);
    if (user.authPublicKeyHex !== proof.authPublicKeyHex.toLowerCase()) throw new AuthFailure('publicKeyNotRegistered');
    if (!verifyEmailSignature(proof.email, proof.signature, publicKey)) throw new AuthFailure('signatureNotVerified');

    const id = randomUUID();
    const pair = await this.tokens.issuePair(user, id);
    const created = await this.store.createSession({
      id,
      userEmail: user.email,
      ...pair.credentials,
      createdAt: epochSeconds(this.now),
      revokedAt: null,
      revokedReason: null,
    });
    // The user was removed since the lookup above: the pair was never stored, so it never works.
    if (!created) throw new AuthFailure('userNotFound');
    return pair;
  }

  async refresh(token: BearerToken): Promise<IssuedPair> {
    const claims = await this.tokens.verify(token, 'refresh'); // 422, then 401
    const user = await this.registeredUser(claims.sub); // 404
    const pair = await this.tokens.issuePair(user, claims.sid);
    if (await this.store.rotateSession(claims.sid, claims.jti, pair.credentials)) return pair;
    // 401: the session is over, or this refresh token was used before. A second use means
    // the token leaked; revoking the session locks out whoever holds the newer pair too.
    const session = await this.store.findSession(claims.sid);
    if (session && session.revokedAt === null) {
      await this.store.revokeSession(claims.sid, 'refresh-reuse', epochSeconds(this.now));
      throw new AuthFailure('refreshTokenReused');
    }
    throw new AuthFailure(this.whyOver(session, 'refresh'));
  }

  /** Ends the token's session, or with scope `user` every session of its user. */
  async logout(token: BearerToken, scope: 'session' | 'user'): Promise<void> {
    const claims = await this.tokens.verify(token, 'access'); // 422, then 401
    // Removing a user revokes their sessions in the same step (Store.removeUser), so a session
    // that ends here belongs to a registered user: the 404 check is needed only when none did.
    if (await this.store.endSession(claims.sid, claims.jti, epochSeconds(this.now), scope === 'user')) return;
    await this.registeredUser(claims.sub); // 404
    throw new AuthFailure(this.whyOver(await this.store.findSession(claims.sid), 'access')); // 401
  }

  /**
   * The claims of an access token that logout would accept right now (RFC 7662 "active"), or
   * undefined for any other token. A live session belongs to a registered user: removing a
   * user revokes its sessions in the same step.
   */
  async introspect(token: string): Promise<AccessClaims | undefined> {
    let claims: AccessClaims;
    try {
      claims = await this.tokens.verify(parseToken(token), 'access');
    } catch (error) {
      if (error instanceof AuthFailure) return undefined;
      throw error;
    }
    const session = await this.store.findSession(claims.sid);
    return session?.revokedAt === null && session.accessJti === claims.jti ? claims : undefined;
  }

  private async registeredUser(email: string): Promise<UserRecord> {
    const user = await this.store.findUser(email);
    if (!user) throw new AuthFailure('userNotFound');
    return user;
  }

  /** Names why a session did not accept a token, for the 401 message. */
  private whyOver(session: SessionRecord | undefined, type: TokenType): FailureReason {
    switch (session?.revokedReason) {
      case 'logout':
        return type === 'access' ? 'accessTokenLoggedOut' : 'sessionLoggedOut';
      case 'refresh-reuse':
        return 'sessionRevokedAfterReuse';
      case null:
        return 'accessTokenRetired'; // live, so the access token is no longer its current one
      default:
        return 'sessionEnded'; // purged, or its user was removed
    }
  }
}
