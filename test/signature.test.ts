import assert from 'node:assert/strict';
import { test } from 'node:test';
import { blake2b } from '@noble/hashes/blake2.js';
import { messageDigest, isSignatureHex, parsePublicKeyHex, verifyMessageSignature } from '../src/domain/signature.js';
import { ALICE, BOB_SIGNATURE, ed25519FromSeed, publicKeyHexOf, signMessage } from './support/vectors.js';

const aliceKey = ed25519FromSeed(ALICE.privateKeyHex);
const bobEmail = 'bob@wonderland.space';

test('the public test key derives from the FIB guide private key', () => {
  assert.equal(publicKeyHexOf(aliceKey), ALICE.publicKeyHex);
});

test("alice@wonderland.space signs to the README's test-vector signature", () => {
  assert.equal(signMessage(ALICE.email, aliceKey), ALICE.signature);
  assert.ok(verifyMessageSignature(ALICE.email, ALICE.signature, parsePublicKeyHex(ALICE.publicKeyHex)!));
});

test("bob@wonderland.space needs the lowest-bit rule and signs to the README's test-vector signature", () => {
  const plain = blake2b(new TextEncoder().encode(bobEmail), { dkLen: 32 });
  assert.equal(plain[31] & 1, 0, 'the vector exercises the rule: the plain digest ends in an even byte');
  assert.equal(messageDigest(bobEmail)[31], plain[31] | 1);
  assert.equal(signMessage(bobEmail, aliceKey), BOB_SIGNATURE);
  assert.ok(verifyMessageSignature(bobEmail, BOB_SIGNATURE, parsePublicKeyHex(ALICE.publicKeyHex)!));
});

test('a signature verifies only for the email as sent', () => {
  const key = parsePublicKeyHex(ALICE.publicKeyHex)!;
  assert.equal(verifyMessageSignature('Alice@wonderland.space', ALICE.signature, key), false);
  assert.equal(verifyMessageSignature(bobEmail, ALICE.signature, key), false);
});

test('public keys must be 64 hex characters naming a curve point', () => {
  assert.ok(parsePublicKeyHex(ALICE.publicKeyHex.toUpperCase()));
  assert.equal(parsePublicKeyHex(ALICE.publicKeyHex.slice(2)), undefined);
  assert.equal(parsePublicKeyHex('zz' + ALICE.publicKeyHex.slice(2)), undefined);
  // y = 2 has no x on edwards25519: 32 bytes that name no point.
  assert.equal(parsePublicKeyHex('02' + '00'.repeat(31)), undefined);
});

test('signatures must be 128 hex characters', () => {
  assert.ok(isSignatureHex(ALICE.signature));
  assert.equal(isSignatureHex(ALICE.signature.slice(1)), false);
  assert.equal(isSignatureHex(ALICE.signature + '0'), false);
  assert.equal(isSignatureHex('g' + ALICE.signature.slice(1)), false);
});
