import { randomUUID } from 'node:crypto';
import { SignJWT, errors, jwtVerify, type CryptoKey, type JWTPayload } from 'jose';
import type { BearerToken } from './bearer.js';
import { epochSeconds, type Clock } from './clock.js';
import { AuthFailure } from './failures.js';
import type { KeyRing } from './key-ring.js';
import type { SessionCredentials } from './store.js';

export type TokenType = 'access' | 'refresh';

const TYP: Record<TokenType, string> = { access: 'at+jwt', refresh: 'refresh+jwt' };
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

export interface TokenLifetimes {
  accessTtl: number;
  refreshTtl: number;
}

/** Issues and verifies this server's JWS tokens (docs/design.md §5): EdDSA only, typed, with a kid. */
export class Tokens {
  constructor(
    private readonly keys: KeyRing,
    private readonly lifetimes: TokenLifetimes,
    private readonly now: Clock,
    private readonly countVerification: VerificationCounter = () => {},
  ) {}

  async issuePair(subject: TokenSubject, sid: string): Promise<IssuedPair> {
    const iat = epochSeconds(this.now);
    const accessJti = randomUUID();
    const refreshJti = randomUUID();
    const accessExpiresAt = iat + this.lifetimes.accessTtl;
    const refreshExpiresAt = iat + this.lifetimes.refreshTtl;
    const [accessToken, refreshToken] = await Promise.all([
      this.sign(
        { acc: subject.accountId, sub: subject.email, role: subject.role, sid },
        'access',
        iat,
        accessExpiresAt,
        accessJti,
      ),
      this.sign({ sub: subject.email, sid, acjti: accessJti }, 'refresh', iat, refreshExpiresAt, refreshJti),
    ]);
    return {
      accessToken,
      refreshToken,
      accessTtl: this.lifetimes.accessTtl,
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
    );
  }
}

/**
 * Verifies a parsed bearer token: first whether its signature can be trusted (422), then
 * whether it is acceptable at `now` (epoch milliseconds, 401): not expired, of the expected
 * type, with its claims. `keyFor` finds the public key of a `kid`, from this server's key
 * ring or, in a resource server, from its JWKS.
 */
export async function verifyToken<T extends TokenType>(
  token: BearerToken,
  type: T,
  keyFor: (kid: string) => CryptoKey | undefined | Promise<CryptoKey | undefined>,
  now: number,
): Promise<ClaimsOf[T]> {
  if (Buffer.from(token.signature, 'base64url').length !== ED25519_SIGNATURE_BYTES) {
    throw new AuthFailure('tokenSignatureMalformed');
  }
  if (token.header.alg !== 'EdDSA') throw new AuthFailure('tokenAlgorithmRejected');
  if (Object.keys(token.header).some((name) => !HEADER_PARAMETERS.has(name))) throw new AuthFailure('tokenHeaderUnsupported');
  if (typeof token.header.kid !== 'string') throw new AuthFailure('tokenKeyIdMissing');
  const key = await keyFor(token.header.kid);
  if (!key) throw new AuthFailure('tokenKeyIdUnknown');

  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token.compact, key, {
      algorithms: ['EdDSA'],
      typ: TYP[type],
      requiredClaims: REQUIRED_CLAIMS[type],
      currentDate: new Date(now),
    }));
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
 * What a refusal by `jwtVerify` means for the client. Every jose error class maps to a 401 or
 * a 422; anything else is a fault of this server and stays a 500.
 */
export function failureOfJoseError(error: unknown, type: TokenType): unknown {
  // jose validates claims only after the signature verified: these tokens are authentic.
  if (error instanceof errors.JWTExpired)
    return new AuthFailure(type === 'access' ? 'accessTokenExpired' : 'refreshTokenExpired');
  if (error instanceof errors.JWTClaimValidationFailed && error.claim === 'typ') {
    return new AuthFailure(type === 'access' ? 'notAnAccessToken' : 'notARefreshToken');
  }
  if (error instanceof errors.JWTClaimValidationFailed || error instanceof errors.JWTInvalid)
    return new AuthFailure('tokenClaimsMissing');
  if (error instanceof errors.JOSEAlgNotAllowed) return new AuthFailure('tokenAlgorithmRejected');
  if (error instanceof errors.JOSENotSupported) return new AuthFailure('tokenHeaderUnsupported');
  // A signature that does not verify, a malformed JWS, and any class a later jose adds: not trusted.
  if (error instanceof errors.JOSEError) return new AuthFailure('tokenSignatureInvalid');
  return error;
}
