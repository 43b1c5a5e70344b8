import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { blake2b } from '@noble/hashes/blake2.js';
import { ed25519 } from '@noble/curves/ed25519.js';

const HEX_32_BYTES = /^[0-9a-fA-F]{64}$/;
const HEX_64_BYTES = /^[0-9a-fA-F]{128}$/;

/**
 * The 32 bytes a user signs (docs/design.md §4): BLAKE2b-256 of the message's UTF-8 bytes, with
 * the lowest bit of the last byte set. The message is the email as sent, or a challenge's
 * message (§12).
 */
export function messageDigest(message: string): Uint8Array {
  const digest = blake2b(new TextEncoder().encode(message), { dkLen: 32 });
  digest[31] |= 1;
  return digest;
}

export function isSignatureHex(signatureHex: string): boolean {
  return HEX_64_BYTES.test(signatureHex);
}

/** The Ed25519 public key named by 64 hex characters, or undefined when they name no curve point. */
export function parsePublicKeyHex(publicKeyHex: string): KeyObject | undefined {
  if (!HEX_32_BYTES.test(publicKeyHex)) return undefined;
  try {
    ed25519.Point.fromHex(publicKeyHex);
  } catch {
    return undefined;
  }
  const x = Buffer.from(publicKeyHex, 'hex').toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
}

export function verifyMessageSignature(message: string, signatureHex: string, publicKey: KeyObject): boolean {
  return verify(null, messageDigest(message), publicKey, Buffer.from(signatureHex, 'hex'));
}

/**
 * The text a user signs to answer a sign-in challenge (docs/design.md §12). It names the
 * service, so that it can never be taken for an email, and binds the nonce to one user.
 */
export function signInChallengeMessage(email: string, nonce: string, expiresAt: number): string {
  const expires = new Date(expiresAt * 1000).toISOString().replace('.000Z', 'Z');
  return `FIB Auth API sign-in\nEmail: ${email}\nNonce: ${nonce}\nExpires: ${expires}`;
}
