/**
 * How to make each documented response happen for real: one scenario per named example of
 * every response of every operation. Dredd sends the request the contract describes; a
 * scenario prepares the server (users, sessions) and says what to change in that request.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { StoreHooks } from '../test/support/store-hooks.js';
import type { Session, TestServer } from '../test/support/harness.js';
import { Clients } from '../src/domain/clients.js';
import { decodePart, forge, kidOf, otherKey, serverKey, withSignature } from '../test/support/tokens.js';
import { ALICE_SIGN_IN, BOB_SIGNATURE, publicKeyHexOf } from '../test/support/vectors.js';

export interface ScenarioContext {
  t: TestServer;
  /** The server's store, which fails on demand: the only way to make a 500 happen. */
  store: StoreHooks;
}

/** What to change in the request Dredd built from the contract. */
export interface RequestChange {
  /** Header values to set; an array sends the header once per value. */
  headers?: Record<string, string | string[]>;
  body?: string;
  /** A query string to add to the path. */
  query?: string;
  /** The store fails while this request runs. */
  storeFails?: boolean;
}

export type Scenario = (c: ScenarioContext) => Promise<RequestChange>;

type TokenKind = 'access' | 'refresh';
type Claims = Record<string, unknown>;

const tokenOf = (session: Session, kind: TokenKind) => (kind === 'access' ? session.accessToken : session.refreshToken);
const authorization = (value: string | string[]): RequestChange => ({ headers: { Authorization: value } });
const bearer = (token: string) => authorization(`Bearer ${token}`);
const json = (body: unknown): RequestChange => ({ body: JSON.stringify(body) });

async function refreshed(t: TestServer, refreshToken: string): Promise<Session> {
  const reply = await t.refresh(refreshToken);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return reply.body.data;
}

/** The scenarios every bearer-token operation shares; `kind` is the token it expects. */
function bearerScenarios(kind: TokenKind): Record<string, Scenario> {
  const live = async ({ t }: ScenarioContext) => tokenOf(await t.newSession(), kind);
  /** A live token's header and claims, changed, then signed by `key` (the server's by default). */
  const reSigned = async (
    c: ScenarioContext,
    change: (header: Claims, claims: Claims) => [Claims, Claims],
    key = serverKey(c.t),
  ) => {
    const token = await live(c);
    return bearer(forge(...change(decodePart(token, 0), decodePart(token, 1)), key));
  };
  return {
    // Dredd sends no Authorization header: it does not apply the contract's security schemes.
    AuthorizationMissing: async () => ({}),
    AuthorizationRepeated: async (c) => {
      const token = await live(c);
      return authorization([`Bearer ${token}`, `Bearer ${token}`]);
    },
    AuthorizationSchemeNotBearer: async (c) => authorization(`Basic ${await live(c)}`),
    AuthorizationCredentialCount: async (c) => {
      const token = await live(c);
      return authorization(`Bearer ${token} ${token}`);
    },
    TokenTooLong: async (c) => {
      const token = await live(c);
      return bearer(token + 'A'.repeat(4097 - token.length));
    },
    TokenNotCompactJws: async (c) => bearer((await live(c)).split('.').slice(0, 2).join('.')),
    TokenPartsNotJson: async (c) => {
      const [, payload, signature] = (await live(c)).split('.');
      return bearer(`${Buffer.from('not json').toString('base64url')}.${payload}.${signature}`);
    },
    TokenSignatureMalformed: async (c) => {
      const token = await live(c);
      return bearer(withSignature(token, Buffer.from(token.split('.')[2], 'base64url').subarray(0, 63)));
    },
    TokenAlgorithmRejected: (c) => reSigned(c, (header, claims) => [{ ...header, alg: 'none' }, claims]),
    TokenKeyIdMissing: (c) => reSigned(c, ({ kid: _kid, ...header }, claims) => [header, claims]),
    TokenKeyIdUnknown: async (c) => {
      const stranger = otherKey();
      const kid = await kidOf(stranger);
      return reSigned(c, (header, claims) => [{ ...header, kid }, claims], stranger);
    },
    TokenSignatureInvalid: (c) => reSigned(c, (header, claims) => [header, claims], otherKey()),
    TokenHeaderUnsupported: (c) =>
      reSigned(c, (header, claims) => [{ ...header, crit: ['exp-policy'], 'exp-policy': 1 }, claims]),
    TokenClaimsMissing: (c) => reSigned(c, (header, { jti: _jti, ...claims }) => [header, claims]),
    [kind === 'access' ? 'AccessTokenExpired' : 'RefreshTokenExpired']: (c) =>
      reSigned(c, (header, claims) => [header, { ...claims, exp: Math.floor(Date.now() / 1000) }]),
    [kind === 'access' ? 'NotAnAccessToken' : 'NotARefreshToken']: async ({ t }) =>
      bearer(tokenOf(await t.newSession(), kind === 'access' ? 'refresh' : 'access')),
    // An authentic token of a session this server never opened.
    SessionEnded: (c) => reSigned(c, (header, claims) => [header, { ...claims, sid: randomUUID(), jti: randomUUID() }]),
    SessionRevokedAfterReuse: async ({ t }) => {
      const session = await t.newSession();
      const next = await refreshed(t, session.refreshToken);
      assert.equal((await t.refresh(session.refreshToken)).status, 401, 'reusing the refresh token revokes the session');
      return bearer(tokenOf(next, kind));
    },
    UserNotFound: async ({ t }) => {
      const session = await t.newSession();
      assert.ok(await t.server.store.removeUser(session.email, Math.floor(Date.now() / 1000)));
      return bearer(tokenOf(session, kind));
    },
    InternalServerError: async (c) => ({ ...bearer(await live(c)), storeFails: true }),
  };
}

async function registerAlice({ t }: ScenarioContext): Promise<void> {
  if (!(await t.server.store.findUser(ALICE_SIGN_IN.email))) await t.addUser(ALICE_SIGN_IN.email, ALICE_SIGN_IN.authPublicKeyHex);
}

/** HTTP Basic credentials of a resource-server client registered for this request. */
async function clientCredentials({ t }: ScenarioContext): Promise<RequestChange> {
  const id = `rs-${randomUUID()}`;
  const secret = await new Clients(t.server.store, Date.now).add(id);
  return authorization(`Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`);
}

/** The scenarios every operation for resource servers shares. */
const clientScenarios: Record<string, Scenario> = {
  ClientCredentialsMissing: async () => ({}),
  // A registered id with another secret.
  ClientCredentialsInvalid: async ({ t }) => {
    const id = `rs-${randomUUID()}`;
    await new Clients(t.server.store, Date.now).add(id);
    return authorization(`Basic ${Buffer.from(`${id}:${randomUUID()}`).toString('base64')}`);
  },
};

/** A form body for introspection, sent with the client's credentials. */
async function introspecting(c: ScenarioContext, fields: Record<string, string>): Promise<RequestChange> {
  const { headers } = await clientCredentials(c);
  return {
    headers: { ...headers, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  };
}

/** A feed request with the client's credentials; never `wait`, which Dredd would fill from the example. */
async function following(c: ScenarioContext, query: string): Promise<RequestChange> {
  return { ...(await clientCredentials(c)), query };
}

async function newestCursor(c: ScenarioContext): Promise<string> {
  return String((await c.t.server.store.revocationsAfter(undefined, 1_000_000)).cursor);
}

/** Every named example of every operation's responses, by operationId. */
export const scenarios: Record<string, Record<string, Scenario>> = {
  authorizeUser: {
    // The request exactly as the contract's example has it.
    SignedIn: async (c) => {
      await registerAlice(c);
      return {};
    },
    BodyMissing: async () => ({ body: '' }),
    BodyNotJson: async () => ({ body: '{"email": ' }),
    BodyFieldMissing: async () => json({ email: ALICE_SIGN_IN.email, authPublicKeyHex: ALICE_SIGN_IN.authPublicKeyHex }),
    BodyFieldNotString: async () => json({ ...ALICE_SIGN_IN, email: 42 }),
    BodyFieldUnexpected: async () => json({ ...ALICE_SIGN_IN, password: 'secret' }),
    PayloadTooLarge: async () => json({ ...ALICE_SIGN_IN, padding: 'x'.repeat(16 * 1024) }),
    // The example body, declared as text.
    UnsupportedMediaType: async () => ({ headers: { 'Content-Type': 'text/plain' } }),
    SignatureNotHex: async () => json({ ...ALICE_SIGN_IN, signature: 'not hex' }),
    PublicKeyInvalid: async () => json({ ...ALICE_SIGN_IN, authPublicKeyHex: 'abcd' }),
    // Bob is never registered.
    UserNotFound: async () => json({ ...ALICE_SIGN_IN, email: 'bob@wonderland.space', signature: BOB_SIGNATURE }),
    PublicKeyNotRegistered: async (c) => {
      await registerAlice(c);
      return json({ ...ALICE_SIGN_IN, authPublicKeyHex: publicKeyHexOf(otherKey()) });
    },
    // Bob's signature is of another email.
    SignatureNotVerified: async (c) => {
      await registerAlice(c);
      return json({ ...ALICE_SIGN_IN, signature: BOB_SIGNATURE });
    },
    InternalServerError: async (c) => {
      await registerAlice(c);
      return { storeFails: true };
    },
  },
  refreshTokens: {
    ...bearerScenarios('refresh'),
    TokensRefreshed: async ({ t }) => bearer((await t.newSession()).refreshToken),
    RefreshTokenReused: async ({ t }) => {
      const session = await t.newSession();
      await refreshed(t, session.refreshToken);
      return bearer(session.refreshToken);
    },
    SessionLoggedOut: async ({ t }) => {
      const session = await t.newSession();
      assert.equal((await t.logout(session.accessToken)).status, 200);
      return bearer(session.refreshToken);
    },
  },
  logout: {
    ...bearerScenarios('access'),
    LoggedOut: async ({ t }) => bearer((await t.newSession()).accessToken),
    AccessTokenLoggedOut: async ({ t }) => {
      const session = await t.newSession();
      assert.equal((await t.logout(session.accessToken)).status, 200);
      return bearer(session.accessToken);
    },
    AccessTokenRetired: async ({ t }) => {
      const session = await t.newSession();
      await refreshed(t, session.refreshToken);
      return bearer(session.accessToken);
    },
    LoggedOutEverywhere: async ({ t }) => ({ ...bearer((await t.newSession()).accessToken), query: 'scope=global' }),
    ScopeInvalid: async ({ t }) => ({ ...bearer((await t.newSession()).accessToken), query: 'scope=everywhere' }),
  },
  introspectToken: {
    ...clientScenarios,
    TokenActive: async (c) => introspecting(c, { token: (await c.t.newSession()).accessToken }),
    TokenInactive: async (c) => {
      const session = await c.t.newSession();
      assert.equal((await c.t.logout(session.accessToken)).status, 200);
      return introspecting(c, { token: session.accessToken, token_type_hint: 'access_token' });
    },
    IntrospectionTokenMissing: (c) => introspecting(c, { token_type_hint: 'access_token' }),
    PayloadTooLarge: (c) => introspecting(c, { token: 'x'.repeat(16 * 1024) }),
    FormRequired: async (c) => {
      const { headers } = await introspecting(c, {});
      return { headers: { ...headers, 'Content-Type': 'application/json' }, body: '{"token": "x"}' };
    },
    InternalServerError: async (c) => ({ ...(await introspecting(c, { token: 'x.y.z' })), storeFails: true }),
  },
  listRevocations: {
    ...clientScenarios,
    RevocationsSnapshot: (c) => following(c, 'wait=0'),
    RevocationsAfterCursor: async (c) => {
      const cursor = await newestCursor(c);
      assert.equal((await c.t.logout((await c.t.newSession()).accessToken)).status, 200);
      return following(c, `after=${cursor}&wait=5`);
    },
    RevocationsNone: async (c) => following(c, `after=${await newestCursor(c)}&wait=0`),
    RevocationCursorInvalid: (c) => following(c, 'after=-1'),
    RevocationWaitInvalid: (c) => following(c, 'wait=31'),
    InternalServerError: async (c) => ({ ...(await following(c, 'wait=0')), storeFails: true }),
  },
  getLiveness: {
    ServiceLive: async () => ({}),
  },
  getReadiness: {
    ServiceReady: async () => ({}),
    StoreUnavailable: async () => ({ storeFails: true }),
  },
  getMetrics: {
    // A scrape after a sign-in and a logout, so the counters have something to show.
    MetricsSample: async ({ t }) => {
      assert.equal((await t.logout((await t.newSession()).accessToken)).status, 200);
      return {};
    },
  },
  getJwks: {
    JwksSample: async () => ({}),
  },
};
