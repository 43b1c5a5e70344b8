import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertExample, BASE, envelopeOf, startTestServer, type TestServer } from './support/harness.js';
import { decodePart } from './support/tokens.js';
import { ALICE, ALICE_SIGN_IN, BOB_SIGNATURE, ed25519FromSeed, signMessage, signInBody } from './support/vectors.js';

describe('sign-in', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
    await t.addUser(ALICE.email, ALICE.publicKeyHex, 'ROLE_ADMIN');
  });
  after(() => t.stop());

  test("signs Alice in with the README's test vector", async () => {
    const reply = await t.signIn(ALICE_SIGN_IN);
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body.status, { code: 200, name: 'OK', message: 'User has been successfully authorized.' });
    assert.equal(reply.body.data.expirationTime, 300);
    const claims = decodePart(reply.body.data.accessToken, 1);
    assert.equal(claims.sub, ALICE.email);
    assert.equal(claims.role, 'ROLE_ADMIN');
  });

  test('matches the email case-insensitively; the signature covers the email as sent', async () => {
    const shouted = 'ALICE@Wonderland.Space';
    const key = ed25519FromSeed(ALICE.privateKeyHex);
    const reply = await t.signIn({
      email: shouted,
      signature: signMessage(shouted, key),
      authPublicKeyHex: ALICE.publicKeyHex.toUpperCase(),
    });
    assert.equal(reply.status, 200);
    assert.equal(decodePart(reply.body.data.accessToken, 1).sub, ALICE.email);
    await assertExample(await t.signIn({ ...ALICE_SIGN_IN, email: shouted }), 'SignatureNotVerified');
  });

  test('400 for a body that is not JSON or breaks the schema', async () => {
    await assertExample(await t.call('POST', `${BASE}/session`, { body: '{"email":' }), 'BodyNotJson');
    await assertExample(await t.call('POST', `${BASE}/session`, { body: '' }), 'BodyMissing');
    await assertExample(
      await t.call('POST', `${BASE}/session`, { headers: { 'content-type': 'application/json' } }),
      'BodyMissing',
    );
    await assertExample(await t.call('POST', `${BASE}/session`), 'BodyMissing');
    await assertExample(await t.signIn({ email: ALICE.email, authPublicKeyHex: ALICE.publicKeyHex }), 'BodyFieldMissing');
    await assertExample(await t.signIn({ ...ALICE_SIGN_IN, email: 7 }), 'BodyFieldNotString');
    await assertExample(await t.signIn({ ...ALICE_SIGN_IN, password: 'hunter2' }), 'BodyFieldUnexpected');
    // Decoded once: a JSON string holding a valid request is a string, not a request.
    for (const body of ['[]', 'null', '"alice"', '42', 'true', JSON.stringify(JSON.stringify(ALICE_SIGN_IN))]) {
      const reply = await t.call('POST', `${BASE}/session`, { body });
      assert.deepEqual(
        envelopeOf(reply).status,
        { code: 400, name: 'Bad Request', message: 'The request body must be object.' },
        body,
      );
    }
  });

  test("400 for an email over 254 characters or not of an email's form, before any user is looked up", async () => {
    const longest = `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    await assertExample(await t.signIn({ ...ALICE_SIGN_IN, email: longest }), 'UserNotFound');
    await assertExample(await t.signIn({ ...ALICE_SIGN_IN, email: `x${longest}` }), 'EmailTooLong');
    await assertExample(await t.signIn({ ...ALICE_SIGN_IN, email: `${ALICE.email}${' '.repeat(10_000)}` }), 'EmailTooLong');
    for (const email of ['alice', 'alice@wonderland.space\n', 'alïce@wonderland.space', `${ALICE.email}@wonderland.space`])
      await assertExample(await t.signIn({ ...ALICE_SIGN_IN, email }), 'EmailInvalid');
  });

  test('413 for a body over 16 KiB, 415 for another media type', async () => {
    const big = { ...ALICE_SIGN_IN, email: 'a'.repeat(17 * 1024) };
    await assertExample(await t.call('POST', `${BASE}/session`, { body: big }), 'PayloadTooLarge');
    await assertExample(
      await t.call('POST', `${BASE}/session`, { body: JSON.stringify(ALICE_SIGN_IN), headers: { 'content-type': 'text/plain' } }),
      'UnsupportedMediaType',
    );
    await assertExample(
      await t.call('POST', `${BASE}/session`, {
        body: 'email=a',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      }),
      'UnsupportedMediaType',
    );
    const charset = await t.call('POST', `${BASE}/session`, {
      body: ALICE_SIGN_IN,
      headers: { 'content-type': 'application/json; charset=utf-8' },
    });
    assert.equal(charset.status, 200);
  });

  test('422 for a signature that is not 128 hex characters', async () => {
    await assertExample(await t.signIn({ ...ALICE_SIGN_IN, signature: ALICE.signature.slice(2) }), 'SignatureNotHex');
    await assertExample(await t.signIn({ ...ALICE_SIGN_IN, signature: 'zz' + ALICE.signature.slice(2) }), 'SignatureNotHex');
  });

  test('422 for a public key that is not 64 hex characters of a valid Ed25519 key, before looking up the user', async () => {
    await assertExample(await t.signIn({ ...ALICE_SIGN_IN, authPublicKeyHex: ALICE.publicKeyHex.slice(2) }), 'PublicKeyInvalid');
    await assertExample(await t.signIn({ ...ALICE_SIGN_IN, authPublicKeyHex: '02' + '00'.repeat(31) }), 'PublicKeyInvalid');
    await assertExample(
      await t.signIn({ ...ALICE_SIGN_IN, email: 'nobody@wonderland.space', authPublicKeyHex: 'xx' }),
      'PublicKeyInvalid',
    );
  });

  test('404 when no user is registered under the email', async () => {
    await assertExample(
      await t.signIn({ ...ALICE_SIGN_IN, email: 'bob@wonderland.space', signature: BOB_SIGNATURE }),
      'UserNotFound',
    );
  });

  test("422 when the key is not the user's or the signature does not verify", async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const stranger = generateKeyPairSync('ed25519').privateKey;
    await assertExample(await t.signIn(signInBody(ALICE.email, stranger)), 'PublicKeyNotRegistered');
    await assertExample(await t.signIn({ ...ALICE_SIGN_IN, signature: BOB_SIGNATURE }), 'SignatureNotVerified');
  });
});
