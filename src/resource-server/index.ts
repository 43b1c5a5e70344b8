/**
 * `fib-auth/resource-server`: what another FIB API service needs to accept this service's
 * access tokens and to refuse them as soon as their session ends (README, "Protecting another
 * FIB service"). Every check is local: the keys come from the JWKS, the ended sessions from
 * the revocation feed, followed in the background.
 */
import type { Middleware } from 'koa';
import { parseBearer } from '../domain/bearer.js';
import { verifyToken, type AccessClaims } from '../domain/tokens.js';
import { envelope } from '../http/envelope.js';
import { Jwks } from './jwks.js';
import { VerificationError, verificationErrorOf } from './refusal.js';
import { RevocationFeed } from './revocations.js';

export type { AccessClaims };
export { VerificationError };

const BASE_PATH = '/auth/api/v1/authentication-management';

export interface VerifierOptions {
  /** The service's base URL, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** A client created with `npx fib-auth clients add --id ID`, and the secret it printed. */
  clientId: string;
  clientSecret: string;
  /** How long the revocation set may go unconfirmed before every token is refused with 503 (at least 2). */
  maxStalenessSeconds?: number;
}

/** What `verifier.koa()` puts on `ctx.state` of the requests it lets through. */
export interface VerifiedState {
  claims: AccessClaims;
}

export interface Verifier {
  /** Resolves once the keys are fetched and the revocation set is current; rejects when the service refuses the client. */
  ready(): Promise<void>;
  /**
   * The claims of the access token in an `Authorization` header value (or values), checked
   * as the service's logout checks it; rejects with a `VerificationError` (401, 422 or 503).
   */
  verify(authorization: string | readonly string[] | undefined): Promise<AccessClaims>;
  /** Stops following the feed; `verify` answers 503 from then on. */
  close(): Promise<void>;
  /** A Koa middleware: refuses in the FIB envelope, or sets `ctx.state.claims` and goes on. */
  koa(): Middleware<VerifiedState>;
}

export function createVerifier({ url, clientId, clientSecret, maxStalenessSeconds = 10 }: VerifierOptions): Verifier {
  if (!(maxStalenessSeconds >= 2) || !Number.isFinite(maxStalenessSeconds)) {
    throw new RangeError(`maxStalenessSeconds must be a number of seconds of at least 2, not ${maxStalenessSeconds}.`);
  }
  const base = url.replace(/\/+$/, '');
  const jwks = new Jwks(`${base}/.well-known/jwks.json`);
  const feed = new RevocationFeed({
    url: `${base}${BASE_PATH}/revocations`,
    authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`,
    maxStalenessSeconds,
  });

  async function verify(authorization: string | readonly string[] | undefined): Promise<AccessClaims> {
    let claims: AccessClaims;
    try {
      const values = typeof authorization === 'string' ? [authorization] : authorization;
      claims = await verifyToken(parseBearer(values), 'access', jwks.keyFor, Date.now());
    } catch (error) {
      throw verificationErrorOf(error);
    }
    feed.check(claims);
    return claims;
  }

  return {
    ready: async () => {
      await feed.current;
      await jwks.refresh();
    },
    verify,
    close: () => feed.close(),
    koa: () => async (ctx, next) => {
      try {
        // Node keeps only the first of repeated Authorization headers in `headers`.
        ctx.state.claims = await verify(ctx.req.headersDistinct.authorization);
      } catch (error) {
        if (!(error instanceof VerificationError)) throw error;
        ctx.status = error.status;
        if (error.challenge) ctx.set('WWW-Authenticate', error.challenge);
        ctx.body = envelope(error.status, error.message, {});
        ctx.set('Content-Type', 'application/json');
        return;
      }
      await next();
    },
  };
}
