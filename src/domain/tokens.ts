import { KeyObject, randomUUID, verify } from 'node:crypto';
import {
  SignJWT,
  UnsecuredJWT,
  errors,
  jwtVerify,
  type CryptoKey,
  type JWTClaimVerificationOptions,
  type JWTPayload,
} from 'jose';
import type { BearerToken } from './bearer.js';
import { epochSeconds, type Clock } from './clock.js';
import { AuthFailure } from './failures.js';
import type { KeyRing } from './key-ring.js';
import type { Lifetimes } from './lifetimes.js';
import type { SessionCredentials } from './store.js';

export type TokenType = 'access' | 'refresh';

const TYP: Record<TokenType, string> = { access: 'at+jwt', refresh: 'refresh+jwt' };
/**
 * The `client_id` of every access token (RFC 9068 §2.2): the client the token was issued to.
 * This service has one, its own first-party sign-in (the email signature of docs/design.md §4);
 * no third-party client obtains tokens from it.
 */
export const SIGN_IN_CLIENT_ID = 'fib-sign-in';
const REQUIRED_CLAIMS: Record<TokenType, string[]> = {
  access: ['acc', 'sub', 'role', 'sid', 'iat', 'exp', 'jti'],
  refresh: ['sub', 'sid', 'acjti', 'iat', 'exp', 'jti'],
};
const ED25519_SIGNATURE_BYTES = 64;
/**
 * The protected-header parameters of the tokens this server issues. A token with any other
 * (`jku`, `jwk`, `x5u`, `x5c`, `crit`, `b64`, or one nobody has defined) is not one it issued,
 * so it is refused rather than ignored; none of them is ever used to find a key (RFC 8725 §3.10).
 */
const HEADER_PARAMETERS = new Set(['alg', 'typ', 'kid']);

export interface AccessClaims {
  acc: string;
  sub: string;
  role: string;
  sid: string;
  /** Absent only from tokens issued before the service named itself (docs/design.md §5). */
  iss?: string;
  aud?: string | string[];
  client_id?: string;
  jti: string;
  iat: number;
  exp: number;
}
export interface RefreshClaims {
  sub: string;
  sid: string;
  acjti: string;
  jti: string;
  exp: number;
}
export interface ClaimsOf {
  access: AccessClaims;
  refresh: RefreshClaims;
}

export interface TokenSubject {
  accountId: string;
  email: string;
  role: string;
}

export interface IssuedPair {
  accessToken: string;
  refreshToken: string;
  /** Lifetime of the access token in seconds. */
  accessTtl: number;
  /** What the session stores of the pair: its token ids and expiry instants. */
  credentials: SessionCredentials;
}

/** Whose Ed25519 signature the server verified: a token's, or a user's sign-in proof. */
export type VerifiedSignature = 'token' | 'user';
/** Told of each signature verification, so that the metrics count them (docs/design.md §12). */
export type VerificationCounter = (signature: VerifiedSignature) => void;

/** Who issues the tokens and whom access tokens are for (docs/design.md §5). */
export interface TokenIdentity {
  /** The `iss` of every token, and the `aud` of every refresh token: only this service takes those. */
  issuer: string;
  /** The `aud` of access tokens: the services that accept them. */
  audience: readonly string[];
}

/** What a verifier demands of `iss` and `aud`. */
export interface TokenAcceptance extends TokenIdentity {
  /**
   * Whether a token that carries neither `iss` nor `aud` is accepted: the service's own tokens
   * issued before they existed, accepted by the service until they expire (docs/design.md §5).
   */
  acceptWithoutIssuer: boolean;
}

/** An access token's `aud`: a string when it names one audience, as most verifiers expect, else the list. */
export const audienceClaim = (audience: readonly string[]) => (audience.length === 1 ? audience[0] : [...audience]);

/** Issues and verifies this server's JWS tokens (docs/design.md §5): EdDSA only, typed, with a kid. */
export class Tokens {
  constructor(
    private readonly keys: KeyRing,
    private readonly lifetimes: Lifetimes,
    /** Read at each use: a server without ISSUER learns its port once it listens. */
    private readonly identity: () => TokenIdentity,
    private readonly now: Clock,
    private readonly countVerification: VerificationCounter = () => {},
  ) {}

  async issuePair(subject: TokenSubject, sid: string): Promise<IssuedPair> {
    const iat = epochSeconds(this.now);
    const accessJti = randomUUID();
    const refreshJti = randomUUID();
    const accessExpiresAt = this.lifetimes.tokenExpiry('access', iat);
    const refreshExpiresAt = this.lifetimes.tokenExpiry('refresh', iat);
    const { issuer, audience } = this.identity();
    const [accessToken, refreshToken] = await Promise.all([
      this.sign(
        {
          acc: subject.accountId,
          sub: subject.email,
          role: subject.role,
          sid,
          iss: issuer,
          aud: audienceClaim(audience),
          client_id: SIGN_IN_CLIENT_ID,
        },
        'access',
        iat,
        accessExpiresAt,
        accessJti,
      ),
      // Its audience is the issuer: a resource server that checks `aud` refuses it (docs/design.md §5).
      this.sign(
        { sub: subject.email, sid, acjti: accessJti, iss: issuer, aud: issuer },
        'refresh',
        iat,
        refreshExpiresAt,
        refreshJti,
      ),
    ]);
    return {
      accessToken,
      refreshToken,
      accessTtl: accessExpiresAt - iat,
      credentials: { accessJti, refreshJti, accessExpiresAt, refreshExpiresAt },
    };
  }

  private sign(claims: JWTPayload, type: TokenType, iat: number, exp: number, jti: string): Promise<string> {
    const { kid, privateKey } = this.keys.signer;
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', typ: TYP[type], kid })
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(jti)
      .sign(privateKey);
  }

  /** Verifies a parsed bearer token against this server's keys (see `verifyToken`), counting each signature check. */
  verify<T extends TokenType>(token: BearerToken, type: T): Promise<ClaimsOf[T]> {
    return verifyToken(
      token,
      type,
      (kid) => {
        const key = this.keys.verifier(kid);
        if (key) this.countVerification('token'); // a known key: the signature is checked next
        return key;
      },
      this.now(),
      { ...this.identity(), acceptWithoutIssuer: true },
    );
  }
}

/**
 * jose's checks of the claims (type, required claims, expiry) of a token whose signature
 * `node:crypto` verified: jose verifies only through WebCrypto, so the claims are handed to it
 * as an unsecured JWT with the token's own `typ`. The token's header was checked before: it
 * holds nothing but `alg`, `typ` and `kid`.
 */
function claimsOfVerified(
  token: BearerToken,
  signature: Buffer,
  key: KeyObject,
  options: JWTClaimVerificationOptions,
): JWTPayload {
  const [headerSegment, payloadSegment] = token.compact.split('.');
  let verified: boolean;
  try {
    verified = verify(null, Buffer.from(`${headerSegment}.${payloadSegment}`), key, signature);
  } catch (cause) {
    throw new errors.JWSSignatureVerificationFailed(undefined, { cause });
  }
  if (!verified) throw new errors.JWSSignatureVerificationFailed();
  const unsecuredHeader = Buffer.from(JSON.stringify({ alg: 'none', typ: token.header.typ })).toString('base64url');
  return UnsecuredJWT.decode(`${unsecuredHeader}.${payloadSegment}.`, options).payload;
}

/**
 * Verifies a parsed bearer token: first whether its signature can be trusted (422), then
 * whether it is acceptable at `now` (epoch milliseconds, 401): not expired, of the expected
 * type, with its claims, from the expected issuer for the expected audience (`acceptance`; a
 * refresh token's audience is the issuer). `keyFor` finds the public key of a `kid`, from this server's key
 * ring or, in a resource server, from its JWKS.
 *
 * A `KeyObject` (the server's keys) is verified with `node:crypto`, synchronously: it costs
 * less CPU than WebCrypto's hand-off to the thread pool, and each server process has its own
 * main thread. A `CryptoKey` (a resource server, inside someone else's process) goes through
 * jose's `jwtVerify`, off that process's event loop.
 */
export async function verifyToken<T extends TokenType>(
  token: BearerToken,
  type: T,
  keyFor: (kid: string) => KeyObject | CryptoKey | undefined | Promise<KeyObject | CryptoKey | undefined>,
  now: number,
  acceptance: TokenAcceptance,
): Promise<ClaimsOf[T]> {
  const signature = Buffer.from(token.signature, 'base64url');
  if (signature.length !== ED25519_SIGNATURE_BYTES) throw new AuthFailure('tokenSignatureMalformed');
  if (token.header.alg !== 'EdDSA') throw new AuthFailure('tokenAlgorithmRejected');
  if (Object.keys(token.header).some((name) => !HEADER_PARAMETERS.has(name))) throw new AuthFailure('tokenHeaderUnsupported');
  if (typeof token.header.kid !== 'string') throw new AuthFailure('tokenKeyIdMissing');
  const key = await keyFor(token.header.kid);
  if (!key) throw new AuthFailure('tokenKeyIdUnknown');

  const options: JWTClaimVerificationOptions = {
    typ: TYP[type],
    requiredClaims: REQUIRED_CLAIMS[type],
    currentDate: new Date(now),
  };
  const issuedBeforeIssuer = !('iss' in token.payload) && !('aud' in token.payload);
  if (!(acceptance.acceptWithoutIssuer && issuedBeforeIssuer)) {
    options.issuer = acceptance.issuer;
    options.audience = type === 'access' ? [...acceptance.audience] : acceptance.issuer;
  }
  let payload: JWTPayload;
  try {
    payload =
      key instanceof KeyObject
        ? claimsOfVerified(token, signature, key, options)
        : (await jwtVerify(token.compact, key, { ...options, algorithms: ['EdDSA'] })).payload;
  } catch (error) {
    throw failureOfJoseError(error, type);
  }
  if (
    !REQUIRED_CLAIMS[type].every((claim) => typeof payload[claim] === (claim === 'iat' || claim === 'exp' ? 'number' : 'string'))
  ) {
    throw new AuthFailure('tokenClaimsMissing');
  }
  return payload as unknown as ClaimsOf[T];
}

/**
 * What a refusal by jose means for the client. Every jose error class maps to a 401 or
 * a 422; anything else is a fault of this server and stays a 500.
 */
export function failureOfJoseError(error: unknown, type: TokenType): unknown {
  // jose validates claims only after the signature verified: these tokens are authentic.
  if (error instanceof errors.JWTExpired)
    return new AuthFailure(type === 'access' ? 'accessTokenExpired' : 'refreshTokenExpired');
  if (error instanceof errors.JWTClaimValidationFailed && error.claim === 'typ') {
    return new AuthFailure(type === 'access' ? 'notAnAccessToken' : 'notARefreshToken');
  }
  if (error instanceof errors.JWTClaimValidationFailed && ['iss', 'aud'].includes(error.claim) && error.reason !== 'missing') {
    return new AuthFailure('tokenIssuerOrAudienceOther');
  }
  if (error instanceof errors.JWTClaimValidationFailed || error instanceof errors.JWTInvalid)
    return new AuthFailure('tokenClaimsMissing');
  if (error instanceof errors.JOSEAlgNotAllowed) return new AuthFailure('tokenAlgorithmRejected');
  if (error instanceof errors.JOSENotSupported) return new AuthFailure('tokenHeaderUnsupported');
  // A signature that does not verify, a malformed JWS, and any class a later jose adds: not trusted.
  if (error instanceof errors.JOSEError) return new AuthFailure('tokenSignatureInvalid');
  return error;
}
