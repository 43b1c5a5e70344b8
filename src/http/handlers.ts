import type { Context as KoaContext } from 'koa';
import type { Context } from 'openapi-backend';
import type { components, operations } from '../../generated/openapi.js';
import type { Authentication } from '../domain/authentication.js';
import type { BearerToken } from '../domain/bearer.js';
import type { Clients } from '../domain/clients.js';
import type { KeyRing } from '../domain/key-ring.js';
import type { RevocationFeed } from '../domain/revocation-feed.js';
import { Lifetimes } from '../domain/lifetimes.js';
import type { PollRequest, SharedSignals, StreamRequest } from '../domain/shared-signals.js';
import { audienceClaim, SIGN_IN_CLIENT_ID, type IssuedPair, type TokenIdentity } from '../domain/tokens.js';
import type { Store } from '../domain/store.js';
import { envelope } from '../contract/envelope.js';
import { NoContent, PlainReply } from './plain-reply.js';
import { HttpFailure } from './refusals.js';
import type { LongPolls } from './long-polls.js';
import { authorizationServerMetadata } from './metadata.js';

type OperationId = keyof operations;
type Responses<Op extends OperationId> = operations[Op]['responses'];
/** The bodies an operation's responses document, for each media type. */
type Body<Op extends OperationId> = {
  [Code in keyof Responses<Op>]: Responses<Op>[Code] extends { content: infer C } ? C[keyof C] : never;
}[keyof Responses<Op>];
type Reply<Op extends OperationId> = Body<Op> | PlainReply<Body<Op>> | (204 extends keyof Responses<Op> ? NoContent : never);

type SignInRequest = components['schemas']['SignInRequest'];
type SignInChallengeRequest = components['schemas']['SignInChallengeRequest'];
type LogoutQuery = NonNullable<operations['logout']['parameters']['query']>;
type IntrospectionRequest = components['schemas']['IntrospectionRequest'];
type RevocationsQuery = NonNullable<operations['listRevocations']['parameters']['query']>;
type StreamUpdate = components['schemas']['StreamUpdate'];
type StreamStatus = components['schemas']['StreamStatus'];
type StreamVerificationRequest = components['schemas']['StreamVerificationRequest'];
type StreamIdQuery = { stream_id: string };

/** SSF answers in its own JSON (docs/design.md §15). */
const ssf = <T>(body: T, status: 200 | 201 = 200) => new PlainReply(body, 'application/json', {}, status);

const READINESS_TIMEOUT_MS = 2000;

/**
 * The key set and the metadata may be cached, briefly: a key `fib-auth keys generate` publishes
 * reaches every verifier within twice this (docs/design.md §5). Every other answer is `no-store`.
 */
const PUBLISHED = { 'Cache-Control': `public, max-age=${Lifetimes.PUBLISHED_KEYS_MAX_AGE_SECONDS}` };

/** The bearer token that the operation's security handler parsed. */
const bearer = (c: Context, scheme: 'accessToken' | 'refreshToken') => c.security[scheme] as BearerToken;

const tokenData = (pair: IssuedPair) => ({
  accessToken: pair.accessToken,
  refreshToken: pair.refreshToken,
  expirationTime: pair.accessTtl,
});

function answersWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false)));
  return Promise.race([
    work.then(
      () => true,
      () => false,
    ),
    late,
  ]).finally(() => clearTimeout(timer));
}

/** Aborts when the client closes the connection, so a long poll stops waiting for nobody. */
function whenGone(ctx: KoaContext): AbortSignal {
  const gone = new AbortController();
  ctx.res.once('close', () => gone.abort());
  return gone.signal;
}

export interface Services {
  auth: Authentication;
  store: Store;
  keys: KeyRing;
  feed: RevocationFeed;
  clients: Clients;
  longPolls: LongPolls;
  /** The issuer and audience of the tokens; read at each use (see `Tokens`). */
  identity: () => TokenIdentity;
  signals: SharedSignals;
}

/**
 * The refusal a security handler threw for this request, if any. An operation whose contract
 * also allows no security scheme (`{}`: introspection, whose client may authenticate in the
 * form) is routed on even then, so its handler and validation ask here first.
 */
export function securityFailure(c: Context): Error | undefined {
  const failed = Object.values<unknown>(c.security ?? {}).find(
    (value): value is { error: Error } => typeof value === 'object' && value !== null && 'error' in value && !!value.error,
  );
  return failed?.error;
}

/**
 * The client a request for resource servers authenticated as. Introspection's contract lets a
 * request without HTTP Basic through (its client may authenticate in the form), so the refusal
 * its security handler threw is thrown here.
 */
function authenticatedClient(c: Context): string {
  const failed = securityFailure(c);
  if (failed) throw failed;
  return c.security.clientCredentials as string;
}

/** One handler per operationId; each returns a body its operation documents. */
export function operationHandlers({ auth, store, keys, feed, longPolls, identity, signals }: Services): {
  [Op in OperationId]: (c: Context, ctx: KoaContext) => Reply<Op> | Promise<Reply<Op>>;
} {
  return {
    async createSignInChallenge(c) {
      const challenge = await auth.challenge((c.request.requestBody as SignInChallengeRequest).email);
      return envelope(200, 'Sign-in challenge has been issued.', challenge);
    },
    async authorizeUser(c) {
      const pair = await auth.signIn(c.request.requestBody as SignInRequest);
      return envelope(200, 'User has been successfully authorized.', tokenData(pair));
    },
    async refreshTokens(c) {
      const pair = await auth.refresh(bearer(c, 'refreshToken'));
      return envelope(200, 'Tokens have been successfully refreshed.', tokenData(pair));
    },
    async endSession(c) {
      await auth.endSession(bearer(c, 'refreshToken'));
      return envelope(200, 'Session has been ended.', {});
    },
    async logout(c) {
      if ((c.request.query as LogoutQuery).scope === 'global') {
        await auth.logout(bearer(c, 'accessToken'), 'user');
        return envelope(200, 'User has been successfully logged out of every session.', {});
      }
      await auth.logout(bearer(c, 'accessToken'), 'session');
      return envelope(200, 'User has been successfully logged out.', {});
    },
    async introspectToken(c) {
      authenticatedClient(c);
      const claims = await auth.introspect((c.request.requestBody as IntrospectionRequest).token);
      if (!claims) return new PlainReply({ active: false }, 'application/json');
      const { sub, acc, role, sid, jti, iat, exp } = claims;
      // A token issued before tokens named their issuer and audience is this service's, for its audience.
      const { issuer, audience } = identity();
      const iss = claims.iss ?? issuer;
      const aud = claims.aud ?? audienceClaim(audience);
      return new PlainReply(
        { active: true, token_type: 'Bearer', iss, aud, client_id: SIGN_IN_CLIENT_ID, sub, acc, role, sid, jti, iat, exp },
        'application/json',
      );
    },
    async listRevocations(c, ctx) {
      const { after, wait = 0 } = c.request.query as RevocationsQuery;
      // The client id its credentials proved (api.ts); a read that does not wait holds nothing.
      const release = Number(wait) > 0 ? longPolls.hold(authenticatedClient(c), Number(wait)) : undefined;
      try {
        const page = await feed.read(after, Number(wait), whenGone(ctx));
        const message = page.snapshot ? 'Revocations still in force.' : 'Revocations after the cursor.';
        return envelope(200, message, page);
      } finally {
        release?.();
      }
    },
    getLiveness() {
      return envelope(200, 'The service is live.', {});
    },
    async getReadiness() {
      if (!(await answersWithin(store.ping(), READINESS_TIMEOUT_MS))) throw new HttpFailure('storeUnavailable');
      return envelope(200, 'The service is ready.', {});
    },
    getJwks() {
      return new PlainReply({ keys: keys.jwks() }, 'application/json', PUBLISHED);
    },
    getAuthorizationServerMetadata() {
      return new PlainReply(authorizationServerMetadata(identity()), 'application/json', PUBLISHED);
    },
    getSsfConfiguration() {
      return ssf(signals.metadata());
    },
    async createStream(c) {
      return ssf(await signals.createStream(authenticatedClient(c), c.request.requestBody as StreamRequest), 201);
    },
    async readStreams(c) {
      const { stream_id } = c.request.query as Partial<StreamIdQuery>;
      return ssf(
        stream_id === undefined
          ? await signals.listStreams(authenticatedClient(c))
          : await signals.readStream(authenticatedClient(c), stream_id),
      );
    },
    async replaceStream(c) {
      const { stream_id, ...request } = c.request.requestBody as StreamUpdate;
      return ssf(await signals.updateStream(authenticatedClient(c), stream_id, request, true));
    },
    async updateStream(c) {
      const { stream_id, ...request } = c.request.requestBody as StreamUpdate;
      return ssf(await signals.updateStream(authenticatedClient(c), stream_id, request, false));
    },
    async deleteStream(c) {
      await signals.deleteStream(authenticatedClient(c), (c.request.query as StreamIdQuery).stream_id);
      return new NoContent();
    },
    async readStreamStatus(c) {
      return ssf(await signals.status(authenticatedClient(c), (c.request.query as StreamIdQuery).stream_id));
    },
    async updateStreamStatus(c) {
      const { stream_id, status, reason } = c.request.requestBody as StreamStatus;
      return ssf(await signals.setStatus(authenticatedClient(c), stream_id, status, reason));
    },
    async verifyStream(c) {
      const { stream_id, state } = c.request.requestBody as StreamVerificationRequest;
      await signals.verify(authenticatedClient(c), stream_id, state);
      return new NoContent();
    },
    async pollStream(c, ctx) {
      const { stream_id } = c.request.params as StreamIdQuery;
      const request = c.request.requestBody as PollRequest;
      const client = authenticatedClient(c);
      // A poll that may wait holds a connection: it counts in the client's one budget of long polls (docs/design.md §15).
      const release = request.returnImmediately === true ? undefined : longPolls.hold(client, signals.pollMaxWaitSeconds);
      try {
        return ssf(await signals.poll(client, stream_id, request, whenGone(ctx)));
      } finally {
        release?.();
      }
    },
  };
}
