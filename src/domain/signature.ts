import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { blake2b } from '@noble/hashes/blake2.js';
import { ed25519 } from '@noble/curves/ed25519.js';

const HEX_32_BYTES = /^[0-9a-fA-F]{64}$/;
const HEX_64_BYTES = /^[0-9a-fA-F]{128}$/;

/** The 32 bytes a user signs: BLAKE2b-256 of the email as sent, with the lowest bit of the last byte set. */
export function emailDigest(email: string): Uint8Array {
  const digest = blake2b(new TextEncoder().encode(email), { dkLen: 32 });
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

export function verifyEmailSignature(email: string, signatureHex: string, publicKey: KeyObject): boolean {
  return verify(null, emailDigest(email), publicKey, Buffer.from(signatureHex, 'hex'));
}
