import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { after, before, describe, test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { isEmail } from '../src/domain/email.js';
import {
  assertExample,
  BASE,
  bodyOf,
  envelopeOf,
  type Reply,
  signInAlice,
  startTestServer,
  type TestServer,
} from './support/harness.js';
import { b64, decodePart, forge, otherKey, respellings, serverKey } from './support/tokens.js';
import { ALICE, ALICE_SIGN_IN, signMessage } from './support/vectors.js';

// Property-based fuzzing over what a client controls: the Authorization header of logout and
// of DELETE /session, the body of sign-in, with and without a challenge, and of the challenge
// (emails of every length and form among them). Every answer must be one the contract
// documents, in the envelope (the harness checks each reply against the contract), never a
// 500, and the server keeps serving.
// Each property runs MIN_RUNS times, then more up to RUNS while TIME_LIMIT_MS lasts; FUZZ_SEED=n
// repeats a run (the seed is printed with every run and in every failure).

const RUNS = 400;
const MIN_RUNS = 100;
const TIME_LIMIT_MS = 4000;
const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : (Math.random() * 2 ** 31) | 0;

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const HEX = '0123456789abcdefABCDEF';

/** Runs a property within the bounds above; fails with fast-check's report, which names the seed. */
async function fuzz<T>(ctx: TestContext, arbitrary: fc.Arbitrary<T>, check: (value: T) => Promise<void>): Promise<void> {
  let runs = 0;
  ctx.diagnostic(`seed ${seed} (FUZZ_SEED=${seed} repeats this run)`);
  const property = fc.asyncProperty(arbitrary, async (value) => {
    runs += 1;
    await check(value);
  });
  // MIN_RUNS always run, however busy the machine (test files run side by side); the rest
  // only while time is left.
  await fc.assert(property, { seed, numRuns: MIN_RUNS });
  await fc.assert(property, {
    seed: seed + 1,
    numRuns: RUNS - MIN_RUNS,
    interruptAfterTimeLimit: TIME_LIMIT_MS,
    markInterruptAsFailure: false,
  });
  ctx.diagnostic(`${runs} runs`);
}

/** Mostly the value that passes a check, sometimes one that does not: so runs reach the later checks. */
const mostly = <T>(good: T, bad: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 3, arbitrary: fc.constant(good) }, { weight: 1, arbitrary: bad });
const json = fc.jsonValue({ maxDepth: 2 });
const hexText = (lengths: number[]) =>
  fc
    .constantFrom(...lengths)
    .chain((length) => fc.string({ unit: fc.constantFrom(...HEX), minLength: length, maxLength: length }));
/** Characters Node's client can put in a header value (it refuses the rest before sending). */
const headerText = fc.string({
  unit: fc.oneof(
    { weight: 9, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) },
    { weight: 1, arbitrary: fc.constantFrom('\t', '\xa0', '\xe9', '\xff') },
  ),
  maxLength: 200,
});

/**
 * Emails and near misses: generated addresses, lengths around the 254-character bound, and odd
 * forms (an `@` anywhere, non-ASCII, control characters, quotes, brackets, empty labels).
 */
const emailish = fc.oneof(
  fc.emailAddress(),
  fc.integer({ min: 240, max: 270 }).map((length) => `${'a'.repeat(length - 17)}@wonderland.space`),
  fc
    .tuple(fc.string({ maxLength: 12 }), fc.constantFrom('@', '@@', ''), fc.string({ maxLength: 12 }))
    .map((parts) => parts.join('')),
  fc.constantFrom(
    'alïce@wonderland.space',
    'alice@wonderland.space\n',
    '"alice"@wonderland.space',
    'alice@[127.0.0.1]',
    'alice@-wonderland.space',
    'alice@wonderland..space',
  ),
);

/** Whether `email` is refused 400 for being one no schema takes, in the contract's words. */
const refusedAsNoEmail = (reply: Reply) =>
  reply.status === 400 &&
  /^The request body field 'email' must (NOT have more than 254 characters|match format "email")\.$/.test(
    envelopeOf(reply).status.message,
  );

/** The parsed body, when it is a JSON object. */
function objectOf(text: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The email rule holds both ways: a body naming no email in `email` is answered 400, and the
 * 400 naming the email's length or form is for such a body only.
 */
function assertEmailRule(text: string, reply: Reply): void {
  const email = objectOf(text)?.email;
  if (typeof email !== 'string' || [413, 415].includes(reply.status)) return;
  if (!isEmail(email)) assert.equal(reply.status, 400, `${JSON.stringify(email)}: ${reply.status}`);
  if (refusedAsNoEmail(reply)) assert.ok(!isEmail(email), `${JSON.stringify(email)} is an email`);
}

/** Mostly JSON, sometimes a variant of it or another media type. */
const jsonContentType = mostly(
  'application/json',
  fc.constantFrom(
    'application/json; charset=utf-8',
    'APPLICATION/JSON',
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/jwt',
  ),
);

/** One claim's value, mostly as it was. */
const claimAround = (value: unknown) =>
  mostly(
    value,
    typeof value === 'number'
      ? fc.oneof(fc.integer(), fc.double(), json)
      : fc.oneof(fc.string(), fc.uuid(), fc.emailAddress(), json),
  );

/**
 * Authorization header values around an issued token: tokens forged with its header and claims
 * (mostly as they were) under `keys`, the token edited a character at a time, respelled, or
 * random, with schemes, separators and repeated headers of every kind; sometimes no header.
 */
function authorizationAround(issued: string, keys: KeyObject[]): fc.Arbitrary<string | string[] | undefined> {
  const header = decodePart(issued, 0);
  const claims = decodePart(issued, 1);
  const forgedHeader = fc
    .tuple(
      fc.record({
        alg: mostly('EdDSA', fc.oneof(fc.constantFrom('none', 'None', 'HS256', 'RS256', 'ES256', 'Ed25519', undefined), json)),
        typ: mostly(header.typ, fc.oneof(fc.constantFrom('at+jwt', 'refresh+jwt', 'JWT', 'application/at+jwt', undefined), json)),
        kid: mostly(header.kid, fc.oneof(fc.string(), json, fc.constant(undefined))),
      }),
      mostly(
        {},
        fc.dictionary(fc.constantFrom('jku', 'jwk', 'x5u', 'x5c', 'crit', 'b64', 'zip', 'cty', 'x-tenant'), json, {
          minKeys: 1,
          maxKeys: 2,
        }),
      ),
    )
    .map(([known, extra]) => ({ ...known, ...(extra as object) }));
  const forgedClaims = fc.record(Object.fromEntries(Object.entries(claims).map(([name, value]) => [name, claimAround(value)])));
  const forged = fc
    .tuple(
      forgedHeader,
      fc.oneof({ weight: 5, arbitrary: forgedClaims }, { weight: 1, arbitrary: json }),
      fc.constantFrom(...keys),
    )
    .map(([h, p, key]) => forge(h, p, key));
  const edited = fc
    .tuple(
      fc.nat({ max: issued.length }),
      fc.constantFrom(...`${BASE64URL}.=+/ `),
      fc.constantFrom('replace', 'insert', 'delete', 'cut'),
    )
    .map(([at, char, edit]) => {
      if (edit === 'cut') return issued.slice(0, at);
      return issued.slice(0, at) + (edit === 'delete' ? '' : char) + issued.slice(at + (edit === 'insert' ? 0 : 1));
    });
  const segment = fc.string({ unit: fc.constantFrom(...BASE64URL), maxLength: 120 });
  const token = fc.oneof(
    { weight: 4, arbitrary: forged },
    { weight: 2, arbitrary: edited },
    { weight: 1, arbitrary: fc.constantFrom(issued, ...respellings(issued, 2)) },
    { weight: 1, arbitrary: fc.tuple(segment, segment, segment).map((parts) => parts.join('.')) },
    { weight: 1, arbitrary: fc.tuple(json, json, segment).map(([h, p, s]) => `${b64(h)}.${b64(p)}.${s}`) },
    { weight: 1, arbitrary: headerText },
  );
  const value = fc.oneof(
    { weight: 4, arbitrary: token.map((text) => `Bearer ${text}`) },
    { weight: 1, arbitrary: token },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constantFrom('Bearer', 'bearer', 'BEARER', 'Basic', 'Token', 'Bearer,', ''),
          fc.constantFrom(' ', '  ', '\t'),
          token,
          fc.constantFrom('', ' ', '\t', ' x'),
        )
        .map((parts) => parts.join('')),
    },
    { weight: 1, arbitrary: headerText },
  );
  return fc.oneof(
    { weight: 8, arbitrary: value },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.array(value, { minLength: 2, maxLength: 3 }) },
  );
}

describe('fuzzing', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ LOG_LEVEL: 'warn' });
  });
  after(() => t.stop());

  test('the logout Authorization header: 401, 404 or 422 for anything but a live token', async (ctx) => {
    // The base token is logged out, so no variation of it may get a 200.
    const { accessToken } = await t.newSession();
    await assertExample(await t.logout(accessToken), 'LoggedOut');
    await fuzz(ctx, authorizationAround(accessToken, [serverKey(t), otherKey()]), async (values) => {
      const reply = await t.call('POST', `${BASE}/logout`, { headers: values === undefined ? {} : { authorization: values } });
      assert.ok([401, 404, 422].includes(reply.status), `${reply.status} ${envelopeOf(reply).status.message}`);
    });
    // Still serving: a live token logs out.
    await assertExample(await t.logout((await t.newSession()).accessToken), 'LoggedOut');
  });

  test('the DELETE /session Authorization header: 401, 404 or 422 for anything but a live refresh token', async (ctx) => {
    // The base session is over, so no variation of its refresh token may get a 200.
    const { refreshToken } = await t.newSession();
    const endSession = (values: string | string[] | undefined) =>
      t.call('DELETE', `${BASE}/session`, { headers: values === undefined ? {} : { authorization: values } });
    await assertExample(await endSession(`Bearer ${refreshToken}`), 'SessionEndedByRefreshToken');
    await fuzz(ctx, authorizationAround(refreshToken, [serverKey(t), otherKey()]), async (values) => {
      const reply = await endSession(values);
      assert.ok([401, 404, 422].includes(reply.status), `${reply.status} ${envelopeOf(reply).status.message}`);
    });
    await assertExample(await endSession(`Bearer ${(await t.newSession()).refreshToken}`), 'SessionEndedByRefreshToken');
  });

  test('the sign-in body: a documented status, and a 200 only for a valid proof', async (ctx) => {
    await signInAlice(t);
    const proof = fc
      .tuple(
        fc.record(
          {
            email: mostly(ALICE.email, fc.oneof(emailish, fc.constant(ALICE.email.toUpperCase()), fc.string(), json)),
            signature: mostly(
              ALICE.signature,
              fc.oneof(hexText([0, 2, 126, 128, 130]), fc.constant(ALICE.signature.toUpperCase()), fc.string(), json),
            ),
            authPublicKeyHex: mostly(
              ALICE.publicKeyHex,
              fc.oneof(hexText([0, 62, 64, 66]), fc.constant(ALICE.publicKeyHex.toUpperCase()), fc.string(), json),
            ),
          },
          { requiredKeys: [] },
        ),
        mostly({}, fc.dictionary(fc.string({ maxLength: 10 }), json, { minKeys: 1, maxKeys: 2 })),
      )
      .map(([fields, extra]) => JSON.stringify({ ...fields, ...(extra as object) }));
    const aliceText = JSON.stringify(ALICE_SIGN_IN);
    const body = fc.oneof(
      { weight: 6, arbitrary: proof },
      { weight: 1, arbitrary: json.map((value) => JSON.stringify(value)) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 300 }) },
      {
        weight: 1,
        arbitrary: fc
          .tuple(fc.nat({ max: aliceText.length - 1 }), fc.string({ minLength: 1, maxLength: 3 }))
          .map(([at, text]) => aliceText.slice(0, at) + text + aliceText.slice(at + 1)),
      },
      {
        weight: 1,
        arbitrary: fc
          .integer({ min: 16 * 1024 - 200, max: 16 * 1024 + 50 })
          .map((length) => JSON.stringify({ ...ALICE_SIGN_IN, email: 'a'.repeat(length) })),
      },
    );
    await fuzz(ctx, fc.tuple(body, jsonContentType), async ([text, type]) => {
      const reply = await t.call('POST', `${BASE}/session`, { body: text, headers: { 'content-type': type as string } });
      assert.ok([200, 400, 404, 413, 415, 422].includes(reply.status), `${reply.status} ${envelopeOf(reply).status.message}`);
      assertEmailRule(text, reply);
      // A 400 names what is wrong with the body in the contract's words, never a parser's.
      if (reply.status === 400)
        assert.match(
          envelopeOf(reply).status.message,
          /^The request body (is not valid JSON|is required|(field '.*' )?must .*)\.$/s,
        );
      if (reply.status === 200) {
        const sent = JSON.parse(text) as Record<string, string>;
        assert.deepEqual(
          {
            email: sent.email,
            signature: sent.signature.toLowerCase(),
            authPublicKeyHex: sent.authPublicKeyHex.toLowerCase(),
            fields: Object.keys(sent).length,
          },
          { ...ALICE_SIGN_IN, fields: 3 },
          'only a valid proof signs in',
        );
      }
    });
    assert.equal((await t.signIn(ALICE_SIGN_IN)).status, 200, 'still serving');
  });

  test('the challenge body: a documented status, and a 200 only for an object holding exactly an email of at most 254 characters', async (ctx) => {
    const body = fc.oneof(
      {
        weight: 6,
        arbitrary: fc
          .tuple(
            fc.record({ email: mostly(ALICE.email, fc.oneof(emailish, fc.string(), json)) }, { requiredKeys: [] }),
            mostly({}, fc.dictionary(fc.string({ maxLength: 10 }), json, { minKeys: 1, maxKeys: 2 })),
          )
          .map(([fields, extra]) => JSON.stringify({ ...fields, ...(extra as object) })),
      },
      { weight: 1, arbitrary: json.map((value) => JSON.stringify(value)) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 300 }) },
      {
        weight: 1,
        arbitrary: fc
          .integer({ min: 16 * 1024 - 50, max: 16 * 1024 + 50 })
          .map((length) => JSON.stringify({ email: 'a'.repeat(length) })),
      },
    );
    await fuzz(ctx, fc.tuple(body, jsonContentType), async ([text, type]) => {
      const reply = await t.call('POST', `${BASE}/session/challenge`, {
        body: text,
        headers: { 'content-type': type as string },
      });
      assert.ok([200, 400, 413, 415].includes(reply.status), `${reply.status} ${envelopeOf(reply).status.message}`);
      assertEmailRule(text, reply);
      if (reply.status === 200) {
        const sent = JSON.parse(text) as Record<string, unknown>;
        assert.deepEqual(Object.keys(sent), ['email']);
        assert.ok(isEmail(String(sent.email)), `${JSON.stringify(sent.email)} got a challenge`);
        assert.ok(
          (await bodyOf(reply, 'createSignInChallenge', 200)).data.message.includes(
            `\nEmail: ${String(sent.email).toLowerCase()}\n`,
          ),
        );
      }
    });
  });

  test('a challenged sign-in body: a 200 only for the proof as issued, and only once', async (ctx) => {
    const { email, key } = await t.newSession();
    type Proof = Awaited<ReturnType<TestServer['challengedProof']>>;
    type Field = keyof Proof;
    const fields: Field[] = ['email', 'signature', 'authPublicKeyHex', 'nonce'];
    const change = fc.oneof(
      fc.constant({ kind: 'none' as const }),
      fc.constant({ kind: 'shouted' as const }),
      fc.record({
        kind: fc.constant('replaced' as const),
        field: fc.constantFrom(...fields),
        value: fc.oneof(fc.string(), json, hexText([64, 128]), fc.constant('')),
      }),
      fc.record({ kind: fc.constant('dropped' as const), field: fc.constantFrom(...fields) }),
      fc.constant({ kind: 'emailSigned' as const }),
      fc.constant({ kind: 'otherNonce' as const }),
    );
    await fuzz(ctx, change, async (c) => {
      const proof = await t.challengedProof(email, key);
      const body: Record<string, unknown> = { ...proof };
      if (c.kind === 'shouted') body.email = email.toUpperCase();
      if (c.kind === 'replaced') body[c.field] = c.value;
      if (c.kind === 'dropped') delete body[c.field];
      if (c.kind === 'emailSigned') body.signature = signMessage(email, key);
      if (c.kind === 'otherNonce') body.nonce = (await t.challengedProof(email, key)).nonce;
      // Only strings can equal the proof (String() of a value such as {"toString": 0} throws).
      const same = (field: Field) => typeof body[field] === 'string' && body[field].toLowerCase() === proof[field].toLowerCase();
      const unchanged = fields.every(same);
      const reply = await t.signIn(body);
      assert.ok([200, 400, 404, 422].includes(reply.status), `${reply.status} ${reply.body.status.message}`);
      assert.equal(reply.status === 200, unchanged, `${JSON.stringify(c)}: ${reply.status} ${reply.body.status.message}`);
      if (unchanged) await assertExample(await t.signIn(body), 'SignInNonceUsed');
    });
  });
});
