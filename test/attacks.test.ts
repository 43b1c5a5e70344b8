import assert from 'node:assert/strict';
import { createHmac, createPublicKey, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { errors } from 'jose';
import { failureOfJoseError, type TokenType } from '../src/domain/tokens.js';
import { refusal } from '../src/http/refusals.js';
import {
  assertExample,
  BASE,
  bearer,
  envelopeOf,
  startTestServer,
  type EnvelopeExampleName,
  type Reply,
  type TestServer,
} from './support/harness.js';
import { accessClaims, b64, decodePart, forge, otherKey, refreshClaims, serverKey, withSignature } from './support/tokens.js';
import { publicKeyHexOf, signInBody } from './support/vectors.js';

// RFC 8725 attacks that test/logout.test.ts does not already make (alg none/HS256/RS256 with
// an Ed25519 signature, missing kid, 63/65-byte signatures, one crit header, padding, two
// headers), sent to logout, refresh and DELETE /session: each gets its documented 401 or 422,
// never a 200 and never a 500. Then replays of sign-in bodies (docs/design.md §12), and floods
// that would fill the store or the limits' memory with challenges and long emails. Floods of
// refusals and spoofed X-Forwarded-For against the limits are in test/rate-limits.test.ts,
// slow clients in test/serial/slow-clients.test.ts.

/** Ed25519's group order: S and S + L verify alike under a lax verifier (signature malleability). */
const ED25519_ORDER = 2n ** 252n + 27742317777372353535851937790883648493n;

const unsigned = (header: unknown, payload: unknown) => `${b64(header)}.${b64(payload)}`;
const signedWith = (header: unknown, payload: unknown, signature: (input: Buffer) => Buffer) => {
  const input = unsigned(header, payload);
  return `${input}.${signature(Buffer.from(input)).toString('base64url')}`;
};

describe('RFC 8725 attacks on the bearer token', () => {
  let t: TestServer;
  let email: string;
  let issued: Record<TokenType, string>;
  let key: KeyObject;
  let serverPublicKey: KeyObject;
  let keyFetcher: Server;
  let fetches = 0;
  let keyUrl: string;

  before(async () => {
    t = await startTestServer();
    const s = await t.newSession();
    email = s.email;
    issued = { access: s.accessToken, refresh: s.refreshToken };
    key = serverKey(t);
    serverPublicKey = createPublicKey(key);
    // A key server the tokens point to: a header naming a key URL must never make the server fetch it.
    keyFetcher = createServer((_req, res) => {
      fetches += 1;
      res.end('{"keys":[]}');
    });
    await new Promise<void>((resolve) => keyFetcher.listen(0, '127.0.0.1', resolve));
    keyUrl = `http://127.0.0.1:${(keyFetcher.address() as AddressInfo).port}/jwks.json`;
  });
  after(async () => {
    await t.stop();
    await new Promise((resolve) => keyFetcher.close(resolve));
  });

  const headerOf = (type: TokenType) => decodePart(issued[type], 0);
  const claimsOf = (type: TokenType) => (type === 'access' ? accessClaims(email) : refreshClaims(email));
  const send = (type: TokenType, token: string): Promise<Reply> => (type === 'access' ? t.logout(token) : t.refresh(token));
  const wrongType = { access: 'NotAnAccessToken', refresh: 'NotARefreshToken' } as const;

  type Case = [
    name: string,
    token: (type: TokenType) => string | Promise<string>,
    example: EnvelopeExampleName | Record<TokenType, EnvelopeExampleName>,
  ];
  const cases: Case[] = [
    // The signature cannot be trusted: 422.
    [
      'alg none with 64 zero bytes as signature',
      (type) => `${unsigned({ ...headerOf(type), alg: 'none' }, claimsOf(type))}.${Buffer.alloc(64).toString('base64url')}`,
      'TokenAlgorithmRejected',
    ],
    [
      'HS256 keyed with the raw server public key (a 32-byte MAC)',
      (type) =>
        signedWith({ ...headerOf(type), alg: 'HS256' }, claimsOf(type), (input) =>
          createHmac('sha256', Buffer.from(serverPublicKey.export({ format: 'jwk' }).x!, 'base64url'))
            .update(input)
            .digest(),
        ),
      'TokenSignatureMalformed',
    ],
    [
      'HS512 keyed with the server public key PEM (a 64-byte MAC)',
      (type) =>
        signedWith({ ...headerOf(type), alg: 'HS512' }, claimsOf(type), (input) =>
          createHmac('sha512', serverPublicKey.export({ type: 'spki', format: 'pem' }))
            .update(input)
            .digest(),
        ),
      'TokenAlgorithmRejected',
    ],
    [
      'RS256 signed with an RSA key',
      (type) =>
        signedWith({ ...headerOf(type), alg: 'RS256' }, claimsOf(type), (input) =>
          sign('sha256', input, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey),
        ),
      'TokenSignatureMalformed',
    ],
    [
      'ES256 signed with a P-256 key (64 bytes, like Ed25519)',
      (type) =>
        signedWith({ ...headerOf(type), alg: 'ES256' }, claimsOf(type), (input) =>
          sign('sha256', input, {
            key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
            dsaEncoding: 'ieee-p1363',
          }),
        ),
      'TokenAlgorithmRejected',
    ],
    ['alg spelled eddsa', (type) => forge({ ...headerOf(type), alg: 'eddsa' }, claimsOf(type), key), 'TokenAlgorithmRejected'],
    ['alg as a list', (type) => forge({ ...headerOf(type), alg: ['EdDSA'] }, claimsOf(type), key), 'TokenAlgorithmRejected'],
    [
      'jwk: the attacker key embedded, under the server kid',
      (type) => {
        const attacker = otherKey();
        return forge({ ...headerOf(type), jwk: createPublicKey(attacker).export({ format: 'jwk' }) }, claimsOf(type), attacker);
      },
      'TokenHeaderUnsupported',
    ],
    [
      'jku naming a key set URL, signed by the server',
      (type) => forge({ ...headerOf(type), jku: keyUrl }, claimsOf(type), key),
      'TokenHeaderUnsupported',
    ],
    [
      'x5u naming a certificate URL, signed by the server',
      (type) => forge({ ...headerOf(type), x5u: keyUrl }, claimsOf(type), key),
      'TokenHeaderUnsupported',
    ],
    [
      'x5c and x5t, signed by the server',
      (type) => forge({ ...headerOf(type), x5c: ['MIIB'], x5t: 'abc' }, claimsOf(type), key),
      'TokenHeaderUnsupported',
    ],
    [
      'an unknown non-critical header, signed by the server',
      (type) => forge({ ...headerOf(type), 'x-tenant': 'acme' }, claimsOf(type), key),
      'TokenHeaderUnsupported',
    ],
    [
      'a __proto__ header, signed by the server',
      (type) =>
        signedWith(`{"__proto__":{"alg":"none"},${JSON.stringify(headerOf(type)).slice(1)}`, claimsOf(type), (input) =>
          sign(null, input, key),
        ),
      'TokenHeaderUnsupported',
    ],
    [
      'cty, zip and b64 headers, signed by the server',
      (type) => forge({ ...headerOf(type), cty: 'JWT', zip: 'DEF', b64: false }, claimsOf(type), key),
      'TokenHeaderUnsupported',
    ],
    [
      'crit naming b64, signed by the server',
      (type) => forge({ ...headerOf(type), b64: false, crit: ['b64'] }, claimsOf(type), key),
      'TokenHeaderUnsupported',
    ],
    [
      'an empty crit list, signed by the server',
      (type) => forge({ ...headerOf(type), crit: [] }, claimsOf(type), key),
      'TokenHeaderUnsupported',
    ],
    [
      'kid that is a path',
      (type) => forge({ ...headerOf(type), kid: '../../../../etc/passwd' }, claimsOf(type), key),
      'TokenKeyIdUnknown',
    ],
    [
      'kid that is a file URL',
      (type) => forge({ ...headerOf(type), kid: 'file:///dev/null' }, claimsOf(type), key),
      'TokenKeyIdUnknown',
    ],
    ['kid that is SQL', (type) => forge({ ...headerOf(type), kid: "x' OR '1'='1" }, claimsOf(type), key), 'TokenKeyIdUnknown'],
    ['kid that is empty', (type) => forge({ ...headerOf(type), kid: '' }, claimsOf(type), key), 'TokenKeyIdUnknown'],
    [
      'the server kid in upper case',
      (type) => forge({ ...headerOf(type), kid: String(headerOf(type).kid).toUpperCase() }, claimsOf(type), key),
      'TokenKeyIdUnknown',
    ],
    ['kid that is an object', (type) => forge({ ...headerOf(type), kid: { $ne: '' } }, claimsOf(type), key), 'TokenKeyIdMissing'],
    ['kid that is null', (type) => forge({ ...headerOf(type), kid: null }, claimsOf(type), key), 'TokenKeyIdMissing'],
    [
      'the signature of another token of this server',
      (type) => withSignature(forge(headerOf(type), claimsOf(type), key), Buffer.from(issued[type].split('.')[2], 'base64url')),
      'TokenSignatureInvalid',
    ],
    [
      'the header of one issued token with the payload of another',
      async (type) => {
        const other = await t.newSession();
        const [h, , sig] = issued[type].split('.');
        return `${h}.${(type === 'access' ? other.accessToken : other.refreshToken).split('.')[1]}.${sig}`;
      },
      'TokenSignatureInvalid',
    ],
    [
      'a malleated signature: S + L instead of S',
      (type) => {
        const signature = Buffer.from(issued[type].split('.')[2], 'base64url');
        const s = BigInt(`0x${Buffer.from(signature.subarray(32)).reverse().toString('hex')}`) + ED25519_ORDER;
        const malleated = Buffer.from(s.toString(16).padStart(64, '0'), 'hex').reverse();
        return withSignature(issued[type], Buffer.concat([signature.subarray(0, 32), malleated]));
      },
      'TokenSignatureInvalid',
    ],
    ['a signature of 88 characters', (type) => `${issued[type]}AA`, 'TokenSignatureMalformed'],
    // The token is authentic but not acceptable: 401.
    ['typ JWT', (type) => forge({ ...headerOf(type), typ: 'JWT' }, claimsOf(type), key), wrongType],
    ['typ missing', (type) => forge({ alg: 'EdDSA', kid: headerOf(type).kid }, claimsOf(type), key), wrongType],
    ['typ that is a number', (type) => forge({ ...headerOf(type), typ: 7 }, claimsOf(type), key), wrongType],
    [
      'exp that is a string',
      (type) => forge(headerOf(type), { ...claimsOf(type), exp: '9999999999' }, key),
      'TokenClaimsMissing',
    ],
    ['sub that is a number', (type) => forge(headerOf(type), { ...claimsOf(type), sub: 42 }, key), 'TokenClaimsMissing'],
    // The token cannot be parsed: 401.
    [
      'alg none with an empty signature segment',
      (type) => `${unsigned({ ...headerOf(type), alg: 'none' }, claimsOf(type))}.`,
      'TokenNotCompactJws',
    ],
    ['a payload that is a JSON string', (type) => forge(headerOf(type), JSON.stringify('admin'), key), 'TokenPartsNotJson'],
    ['a payload that is a JSON number', (type) => forge(headerOf(type), '42', key), 'TokenPartsNotJson'],
    ['a payload that is JSON true', (type) => forge(headerOf(type), 'true', key), 'TokenPartsNotJson'],
    ['a payload that is empty', (type) => forge(headerOf(type), '', key), 'TokenNotCompactJws'],
    ['a header that is a JSON array', (type) => forge([headerOf(type)], claimsOf(type), key), 'TokenPartsNotJson'],
    [
      'a header of 4n+1 characters, which Node would decode and jose would not',
      (type) => {
        let json = JSON.stringify(headerOf(type));
        while (b64(json).length % 4 !== 0) json += ' ';
        return forge(json, claimsOf(type), key).replace('.', 'A.');
      },
      'TokenNotCompactJws',
    ],
    ['a signature of 85 characters', (type) => issued[type].slice(0, -1), 'TokenNotCompactJws'],
    ['padding inside the header segment', (type) => issued[type].replace('.', '==.'), 'TokenNotCompactJws'],
    ['a slash in the signature', (type) => `${issued[type].slice(0, -1)}/`, 'TokenNotCompactJws'],
    ['a percent-encoded dot', (type) => issued[type].replace('.', '%2E'), 'TokenNotCompactJws'],
    ['a token of 15000 characters, under the header limit', (type) => `${issued[type]}${'A'.repeat(15000)}`, 'TokenTooLong'],
  ];

  const targets: [operation: string, type: TokenType, send: (token: string) => Promise<Reply>][] = [
    ['logout', 'access', (token) => send('access', token)],
    ['refresh', 'refresh', (token) => send('refresh', token)],
    ['DELETE /session', 'refresh', (token) => t.call('DELETE', `${BASE}/session`, { headers: bearer(token) })],
  ];
  for (const [operation, type, sendTo] of targets) {
    describe(`sent to ${operation}`, () => {
      for (const [name, token, expected] of cases) {
        test(name, async () => {
          await assertExample(await sendTo(await token(type)), typeof expected === 'string' ? expected : expected[type]);
        });
      }
    });
  }

  test('a key URL in a header is never fetched', () => {
    assert.equal(fetches, 0);
  });

  test('a token of exactly 4096 characters is read; one more is too long', async () => {
    const claims = accessClaims(email);
    const padded = (length: number) => forge(headerOf('access'), { ...claims, pad: 'x'.repeat(length) }, key);
    let length = Math.floor(((4096 - padded(0).length) * 3) / 4) - 3;
    while (padded(length).length < 4096) length += 1;
    const token = padded(length);
    assert.equal(token.length, 4096);
    // Authentic and parsed: it gets as far as the session, which this server never issued.
    await assertExample(await t.logout(token), 'SessionEnded');
  });

  describe('the Authorization header itself', () => {
    test('one header listing two credentials, or a second header that is empty', async () => {
      const token = issued.access;
      await assertExample(
        await t.call('POST', `${BASE}/logout`, { headers: { authorization: `Bearer ${token}, Bearer ${token}` } }),
        'AuthorizationCredentialCount',
      );
      await assertExample(
        await t.call('POST', `${BASE}/logout`, { headers: { authorization: [`Bearer ${token}`, ''] } }),
        'AuthorizationRepeated',
      );
      await assertExample(
        await t.call('POST', `${BASE}/logout`, { headers: { authorization: [`Bearer ${token}`, 'Basic YTpi'] } }),
        'AuthorizationRepeated',
      );
    });

    test('a control character is refused by the HTTP parser: 400 in the envelope, never a 200', async () => {
      for (const control of ['\x00', '\x01', '\x1b', '\x7f', '\r', '\x0b']) {
        const reply = await t.send(
          `POST ${BASE}/logout HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${issued.access}${control}\r\nConnection: close\r\n\r\n`,
        );
        assert.deepEqual(
          envelopeOf(reply).status,
          { code: 400, name: 'Bad Request', message: 'The request is not valid HTTP/1.1.' },
          JSON.stringify(control),
        );
      }
    });

    test('a tab or a byte over 0x7f inside the token reaches the parser of the token: 401', async () => {
      const [h, p, s] = issued.access.split('.');
      for (const token of [`${h}.${p}\t.${s}`, `${h}.${p}.${s}\xe9`]) {
        await assertExample(
          await t.send(`POST ${BASE}/logout HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`),
          'TokenNotCompactJws',
        );
      }
    });
  });

  test('after every attack the genuine tokens still work', async () => {
    const next = await t.refresh(issued.refresh);
    assert.equal(next.status, 200);
    await assertExample(await t.call('POST', `${BASE}/logout`, { headers: bearer(next.body.data.accessToken) }), 'LoggedOut');
  });
});

describe('replaying a sign-in', () => {
  let optional: TestServer;
  let required: TestServer;
  before(async () => {
    optional = await startTestServer();
    required = await startTestServer({ SIGN_IN_CHALLENGE: 'required' });
  });
  after(async () => {
    await optional.stop();
    await required.stop();
  });

  /** A user of `t` and the bodies an onlooker saw: their email-only sign-in and a challenged one. */
  async function victim(t: TestServer) {
    const key = generateKeyPairSync('ed25519').privateKey;
    const email = `victim-${randomUUID()}@example.test`;
    await t.addUser(email, publicKeyHexOf(key));
    return { email, key, emailOnly: signInBody(email, key) };
  }

  test('an email-only body seen once signs in again and again where challenges are optional, the risk the README names', async () => {
    const { emailOnly } = await victim(optional);
    for (let i = 0; i < 3; i += 1) assert.equal((await optional.signIn(emailOnly)).status, 200);
  });

  test('with challenges required, the same body signs in nobody', async () => {
    const { emailOnly } = await victim(required);
    await assertExample(await required.signIn(emailOnly), 'SignInChallengeRequired');
    // Nor does it answer a challenge the onlooker asked for: its signature is of the email, not of the message.
    const { nonce } = (await required.challenge(emailOnly.email)).body.data;
    await assertExample(await required.signIn({ ...emailOnly, nonce }), 'SignatureNotVerified');
  });

  test('a challenged body seen once: replayed, respelled or stripped of its nonce, it signs in nobody', async () => {
    for (const t of [optional, required]) {
      const { email, key } = await victim(t);
      const seen = await t.challengedProof(email, key);
      assert.equal((await t.signIn(seen)).status, 200);
      await assertExample(await t.signIn(seen), 'SignInNonceUsed');
      await assertExample(
        await t.signIn({ ...seen, email: email.toUpperCase(), signature: seen.signature.toUpperCase() }),
        'SignInNonceUsed',
      );
      const { nonce: _nonce, ...stripped } = seen;
      await assertExample(
        await t.signIn(stripped),
        t === required ? 'SignInChallengeRequired' : 'SignatureNotVerified', // a message's signature is no email's
      );
      // Its signature does not answer a fresh challenge either.
      const { nonce } = (await t.challenge(email)).body.data;
      await assertExample(await t.signIn({ ...seen, nonce }), 'SignatureNotVerified');
    }
  });

  test("an attacker's own nonce does not sign a victim in, and the attacker's challenges for the victim's email do not stop theirs", async () => {
    const attacker = await victim(required);
    const target = await victim(required);
    const own = await required.challengedProof(attacker.email, attacker.key);
    // The victim's public key is no secret.
    await assertExample(
      await required.signIn({ ...own, email: target.email, authPublicKeyHex: publicKeyHexOf(target.key) }),
      'SignInNonceOfOtherUser',
    );
    const theirs = await required.challengedProof(target.email, target.key);
    for (let i = 0; i < 5; i += 1) assert.equal((await required.challenge(target.email)).status, 200);
    await assertExample(await required.signIn({ ...theirs, signature: own.signature }), 'SignatureNotVerified');
    assert.equal((await required.signIn(theirs)).status, 200);
  });

  test('nonces that are SQL, a path, or 15,000 characters are nonces nobody issued', async () => {
    const { email, key } = await victim(required);
    const proof = await required.challengedProof(email, key);
    for (const nonce of ["' OR '1'='1", '../../etc/passwd', '%00', 'A'.repeat(15_000)]) {
      await assertExample(await required.signIn({ ...proof, nonce }), 'SignInNonceUnknown');
    }
    assert.equal((await required.signIn(proof)).status, 200);
  });
});

describe('filling the store and memory', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ RATE_LIMIT_CHALLENGES_PER_ADDRESS: '30' }); // the default
  });
  after(() => t.stop());

  test('a flood of 1,000 challenges from one address, 20 at a time, each for another 254-character email: 30 are stored, 970 answered 429', async () => {
    let sent = 0;
    const statuses = new Map<number, number>();
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (sent < 1000) {
          sent += 1;
          const email = `${randomUUID()}${'x'.repeat(28)}@${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(61)}`;
          const { status } = await t.call('POST', `${BASE}/session/challenge`, { body: { email } });
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }
      }),
    );
    assert.deepEqual(
      [...statuses].sort(([a], [b]) => a - b),
      [
        [200, 30],
        [429, 970],
      ],
    );
    assert.equal(await t.server.store.purgeExpiredSignInChallenges(2 ** 31 - 1), 30, 'challenges stored');
  });

  test('sign-ins and challenges naming 16,000-character emails are 400 before any lookup, counter or row', async () => {
    const email = `${'a'.repeat(16_000)}@wonderland.space`;
    const key = generateKeyPairSync('ed25519').privateKey;
    // From an address of its own: the flood above used up the challenges of 127.0.0.1.
    const from = (path: string, body: object) => t.call('POST', `${BASE}${path}`, { body, localAddress: '127.0.0.2' });
    for (let i = 0; i < 20; i += 1) {
      await assertExample(await from('/session', signInBody(`${i}${email}`, key)), 'EmailTooLong');
      await assertExample(await from('/session/challenge', { email: `${i}${email}` }), 'EmailTooLong');
    }
  });
});

test('every error class of jose answers 401 or 422; any other error stays a 500', () => {
  const classes = Object.entries(errors);
  assert.ok(classes.length >= 15, `${classes.length} classes`);
  for (const [name, JoseError] of classes) {
    for (const type of ['access', 'refresh'] as const) {
      const { status: code } = refusal(
        failureOfJoseError(new (JoseError as new (message: string) => Error)('refused'), type),
        'id',
      );
      assert.ok(code === 401 || code === 422, `${name} for a ${type} token: ${code}`);
    }
  }
  assert.equal(refusal(failureOfJoseError(new TypeError('a bug'), 'access'), 'id').status, 500);
});
