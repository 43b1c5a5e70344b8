/**
 * `fib-auth-resource-server`: what another FIB API service needs to accept this service's
 * access tokens and to refuse them as soon as their session ends (README, "Protecting another
 * FIB service"). Every check is local: the keys come from the JWKS, the ended sessions and
 * withdrawn keys from the revocation feed, both followed in the background.
 */
import { envelope } from '../../../src/contract/envelope.js';
import { parseBearer } from '../../../src/domain/bearer.js';
import { verifyToken, type AccessClaims } from '../../../src/domain/tokens.js';
import {
  FeedRefusedError,
  FibAuthError,
  ReadyTimeoutError,
  VerificationError,
  VerifierClosedError,
  VerifierOptionsError,
} from './errors.js';
import { writeEventToStderr, type EventListener, type VerifierEvent } from './events.js';
import { Jwks } from './jwks.js';
import { ServiceMetadata } from './metadata.js';
import { tokenLivesTooLong, unverifiable, verificationErrorOf } from './refusal.js';
import { describe } from './requests.js';
import { RevocationFollower } from './revocations.js';

export type { AccessClaims, VerifierEvent };
export { FeedRefusedError, FibAuthError, ReadyTimeoutError, VerificationError, VerifierClosedError, VerifierOptionsError };

const BASE_PATH = '/auth/api/v1/authentication-management';

export interface VerifierOptions {
  /** The service's base URL, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** A client created with `npx fib-auth clients add --id ID`, and the secret it printed. */
  clientId: string;
  clientSecret: string;
  /**
   * The `iss` every token must carry: the service's `ISSUER` (an origin). By default the
   * `issuer` of the service's metadata (`/.well-known/oauth-authorization-server` under `url`).
   */
  issuer?: string;
  /**
   * The audience (`aud`) a token must name, or a list of which it must name one: this
   * service's name among the FIB API's. By default the audience the service's metadata names
   * for its access tokens (`AUDIENCE`, `fib-api` unless the operator set it).
   */
  audience?: string | readonly string[];
  /** How long the revocation set may go unconfirmed before every token is refused with 503 (at least 2; 10 by default). */
  maxStalenessSeconds?: number;
  /** How often the signing keys are fetched again, dropping the keys the service no longer lists (at least 1; 300 by default). */
  jwksRefreshSeconds?: number;
  /** The longest `exp - iat` (and `exp - now`) of a token accepted (at least 1; 3600 by default). */
  maxTokenAgeSeconds?: number;
  /** How long after `createVerifier` `ready()` rejects with a `ReadyTimeoutError` if not ready by then (at least 1; 30 by default). */
  readyTimeoutSeconds?: number;
  /** Told of each `VerifierEvent`; by default one line per event on standard error. */
  onEvent?: (event: VerifierEvent) => void;
}

/** What `verifier.koa()` puts on `ctx.state` of the requests it lets through. */
export interface VerifiedState {
  claims: AccessClaims;
}

/**
 * What `verifier.koa()` uses of a Koa context: any Koa 2 or 3 `ctx` has it. Structural, so that
 * the declarations need neither `koa` nor `@types/koa` where the middleware is not used.
 */
export interface KoaContextLike {
  req: { headersDistinct: Record<string, string[] | undefined> };
  state: object;
  status: number;
  body: unknown;
  set(field: string, value: string): void;
}

export interface Verifier {
  /**
   * Resolves once the keys are fetched and the revocation set is current; rejects with a
   * `FeedRefusedError` when the service refuses the client, a `ReadyTimeoutError` after
   * `readyTimeoutSeconds`, a `VerifierClosedError` on `close()`.
   */
  ready(): Promise<void>;
  /**
   * The claims of the access token in an `Authorization` header value (or values), checked
   * as the service's logout checks it; rejects with a `VerificationError` (401, 422 or 503).
   */
  verify(authorization: string | readonly string[] | undefined): Promise<AccessClaims>;
  /** Stops following the feed and the keys; `verify` answers 503 from then on. */
  close(): Promise<void>;
  /** A Koa middleware: refuses in the FIB envelope, or sets `ctx.state.claims` and goes on. */
  koa(): (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<void>;
}

function required(name: string, value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new VerifierOptionsError(`${name} is missing: give ${what}.`);
  return value;
}

function seconds(name: string, value: number | undefined, fallback: number, least: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || !(value >= least)) {
    throw new VerifierOptionsError(`${name} must be a number of seconds of at least ${least}, not ${value}.`);
  }
  return value;
}

/** The options, checked at once so that a mistake shows where the verifier is created. */
function validated(options: VerifierOptions) {
  const url = required('url', options.url, "the service's base URL, such as http://127.0.0.1:8080");
  if (!URL.canParse(url) || !['http:', 'https:'].includes(new URL(url).protocol)) {
    throw new VerifierOptionsError(`url must be the service's http(s) base URL, such as http://127.0.0.1:8080, not ${url}.`);
  }
  const clientId = required('clientId', options.clientId, 'the id of `npx fib-auth clients add --id ID`');
  const clientSecret = required('clientSecret', options.clientSecret, 'the secret `npx fib-auth clients add` printed');
  if (options.onEvent !== undefined && typeof options.onEvent !== 'function') {
    throw new VerifierOptionsError('onEvent must be a function.');
  }
  const { issuer } = options;
  if (issuer !== undefined && (typeof issuer !== 'string' || !URL.canParse(issuer) || new URL(issuer).origin !== issuer)) {
    throw new VerifierOptionsError(
      `issuer must be the service's ISSUER, an origin such as https://auth.example.com, not ${String(issuer)}.`,
    );
  }
  const audience = typeof options.audience === 'string' ? [options.audience] : options.audience;
  if (
    audience !== undefined &&
    (!Array.isArray(audience) || audience.length === 0 || !audience.every((aud) => typeof aud === 'string' && aud !== ''))
  ) {
    throw new VerifierOptionsError('audience must be a non-empty string or a non-empty list of them, such as fib-api.');
  }
  return {
    base: url.replace(/\/+$/, ''),
    clientId,
    clientSecret,
    issuer,
    audience,
    maxStalenessSeconds: seconds('maxStalenessSeconds', options.maxStalenessSeconds, 10, 2),
    jwksRefreshSeconds: seconds('jwksRefreshSeconds', options.jwksRefreshSeconds, 300, 1),
    maxTokenAgeSeconds: seconds('maxTokenAgeSeconds', options.maxTokenAgeSeconds, 3600, 1),
    readyTimeoutSeconds: seconds('readyTimeoutSeconds', options.readyTimeoutSeconds, 30, 1),
    onEvent: options.onEvent ?? writeEventToStderr,
  };
}

/** Throws a `VerifierOptionsError` at once when an option is missing or out of range. */
export function createVerifier(options: VerifierOptions): Verifier {
  const { base, clientId, clientSecret, issuer, audience, maxTokenAgeSeconds, readyTimeoutSeconds, ...settings } =
    validated(options);
  // A listener that throws must not stop the feed.
  const onEvent: EventListener = (event) => {
    try {
      settings.onEvent(event);
    } catch {
      // ignored: see above
    }
  };
  const feed = new RevocationFollower({
    url: `${base}${BASE_PATH}/revocations`,
    authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`,
    maxStalenessSeconds: settings.maxStalenessSeconds,
    onEvent,
  });
  const jwks = new Jwks({
    url: `${base}/.well-known/jwks.json`,
    refreshSeconds: settings.jwksRefreshSeconds,
    withdraws: (kid) => feed.withdraws(kid),
    onEvent,
  });
  const closing = new AbortController();
  const metadata = new ServiceMetadata(`${base}/.well-known/oauth-authorization-server`, { issuer, audience }, closing.signal);
  const ready = readiness(base, readyTimeoutSeconds, feed, jwks, metadata);

  async function verify(authorization: string | readonly string[] | undefined): Promise<AccessClaims> {
    let claims: AccessClaims;
    try {
      const values = typeof authorization === 'string' ? [authorization] : authorization;
      const token = parseBearer(values);
      const expected = metadata.expected;
      if (!expected) throw unverifiable.metadataUnavailable(metadata.lastFailure);
      // A token without `iss` and `aud` is refused: this library never met the service's older tokens.
      claims = await verifyToken(token, 'access', jwks.keyFor, Date.now(), { ...expected, acceptWithoutIssuer: false });
    } catch (error) {
      throw verificationErrorOf(error);
    }
    // Authentic, but longer-lived than this resource server accepts: a token minted by mistake or with a stolen key.
    const latest = Math.min(claims.iat, Date.now() / 1000) + maxTokenAgeSeconds;
    if (claims.exp > latest) throw tokenLivesTooLong(maxTokenAgeSeconds);
    feed.check(claims);
    return claims;
  }

  return {
    ready: () => ready,
    verify,
    close: async () => {
      closing.abort();
      jwks.close();
      await feed.close();
    },
    koa: () => async (ctx, next) => {
      try {
        // Node keeps only the first of repeated Authorization headers in `headers`.
        (ctx.state as VerifiedState).claims = await verify(ctx.req.headersDistinct.authorization);
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

/**
 * Settles once, for every `ready()`: when the feed, the keys and the metadata are, or
 * `timeoutSeconds` after creation.
 */
function readiness(
  base: string,
  timeoutSeconds: number,
  feed: RevocationFollower,
  jwks: Jwks,
  metadata: ServiceMetadata,
): Promise<void> {
  const settled = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      const cause: unknown = feed.lastFailure ?? jwks.lastFailure ?? metadata.lastFailure;
      const reason = cause === undefined ? 'no answer yet' : describe(cause);
      reject(new ReadyTimeoutError(`fib-auth at ${base} was not ready within ${timeoutSeconds} seconds: ${reason}`, { cause }));
    }, timeoutSeconds * 1000).unref();
    Promise.all([feed.current, jwks.loaded, metadata.loaded])
      .then(() => resolve(), reject)
      .finally(() => clearTimeout(timer));
  });
  settled.catch(() => {}); // a verifier whose ready() nobody awaits must not crash the process
  return settled;
}
