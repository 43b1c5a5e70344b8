import { createPrivateKey, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import type { TestServer } from './harness.js';

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

export function decodePart(token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[index], 'base64url').toString('utf8'));
}

/** The server's own signing key, read from its key file. */
export function serverKey(t: TestServer): KeyObject {
  return createPrivateKey(readFileSync(t.config.signingKeyFile));
}

export async function kidOf(key: KeyObject): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(key));
}

/** A JWS over any header and payload, signed with Ed25519 by `key` (the server's by default). */
export function forge(header: unknown, payload: unknown, key: KeyObject): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`;
}

/** Claims of a valid access token for a session, as the server would issue them. */
export function accessClaims(sub: string, sid = randomUUID(), lifetime = 300) {
  const iat = Math.floor(Date.now() / 1000);
  return { acc: randomUUID(), sub, role: 'ROLE_PEER', sid, jti: randomUUID(), iat, exp: iat + lifetime };
}

export const otherKey = () => generateKeyPairSync('ed25519').privateKey;

/** The same token with its signature segment re-encoded: other spare bits in the last character. */
export function reencodeSignature(token: string): string {
  const [h, p, s] = token.split('.');
  // 64 bytes take 86 base64url characters; the last one carries 4 unused low bits.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(s[s.length - 1]);
  const variant = alphabet[(last & ~0b1111) | ((last & 0b1111) ^ 0b0001)];
  const reencoded = s.slice(0, -1) + variant;
  return `${h}.${p}.${reencoded}`;
}

export function withSignature(token: string, signatureBytes: Buffer): string {
  const [h, p] = token.split('.');
  return `${h}.${p}.${signatureBytes.toString('base64url')}`;
}
