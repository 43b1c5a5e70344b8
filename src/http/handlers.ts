import type { Context as KoaContext } from 'koa';
import type { Context } from 'openapi-backend';
import type { components, operations } from '../../generated/openapi.js';
import type { Authentication } from '../domain/authentication.js';
import type { BearerToken } from '../domain/bearer.js';
import type { Clients } from '../domain/clients.js';
import type { KeyRing } from '../domain/key-ring.js';
import type { RevocationFeed } from '../domain/revocation-feed.js';
import type { PollRequest, SharedSignals, StreamRequest } from '../domain/shared-signals.js';
import type { IssuedPair } from '../domain/tokens.js';
import type { Store } from '../domain/store.js';
import { envelope, NoContent, PlainReply } from './envelope.js';
import { HttpFailure } from './failures.js';
import type { LongPolls } from './long-polls.js';

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

/** The client id its HTTP Basic credentials proved (api.ts). */
const clientOf = (c: Context) => c.security.clientCredentials as string;
/** SSF answers in its own JSON (docs/design.md §14). */
const ssf = <T>(body: T, status: 200 | 201 = 200) => new PlainReply(body, 'application/json', status);

const READINESS_TIMEOUT_MS = 2000;

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
  signals: SharedSignals;
}

/** One handler per operationId; each returns a body its operation documents. */
export function operationHandlers({ auth, store, keys, feed, longPolls, signals }: Services): {
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
      const claims = await auth.introspect((c.request.requestBody as IntrospectionRequest).token);
      if (!claims) return new PlainReply({ active: false }, 'application/json');
      const { sub, acc, role, sid, jti, iat, exp } = claims;
      return new PlainReply({ active: true, token_type: 'access_token', sub, acc, role, sid, jti, iat, exp }, 'application/json');
    },
    async listRevocations(c, ctx) {
      const { after, wait = 0 } = c.request.query as RevocationsQuery;
      // The client id its credentials proved (api.ts); a read that does not wait holds nothing.
      const release = Number(wait) > 0 ? longPolls.hold(c.security.clientCredentials as string, Number(wait)) : undefined;
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
      return new PlainReply({ keys: keys.jwks() }, 'application/json');
    },
    getSsfConfiguration() {
      return ssf(signals.metadata());
    },
    async createStream(c) {
      return ssf(await signals.createStream(clientOf(c), c.request.requestBody as StreamRequest), 201);
    },
    async readStreams(c) {
      const { stream_id } = c.request.query as Partial<StreamIdQuery>;
      return ssf(
        stream_id === undefined ? await signals.listStreams(clientOf(c)) : await signals.readStream(clientOf(c), stream_id),
      );
    },
    async replaceStream(c) {
      const { stream_id, ...request } = c.request.requestBody as StreamUpdate;
      return ssf(await signals.updateStream(clientOf(c), stream_id, request, true));
    },
    async updateStream(c) {
      const { stream_id, ...request } = c.request.requestBody as StreamUpdate;
      return ssf(await signals.updateStream(clientOf(c), stream_id, request, false));
    },
    async deleteStream(c) {
      await signals.deleteStream(clientOf(c), (c.request.query as StreamIdQuery).stream_id);
      return new NoContent();
    },
    async readStreamStatus(c) {
      return ssf(await signals.status(clientOf(c), (c.request.query as StreamIdQuery).stream_id));
    },
    async updateStreamStatus(c) {
      const { stream_id, status, reason } = c.request.requestBody as StreamStatus;
      return ssf(await signals.setStatus(clientOf(c), stream_id, status, reason));
    },
    async verifyStream(c) {
      const { stream_id, state } = c.request.requestBody as StreamVerificationRequest;
      await signals.verify(clientOf(c), stream_id, state);
      return new NoContent();
    },
    async pollStream(c, ctx) {
      const { stream_id } = c.request.params as StreamIdQuery;
      return ssf(await signals.poll(clientOf(c), stream_id, c.request.requestBody as PollRequest, whenGone(ctx)));
    },
  };
}
