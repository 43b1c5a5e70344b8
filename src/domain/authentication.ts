import { randomBytes, randomUUID } from 'node:crypto';
import type { SessionRecord, Store, UserRecord } from './store.js';
import { parseToken, type BearerToken } from './bearer.js';
import { epochSeconds, type Clock } from './clock.js';
import type { Lifetimes } from './lifetimes.js';
import { AuthFailure, type FailureReason } from './failures.js';
import { isSignatureHex, parsePublicKeyHex, signInChallengeMessage, verifyMessageSignature } from './signature.js';
import type { AccessClaims, IssuedPair, Tokens, TokenType, VerificationCounter } from './tokens.js';

export interface SignInProof {
  email: string;
  signature: string;
  authPublicKeyHex: string;
  /** A challenge's nonce: the signature is then of the challenge's message, not of the email (§12). */
  nonce?: string;
}

export interface SignInChallenge {
  nonce: string;
  /** The text to sign, as the email is signed without a challenge. */
  message: string;
  /** Epoch seconds from which the nonce no longer signs anyone in. */
  expiresAt: number;
}

/** `required`: a sign-in must answer a challenge; `optional`: signing the email alone still works (§4). */
export type ChallengePolicy = 'optional' | 'required';

/** 256 random bits: a nonce nobody guesses within its lifetime. */
const NONCE_BYTES = 32;

/**
 * Sign-in, refresh and logout, each checking in the order of docs/design.md §3, §4 and §12. The bearer
 * token arrives already parsed (§3.1, `parseBearer`); each step below throws the failure
 * that decides the answer.
 */
export class Authentication {
  constructor(
    private readonly store: Store,
    private readonly tokens: Tokens,
    private readonly now: Clock,
    private readonly challengePolicy: ChallengePolicy,
    private readonly lifetimes: Lifetimes,
    private readonly countVerification: VerificationCounter = () => {},
  ) {}

  /**
   * A single-use nonce bound to `email`, and the message to sign with it (docs/design.md §12).
   * Issued alike for any email, registered or not: the answer tells nobody which are.
   */
  async challenge(email: string): Promise<SignInChallenge> {
    const nonce = randomBytes(NONCE_BYTES).toString('base64url');
    const expiresAt = this.lifetimes.challengeExpiry(epochSeconds(this.now));
    const lowerCased = email.toLowerCase();
    await this.store.createSignInChallenge({ nonce, email: lowerCased, expiresAt, usedAt: null });
    return { nonce, message: signInChallengeMessage(lowerCased, nonce, expiresAt), expiresAt };
  }

  async signIn(proof: SignInProof): Promise<IssuedPair> {
    if (!isSignatureHex(proof.signature)) throw new AuthFailure('signatureNotHex');
    const publicKey = parsePublicKeyHex(proof.authPublicKeyHex);
    if (!publicKey) throw new AuthFailure('publicKeyInvalid');
    if (proof.nonce === undefined && this.challengePolicy === 'required') throw new AuthFailure('signInChallengeRequired');
    const user = await this.registeredUser(proof.email);
    if (user.authPublicKeyHex !== proof.authPublicKeyHex.toLowerCase()) throw new AuthFailure('publicKeyNotRegistered');
    const signed = proof.nonce === undefined ? proof.email : await this.challengeMessage(proof.nonce, user.email);
    this.countVerification('user');
    if (!verifyMessageSignature(signed, proof.signature, publicKey)) throw new AuthFailure('signatureNotVerified');
    // The one step that decides which of several sign-ins with this nonce wins; a loser learns why.
    if (proof.nonce !== undefined && !(await this.store.useSignInChallenge(proof.nonce, user.email, epochSeconds(this.now)))) {
      await this.challengeMessage(proof.nonce, user.email);
      throw new AuthFailure('signInNonceUsed');
    }

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
    throw new AuthFailure(await this.whyRefreshRefused(claims.sid)); // 401
  }

  /**
   * Why a live-looking refresh token did not change its session: the session is over, or this
   * refresh token was used before. A second use means the token leaked; revoking the session
   * locks out whoever holds the newer pair too.
   */
  private async whyRefreshRefused(sid: string): Promise<FailureReason> {
    const session = await this.store.findSession(sid);
    if (session && session.revokedAt === null) {
      await this.store.revokeSession(sid, 'refresh-reuse', epochSeconds(this.now));
      return 'refreshTokenReused';
    }
    return this.whyOver(session, 'refresh');
  }

  /** The message a challenge's nonce was issued with, when it may sign `email` in now. */
  private async challengeMessage(nonce: string, email: string): Promise<string> {
    const challenge = await this.store.findSignInChallenge(nonce);
    if (!challenge) throw new AuthFailure('signInNonceUnknown');
    if (challenge.email !== email) throw new AuthFailure('signInNonceOfOtherUser');
    if (challenge.usedAt !== null) throw new AuthFailure('signInNonceUsed');
    if (challenge.expiresAt <= epochSeconds(this.now)) throw new AuthFailure('signInNonceExpired');
    return signInChallengeMessage(challenge.email, challenge.nonce, challenge.expiresAt);
  }

  /**
   * Ends the session of a refresh token (docs/design.md §12): the way out for a client whose
   * access token expired. Checks as refresh does; a refresh token used before is reuse, and
   * revokes the session as refresh would.
   */
  async endSession(token: BearerToken): Promise<void> {
    const claims = await this.tokens.verify(token, 'refresh'); // 422, then 401
    // As for logout: a session that ends here belongs to a registered user.
    if (await this.store.endSessionByRefreshJti(claims.sid, claims.jti, epochSeconds(this.now))) return;
    await this.registeredUser(claims.sub); // 404
    throw new AuthFailure(await this.whyRefreshRefused(claims.sid)); // 401
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
