import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { after, before, describe, test as testOn } from 'node:test';
import { manualClock } from './support/clock.js';
import { DATABASES } from './support/databases.js';
import {
  assertExample,
  assertExampleStatus,
  exactlyOne200,
  example,
  startTestServerOn,
  type TestServer,
} from './support/harness.js';
import { decodePart } from './support/tokens.js';
import { ALICE, ed25519FromSeed, publicKeyHexOf, signMessage } from './support/vectors.js';

// Sign-in with a challenge (docs/design.md §12): a nonce signs in once, for its own email,
// before it expires; with SIGN_IN_CHALLENGE=required nothing else signs in.

const newKey = () => generateKeyPairSync('ed25519').privateKey;
const newEmail = () => `challenged-${randomUUID()}@example.test`;

for (const backend of DATABASES) {
  describe(`sign-in challenges on ${backend.name}`, () => {
    const test = (name: string, fn: () => Promise<void>): void => {
      testOn(name, { skip: backend.skip }, fn);
    };
    const clock = manualClock();
    let t: TestServer;
    /** A registered user and their key. */
    const user = async (email = newEmail()): Promise<{ email: string; key: KeyObject }> => {
      const key = newKey();
      await t.addUser(email, publicKeyHexOf(key));
      return { email, key };
    };
    before(async () => {
      if (!backend.skip) t = await startTestServerOn(backend, {}, { clock });
    });
    after(() => t?.stop());

    test('a challenge is a nonce of 256 random bits and a message naming the email and the nonce; its answer signs in', async () => {
      const { email, key } = await user();
      const reply = await t.challenge(email.toUpperCase());
      await assertExampleStatus(reply, 'SignInChallengeIssued');
      const { nonce, message, expiresAt } = reply.body.data;
      assert.match(nonce, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(Buffer.from(nonce, 'base64url').length, 32);
      assert.equal(expiresAt, Math.floor(clock() / 1000) + 60);
      const expires = new Date(expiresAt * 1000).toISOString().replace('.000Z', 'Z');
      assert.equal(message, `FIB Auth API sign-in\nEmail: ${email}\nNonce: ${nonce}\nExpires: ${expires}`);
      const signedIn = await t.signIn({
        email,
        signature: signMessage(message, key),
        authPublicKeyHex: publicKeyHexOf(key),
        nonce,
      });
      await assertExampleStatus(signedIn, 'SignedIn');
      assert.equal(decodePart(signedIn.body.data.accessToken, 1).sub, email);
      await assertExample(await t.logout(signedIn.body.data.accessToken), 'LoggedOut');
    });

    test('the contract example: Alice with the public test key answers a challenge', async () => {
      await t.addUser(ALICE.email, ALICE.publicKeyHex);
      const proof = await t.challengedProof(ALICE.email, ed25519FromSeed(ALICE.privateKeyHex));
      await assertExampleStatus(await t.signIn(proof), 'SignedIn');
    });

    test('an unknown email gets a challenge of the same shape, and signing in with it is 404', async () => {
      const registered = (await t.challenge((await user()).email)).body.data;
      const unknownEmail = newEmail();
      const reply = await t.challenge(unknownEmail);
      await assertExampleStatus(reply, 'SignInChallengeIssued');
      const { nonce, message, expiresAt } = reply.body.data;
      assert.equal(nonce.length, registered.nonce.length);
      const shape = (text: string) => text.replace(/^Email: .*$/m, 'Email: E').replace(/^Nonce: .*$/m, 'Nonce: N');
      assert.equal(shape(message), shape(registered.message));
      assert.equal(expiresAt, registered.expiresAt);
      const key = newKey();
      await assertExample(
        await t.signIn({
          email: unknownEmail,
          signature: signMessage(message, key),
          authPublicKeyHex: publicKeyHexOf(key),
          nonce,
        }),
        'UserNotFound',
      );
    });

    test("an email over 254 characters, or not of an email's form, is 400 naming why, and stores no challenge", async () => {
      const stored = () => t.server.store.purgeExpiredSignInChallenges(2 ** 31 - 1); // every row, expired or not
      await stored();
      const longest = `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
      assert.equal(longest.length, 254);
      await assertExampleStatus(await t.challenge(longest), 'SignInChallengeIssued');
      await assertExample(await t.challenge(`x${longest}`), 'EmailTooLong');
      await assertExample(await t.challenge(`${'a'.repeat(16_000)}@wonderland.space`), 'EmailTooLong');
      const notEmails = [
        '',
        'alice',
        'alice@',
        '@wonderland.space',
        'alice@@wonderland.space',
        'alice@wonderland..space',
        'alice@-wonderland.space',
        'alice @wonderland.space',
        'alice@wonderland.space\n',
        'al\u0000ice@wonderland.space',
        'alïce@wonderland.space',
        'alice@wönderland.space',
        '"alice"@wonderland.space',
        'alice@[127.0.0.1]',
        '<alice@wonderland.space>',
        `alice@${'b'.repeat(64)}.space`,
      ];
      for (const email of notEmails) await assertExample(await t.challenge(email), 'EmailInvalid');
      assert.equal(await stored(), 1, 'only the 254-character email got a challenge');
    });

    test('the same challenge body a second time (a replay): one 200, then 422', async () => {
      const { email, key } = await user();
      const proof = await t.challengedProof(email, key);
      assert.equal((await t.signIn(proof)).status, 200);
      await assertExample(await t.signIn(proof), 'SignInNonceUsed');
      await assertExample(await t.signIn({ ...proof, email: email.toUpperCase() }), 'SignInNonceUsed');
    });

    test('20 concurrent sign-ins with one nonce: exactly one 200, every other is told the nonce was used', async () => {
      const { email, key } = await user();
      const proof = await t.challengedProof(email, key);
      await exactlyOne200(
        20,
        () => t.signIn(proof),
        (reply) => assertExample(reply, 'SignInNonceUsed'),
      );
    });

    test('a wrong signature does not use the nonce up', async () => {
      const { email, key } = await user();
      const proof = await t.challengedProof(email, key);
      await assertExample(await t.signIn({ ...proof, signature: signMessage(email, key) }), 'SignatureNotVerified');
      await assertExample(
        await t.signIn({ ...proof, signature: signMessage(proof.signature, newKey()) }),
        'SignatureNotVerified',
      );
      assert.equal((await t.signIn(proof)).status, 200);
    });

    test('expiry: a nonce signs in until its 60th second, not from then on (the clock is moved, not waited for)', async () => {
      const { email, key } = await user();
      const late = await t.challengedProof(email, key);
      const inTime = await t.challengedProof(email, key);
      clock.advance(59);
      assert.equal((await t.signIn(inTime)).status, 200);
      clock.advance(1);
      await assertExample(await t.signIn(late), 'SignInNonceExpired');
      // Purged once expired: then it is a nonce the server no longer knows.
      assert.ok((await t.server.store.purgeExpiredSignInChallenges(Math.floor(clock() / 1000))) >= 2);
      await assertExample(await t.signIn(late), 'SignInNonceUnknown');
    });

    test("another user's nonce, or one never issued: 422, and the nonce stays its owner's", async () => {
      const alice = await user();
      const bob = await user();
      const bobs = await t.challengedProof(bob.email, bob.key);
      assert.equal((await t.server.store.findSignInChallenge(bobs.nonce))?.email, bob.email);
      // Alice signs the message of Bob's challenge with her own key.
      const aliceWithBobsNonce = await t.challengedProof(alice.email, alice.key);
      await assertExample(await t.signIn({ ...aliceWithBobsNonce, nonce: bobs.nonce }), 'SignInNonceOfOtherUser');
      await assertExample(await t.signIn({ ...aliceWithBobsNonce, nonce: 'A'.repeat(43) }), 'SignInNonceUnknown');
      await assertExample(await t.signIn({ ...aliceWithBobsNonce, nonce: '' }), 'SignInNonceUnknown');
      assert.equal((await t.signIn(bobs)).status, 200);
      assert.equal((await t.signIn(aliceWithBobsNonce)).status, 200);
    });

    test("in optional mode (the default) the FIB guide's email-only body still signs in", async () => {
      const { email, key } = await user();
      const reply = await t.signIn({ email, signature: signMessage(email, key), authPublicKeyHex: publicKeyHexOf(key) });
      assert.equal(reply.status, 200);
    });
  });

  describe(`SIGN_IN_CHALLENGE=required on ${backend.name}`, () => {
    const test = (name: string, fn: () => Promise<void>): void => {
      testOn(name, { skip: backend.skip }, fn);
    };
    let t: TestServer;
    before(async () => {
      if (!backend.skip) t = await startTestServerOn(backend, { SIGN_IN_CHALLENGE: 'required' });
    });
    after(() => t?.stop());

    test('refuses the email-only body with 422 naming the challenge, after the checks of the body itself', async () => {
      const key = newKey();
      const email = newEmail();
      await t.addUser(email, publicKeyHexOf(key));
      const emailOnly = { email, signature: signMessage(email, key), authPublicKeyHex: publicKeyHexOf(key) };
      await assertExample(await t.signIn(emailOnly), 'SignInChallengeRequired');
      assert.match(example('SignInChallengeRequired').status.message, /challenge/);
      await assertExample(await t.signIn({ ...emailOnly, signature: 'not hex' }), 'SignatureNotHex');
      await assertExample(await t.signIn({ ...emailOnly, authPublicKeyHex: 'ab' }), 'PublicKeyInvalid');
      // The same refusal for an unknown email: it tells nothing about who is registered.
      await assertExample(await t.signIn({ ...emailOnly, email: newEmail() }), 'SignInChallengeRequired');
    });

    test('a challenge body signs in, once', async () => {
      const s = await t.newSession();
      await assertExample(await t.logout(s.accessToken), 'LoggedOut');
      const proof = await t.challengedProof(s.email, s.key);
      assert.equal((await t.signIn(proof)).status, 200);
      await assertExample(await t.signIn(proof), 'SignInNonceUsed');
    });
  });
}
