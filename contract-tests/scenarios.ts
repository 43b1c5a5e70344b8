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
import { signInChallengeMessage } from '../src/domain/signature.js';
import { ALICE, ALICE_SIGN_IN, BOB_SIGNATURE, ed25519FromSeed, publicKeyHexOf, signMessage } from '../test/support/vectors.js';
import { BASE } from '../test/support/api.js';
import { rawCall } from '../test/support/harness.js';

/** The name of the one transaction of a response without a body (204), whose scenario makes it happen. */
export const NO_CONTENT = 'NoContent';

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
  /** The path to send instead of the one Dredd filled from the parameters' examples. */
  path?: string;
  /** The store fails while this request runs. */
  storeFails?: boolean;
}

export type Scenario = (c: ScenarioContext) => Promise<RequestChange>;

/**
 * How the contract server runs (startContractServer): sign-in requires a challenge, so that
 * the 422 naming it happens, and every other sign-in scenario sends a nonce; behind one proxy,
 * so that each transaction, and each request a scenario sends, comes from an address of its
 * own (`X-Forwarded-For`) and a limit is reached only where a scenario reaches it on purpose;
 * one long poll of the feed per client, and every scenario but one follows the feed with a
 * client of its own.
 */
export const CONTRACT_SERVER_ENV = {
  SIGN_IN_CHALLENGE: 'required',
  TRUST_PROXY: '1',
  RATE_LIMIT_REFUSED_PER_ADDRESS: '20',
  RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL: '5',
  RATE_LIMIT_CHALLENGES_PER_ADDRESS: '5',
  MAX_LONG_POLLS_PER_CLIENT: '1',
};

let addresses = 0;
/** An address no transaction or scenario has come from before (TEST-NET-2 and -3, then onwards). */
export function freshAddress(): string {
  addresses += 1;
  return `198.${18 + (addresses >> 16)}.${(addresses >> 8) & 255}.${addresses & 255}`;
}

type TokenKind = 'access' | 'refresh';
type Claims = Record<string, unknown>;

const tokenOf = (session: Session, kind: TokenKind) => (kind === 'access' ? session.accessToken : session.refreshToken);
const authorization = (value: string | string[]): RequestChange => ({ headers: { Authorization: value } });
const bearer = (token: string) => authorization(`Bearer ${token}`);
const json = (body: unknown): RequestChange => ({ body: JSON.stringify(body) });
/** Changes one after another; their headers add up. */
const merged = (...changes: RequestChange[]): RequestChange => ({
  ...changes.reduce((all, change) => ({ ...all, ...change }), {}),
  headers: changes.reduce<NonNullable<RequestChange['headers']>>((all, { headers }) => ({ ...all, ...headers }), {}),
});

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
    AuthorizationMissing: () => Promise.resolve({}),
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
    TokenIssuerOrAudienceOther: (c) => reSigned(c, (header, claims) => [header, { ...claims, iss: 'https://other.example' }]),
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
    TooManyRefusedRequests: async (c) => merged(bearer(await live(c)), await overTheAddressLimit(c)),
  };
}

/**
 * Headers of a request from an address that has just used up its limit of refused requests
 * (CONTRACT_SERVER_ENV): logouts without a token, each refused with 401.
 */
async function overTheAddressLimit({ t }: ScenarioContext): Promise<RequestChange> {
  const address = freshAddress();
  for (let i = 0; i < Number(CONTRACT_SERVER_ENV.RATE_LIMIT_REFUSED_PER_ADDRESS); i += 1) {
    const reply = await rawCall(t.url, 'POST', `${BASE}/logout`, { headers: { 'X-Forwarded-For': address } });
    assert.equal(reply.status, 401);
  }
  return { headers: { 'X-Forwarded-For': address } };
}

async function registerAlice({ t }: ScenarioContext): Promise<void> {
  if (!(await t.server.store.findUser(ALICE_SIGN_IN.email))) await t.addUser(ALICE_SIGN_IN.email, ALICE_SIGN_IN.authPublicKeyHex);
}

const aliceKey = ed25519FromSeed(ALICE.privateKeyHex);

/** Alice's sign-in body answering a fresh challenge, with the public test key. */
async function aliceAnswering(c: ScenarioContext) {
  await registerAlice(c);
  return c.t.challengedProof(ALICE.email, aliceKey);
}

/** A nonce the server issued for `email`. */
async function nonceFor({ t }: ScenarioContext, email: string): Promise<string> {
  const reply = await t.challenge(email);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return reply.body.data.nonce;
}

/** HTTP Basic credentials of a resource-server client registered for this request. */
async function clientCredentials({ t }: ScenarioContext): Promise<RequestChange> {
  const id = `rs-${randomUUID()}`;
  const secret = await new Clients(t.server.store, Date.now).add(id);
  return authorization(`Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`);
}

/** The scenarios every operation for resource servers shares. */
const clientScenarios: Record<string, Scenario> = {
  ClientCredentialsMissing: () => Promise.resolve({}),
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

/**
 * A client (a new one, or the one with `credentials`) that holds its one long poll
 * (CONTRACT_SERVER_ENV) of the revocation feed until the next revocation or the server's
 * shutdown: it holds it once a second poll of the same client is refused, 429.
 */
async function holdingItsLongPoll(c: ScenarioContext, credentials?: RequestChange): Promise<RequestChange> {
  credentials ??= await clientCredentials(c);
  const poll = async (wait: number) =>
    rawCall(c.t.url, 'GET', `${BASE}/revocations?after=${await newestCursor(c)}&wait=${wait}`, credentials);
  void poll(30).catch(() => {}); // answered at the next logout of another scenario, or at shutdown
  for (;;) {
    // A second poll that got in before the held one is answered within its second: ask again.
    if ((await poll(1)).status === 429) return { ...credentials, query: 'wait=1' };
  }
}

/** A refresh token presented a second time: its first use already replaced the pair. */
async function refreshTokenUsedBefore({ t }: ScenarioContext): Promise<RequestChange> {
  const session = await t.newSession();
  await refreshed(t, session.refreshToken);
  return bearer(session.refreshToken);
}

/** A JSON body sent with the credentials of a client registered for this request. */
async function asClient(c: ScenarioContext, body?: unknown): Promise<RequestChange> {
  return { ...(await clientCredentials(c)), ...(body === undefined ? {} : json(body)) };
}

/** A client registered for this request, with a poll stream of its own. */
async function withStream(c: ScenarioContext): Promise<{ credentials: RequestChange; streamId: string }> {
  const credentials = await clientCredentials(c);
  const reply = await rawCall(c.t.url, 'POST', '/ssf/streams', { headers: credentials.headers, body: {} });
  assert.equal(reply.status, 201, JSON.stringify(reply.body));
  return { credentials, streamId: (reply.body as { stream_id: string }).stream_id };
}

/** The scenarios every Shared Signals stream operation shares; `request` names the stream as the operation does. */
function streamScenarios(request: (streamId: string) => RequestChange): Record<string, Scenario> {
  return {
    ...clientScenarios,
    StreamNotFound: async (c) => merged(await clientCredentials(c), request(randomUUID())),
    TooManyRefusedRequests: async (c) => merged(await clientCredentials(c), request(randomUUID()), await overTheAddressLimit(c)),
    InternalServerError: async (c) => ({ ...merged(await clientCredentials(c), request(randomUUID())), storeFails: true }),
  };
}

/** The refusals of a Shared Signals request's JSON body: too large, or not JSON at all. */
const ssfBodyScenarios: Record<string, Scenario> = {
  PayloadTooLarge: async (c) => merged(await clientCredentials(c), json({ padding: 'x'.repeat(16 * 1024) })),
  UnsupportedMediaType: async (c) => merged(await clientCredentials(c), json({}), { headers: { 'Content-Type': 'text/plain' } }),
};

/** A request that names its stream in the query, the body (with `fields`), or the path. */
const inQuery = (streamId: string): RequestChange => ({ query: `stream_id=${streamId}` });
const inBody =
  (fields: object = {}) =>
  (streamId: string): RequestChange =>
    json({ stream_id: streamId, ...fields });
const inPath =
  (fields: object = {}) =>
  (streamId: string): RequestChange => ({ path: `/ssf/poll/${streamId}`, ...json(fields) });

/** A stream operation's request on a fresh stream of its own client. */
function onOwnStream(request: (streamId: string) => RequestChange, before?: (c: ScenarioContext) => Promise<unknown>): Scenario {
  return async (c) => {
    const { credentials, streamId } = await withStream(c);
    await before?.(c);
    return merged(credentials, request(streamId));
  };
}

/** Every named example of every operation's responses, by operationId. */
/** An email one character longer than an email may be. */
const EMAIL_TOO_LONG = `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`;

export const scenarios: Record<string, Record<string, Scenario>> = {
  createSignInChallenge: {
    // The request exactly as the contract's example has it.
    SignInChallengeIssued: () => Promise.resolve({}),
    EmailMissing: () => Promise.resolve(json({})),
    EmailTooLong: () => Promise.resolve(json({ email: EMAIL_TOO_LONG })),
    EmailInvalid: () => Promise.resolve(json({ email: 'alice' })),
    // An address that has just been issued as many challenges as it may.
    TooManyChallenges: async ({ t }) => {
      const address = freshAddress();
      for (let i = 0; i < Number(CONTRACT_SERVER_ENV.RATE_LIMIT_CHALLENGES_PER_ADDRESS); i += 1) {
        const reply = await rawCall(t.url, 'POST', `${BASE}/session/challenge`, {
          headers: { 'X-Forwarded-For': address },
          body: { email: ALICE.email },
        });
        assert.equal(reply.status, 200);
      }
      return { headers: { 'X-Forwarded-For': address } };
    },
    BodyNotJson: () => Promise.resolve({ body: '{"email": ' }),
    BodyFieldNotString: () => Promise.resolve(json({ email: 42 })),
    BodyFieldUnexpected: () => Promise.resolve(json({ email: ALICE.email, password: 'secret' })),
    BodyMissing: () => Promise.resolve({ body: '' }),
    PayloadTooLarge: () => Promise.resolve(json({ email: 'x'.repeat(16 * 1024) })),
    // The example body, declared as text.
    UnsupportedMediaType: () => Promise.resolve({ headers: { 'Content-Type': 'text/plain' } }),
    InternalServerError: () => Promise.resolve({ storeFails: true }),
  },
  // The server requires a challenge (CONTRACT_SERVER_ENV): every body that gets past the
  // checks of its own fields carries a nonce.
  authorizeUser: {
    SignedIn: async (c) => json(await aliceAnswering(c)),
    BodyMissing: () => Promise.resolve({ body: '' }),
    BodyNotJson: () => Promise.resolve({ body: '{"email": ' }),
    BodyFieldMissing: () =>
      Promise.resolve(json({ email: ALICE_SIGN_IN.email, authPublicKeyHex: ALICE_SIGN_IN.authPublicKeyHex })),
    BodyFieldNotString: () => Promise.resolve(json({ ...ALICE_SIGN_IN, email: 42 })),
    BodyFieldUnexpected: () => Promise.resolve(json({ ...ALICE_SIGN_IN, password: 'secret' })),
    EmailTooLong: () => Promise.resolve(json({ ...ALICE_SIGN_IN, email: EMAIL_TOO_LONG })),
    EmailInvalid: () => Promise.resolve(json({ ...ALICE_SIGN_IN, email: 'alice' })),
    PayloadTooLarge: () => Promise.resolve(json({ ...ALICE_SIGN_IN, padding: 'x'.repeat(16 * 1024) })),
    // The example body, declared as text.
    UnsupportedMediaType: () => Promise.resolve({ headers: { 'Content-Type': 'text/plain' } }),
    SignatureNotHex: () => Promise.resolve(json({ ...ALICE_SIGN_IN, signature: 'not hex' })),
    PublicKeyInvalid: () => Promise.resolve(json({ ...ALICE_SIGN_IN, authPublicKeyHex: 'abcd' })),
    // The FIB guide's email-only body.
    SignInChallengeRequired: () => Promise.resolve({}),
    // Bob is never registered.
    UserNotFound: async (c) => {
      const email = 'bob@wonderland.space';
      return json({ ...ALICE_SIGN_IN, email, signature: BOB_SIGNATURE, nonce: await nonceFor(c, email) });
    },
    PublicKeyNotRegistered: async (c) => json({ ...(await aliceAnswering(c)), authPublicKeyHex: publicKeyHexOf(otherKey()) }),
    SignInNonceUnknown: async (c) => json({ ...(await aliceAnswering(c)), nonce: 'never-issued' }),
    SignInNonceOfOtherUser: async (c) => json({ ...(await aliceAnswering(c)), nonce: await nonceFor(c, 'bob@wonderland.space') }),
    SignInNonceUsed: async (c) => {
      const proof = await aliceAnswering(c);
      assert.equal((await c.t.signIn(proof)).status, 200);
      return json(proof);
    },
    // A challenge that expired a second ago, as the store keeps it.
    SignInNonceExpired: async (c) => {
      await registerAlice(c);
      const nonce = `expired-${randomUUID()}`;
      const expiresAt = Math.floor(Date.now() / 1000) - 1;
      await c.t.server.store.createSignInChallenge({ nonce, email: ALICE.email, expiresAt, usedAt: null });
      const signature = signMessage(signInChallengeMessage(ALICE.email, nonce, expiresAt), aliceKey);
      return json({ ...ALICE_SIGN_IN, signature, nonce });
    },
    // Bob's signature is of another message.
    SignatureNotVerified: async (c) => json({ ...(await aliceAnswering(c)), signature: BOB_SIGNATURE }),
    TooManyRefusedRequests: async (c) => merged(json(await aliceAnswering(c)), await overTheAddressLimit(c)),
    // Alice's signatures that do not verify, from one address, as many as it may send; then one more.
    TooManyFailedSignIns: async (c) => {
      const wrong = { ...(await aliceAnswering(c)), signature: BOB_SIGNATURE };
      const address = freshAddress();
      for (let i = 0; i < Number(CONTRACT_SERVER_ENV.RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL); i += 1) {
        const reply = await rawCall(c.t.url, 'POST', `${BASE}/session`, { headers: { 'X-Forwarded-For': address }, body: wrong });
        assert.equal(reply.status, 422, JSON.stringify(reply.body));
      }
      return merged(json(wrong), { headers: { 'X-Forwarded-For': address } });
    },
    InternalServerError: async (c) => ({ ...json(await aliceAnswering(c)), storeFails: true }),
  },
  refreshTokens: {
    ...bearerScenarios('refresh'),
    TokensRefreshed: async ({ t }) => bearer((await t.newSession()).refreshToken),
    RefreshTokenReused: refreshTokenUsedBefore,
    SessionLoggedOut: async ({ t }) => {
      const session = await t.newSession();
      assert.equal((await t.logout(session.accessToken)).status, 200);
      return bearer(session.refreshToken);
    },
  },
  endSession: {
    ...bearerScenarios('refresh'),
    SessionEndedByRefreshToken: async ({ t }) => bearer((await t.newSession()).refreshToken),
    RefreshTokenReused: refreshTokenUsedBefore,
    SessionLoggedOut: async ({ t }) => {
      const session = await t.newSession();
      const ended = await t.call('DELETE', `${BASE}/session`, { headers: { authorization: `Bearer ${session.refreshToken}` } });
      assert.equal(ended.status, 200);
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
    // The OAuth endpoint's own answers to the same requests (RFC 6749 §5.2).
    IntrospectionClientMissing: () =>
      Promise.resolve({
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: 'x.y.z' }).toString(),
      }),
    // client_secret_post with a registered id and another secret.
    IntrospectionClientInvalid: async ({ t }) => {
      const id = `rs-${randomUUID()}`;
      await new Clients(t.server.store, Date.now).add(id);
      return {
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: 'x.y.z', client_id: id, client_secret: randomUUID() }).toString(),
      };
    },
    TooManyRefusedRequests: async (c) => merged(await introspecting(c, { token: 'x.y.z' }), await overTheAddressLimit(c)),
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
    TooManyRefusedRequests: async (c) => merged(await following(c, 'wait=0'), await overTheAddressLimit(c)),
    TooManyLongPolls: (c) => holdingItsLongPoll(c),
    RevocationsSnapshot: (c) => following(c, 'wait=0'),
    RevocationsAfterCursor: async (c) => {
      const cursor = await newestCursor(c);
      assert.equal((await c.t.logout((await c.t.newSession()).accessToken)).status, 200);
      return following(c, `after=${cursor}&wait=5`);
    },
    RevocationsNone: async (c) => following(c, `after=${await newestCursor(c)}&wait=0`),
    // As `fib-auth keys revoke` withdraws a key: a stranger's, so that the server's own keep working.
    RevocationsKeyWithdrawn: async (c) => {
      const cursor = await newestCursor(c);
      const now = Math.floor(Date.now() / 1000);
      assert.ok(await c.t.server.store.withdrawKey(await kidOf(otherKey()), now, now + 86_700));
      return following(c, `after=${cursor}&wait=5`);
    },
    RevocationCursorInvalid: (c) => following(c, 'after=-1'),
    RevocationWaitInvalid: (c) => following(c, 'wait=31'),
    InternalServerError: async (c) => ({ ...(await following(c, 'wait=0')), storeFails: true }),
  },
  getLiveness: {
    ServiceLive: () => Promise.resolve({}),
  },
  getReadiness: {
    ServiceReady: () => Promise.resolve({}),
    StoreUnavailable: () => Promise.resolve({ storeFails: true }),
  },
  getJwks: {
    JwksSample: () => Promise.resolve({}),
  },
  getAuthorizationServerMetadata: {
    AuthorizationServerMetadataSample: () => Promise.resolve({}),
  },
  getSsfConfiguration: {
    SsfConfigurationSample: () => Promise.resolve({}),
  },
  createStream: {
    ...clientScenarios,
    ...ssfBodyScenarios,
    TooManyRefusedRequests: async (c) => merged(await clientCredentials(c), json({}), await overTheAddressLimit(c)),
    StreamCreatedForPoll: (c) => asClient(c, { delivery: { method: 'urn:ietf:rfc:8936' }, description: 'Orders service (Go)' }),
    StreamCreatedForPush: (c) =>
      asClient(c, {
        // A port nobody listens on: the pushes that follow fail at once, and are retried until the server stops.
        delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: 'http://127.0.0.1:9/ssf/events' },
        description: 'Billing service (Java)',
      }),
    StreamDeliveryInvalid: (c) => asClient(c, { delivery: { method: 'urn:ietf:rfc:8935' } }),
    StreamEventsNotList: (c) => asClient(c, { events_requested: 'session-revoked' }),
    BodyNotJson: async (c) => ({ ...(await clientCredentials(c)), body: '{"delivery": ' }),
    InternalServerError: async (c) => ({ ...(await asClient(c, {})), storeFails: true }),
  },
  readStreams: {
    ...streamScenarios(inQuery),
    StreamRead: onOwnStream(inQuery),
    StreamsListed: onOwnStream(() => ({ query: '' })),
  },
  replaceStream: {
    ...streamScenarios(inBody()),
    ...ssfBodyScenarios,
    StreamUpdated: onOwnStream(inBody({ description: 'Orders service (Go), production' })),
    StreamIdMissing: (c) => asClient(c, { description: 'Orders service (Go)' }),
  },
  updateStream: {
    ...streamScenarios(inBody()),
    ...ssfBodyScenarios,
    StreamUpdated: onOwnStream(inBody({ description: 'Orders service (Go), production' })),
    StreamIdMissing: (c) => asClient(c, { description: 'Orders service (Go)' }),
  },
  deleteStream: {
    ...streamScenarios(inQuery),
    [NO_CONTENT]: onOwnStream(inQuery),
    StreamIdQueryMissing: async (c) => ({ ...(await clientCredentials(c)), query: '' }),
  },
  readStreamStatus: {
    ...streamScenarios(inQuery),
    StreamEnabled: onOwnStream(inQuery),
    StreamIdQueryMissing: async (c) => ({ ...(await clientCredentials(c)), query: '' }),
  },
  updateStreamStatus: {
    ...streamScenarios(inBody({ status: 'paused' })),
    ...ssfBodyScenarios,
    StreamPaused: onOwnStream(inBody({ status: 'paused', reason: 'Receiver maintenance' })),
    StreamStatusInvalid: onOwnStream(inBody({ status: 'stopped' })),
  },
  verifyStream: {
    ...streamScenarios(inBody()),
    ...ssfBodyScenarios,
    [NO_CONTENT]: onOwnStream(inBody({ state: 'VGhpcyBpcyBh' })),
    StreamIdMissing: (c) => asClient(c, { state: 'VGhpcyBpcyBh' }),
  },
  pollStream: {
    ...streamScenarios(inPath({ returnImmediately: true })),
    ...ssfBodyScenarios,
    SetsDelivered: onOwnStream(inPath({ maxEvents: 10, returnImmediately: true }), async ({ t }) => {
      assert.equal((await t.logout((await t.newSession()).accessToken)).status, 200);
    }),
    NoSetsWaiting: onOwnStream(inPath({ returnImmediately: true })),
    PollMaxEventsInvalid: onOwnStream(inPath({ maxEvents: 5000 })),
    // The client's one long poll is the revocation feed's: a poll that may wait is one too many.
    TooManyLongPolls: async (c) => {
      const { credentials, streamId } = await withStream(c);
      await holdingItsLongPoll(c, credentials);
      return merged(credentials, inPath({ returnImmediately: false })(streamId));
    },
  },
};
