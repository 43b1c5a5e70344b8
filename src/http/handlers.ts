import type { Context as KoaContext } from 'koa';
import type { Context } from 'openapi-backend';
import type { components, operations } from '../../generated/openapi.js';
import type { Authentication } from '../domain/authentication.js';
import type { BearerToken } from '../domain/bearer.js';
import type { Clients } from '../domain/clients.js';
import type { KeyRing } from '../domain/key-ring.js';
import type { RevocationFeed } from '../domain/revocation-feed.js';
import type { IssuedPair } from '../domain/tokens.js';
import type { Store } from '../domain/store.js';
import { envelope } from '../contract/envelope.js';
import { PlainReply } from './plain-reply.js';
import { HttpFailure } from './refusals.js';
import type { LongPolls } from './long-polls.js';

type OperationId = keyof operations;
type Responses<Op extends OperationId> = operations[Op]['responses'];
/** The bodies an operation's responses document, for each media type. */
type Body<Op extends OperationId> = {
  [Code in keyof Responses<Op>]: Responses<Op>[Code] extends { content: infer C } ? C[keyof C] : never;
}[keyof Responses<Op>];
type Reply<Op extends OperationId> = Body<Op> | PlainReply<Body<Op>>;

type SignInRequest = components['schemas']['SignInRequest'];
type SignInChallengeRequest = components['schemas']['SignInChallengeRequest'];
type LogoutQuery = NonNullable<operations['logout']['parameters']['query']>;
type IntrospectionRequest = components['schemas']['IntrospectionRequest'];
type RevocationsQuery = NonNullable<operations['listRevocations']['parameters']['query']>;

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
}

/** One handler per operationId; each returns a body its operation documents. */
export function operationHandlers({ auth, store, keys, feed, longPolls }: Services): {
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
  };
}
