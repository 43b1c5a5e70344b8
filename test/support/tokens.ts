import { createPrivateKey, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import type { TestServer } from './harness.js';

export const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

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

/** Claims of a valid refresh token for a session, as the server would issue them. */
export function refreshClaims(sub: string, sid = randomUUID(), lifetime = 86400) {
  const iat = Math.floor(Date.now() / 1000);
  return { sub, sid, acjti: randomUUID(), jti: randomUUID(), iat, exp: iat + lifetime };
}

export const otherKey = () => generateKeyPairSync('ed25519').privateKey;

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * Every other spelling of one segment of a token: the same bytes, with other values in the
 * unused low bits of the segment's last character (4 bits for 4n+2 characters, 2 for 4n+3,
 * none for 4n). A 64-byte signature has 86 characters, so 15 other spellings.
 */
export function respellings(token: string, segment: 0 | 1 | 2): string[] {
  const parts = token.split('.');
  const text = parts[segment];
  const spareBits = [0, 0, 4, 2][text.length % 4];
  const last = BASE64URL.indexOf(text[text.length - 1]);
  const variants: string[] = [];
  for (let spare = 0; spare < 1 << spareBits; spare++) {
    const char = BASE64URL[((last >> spareBits) << spareBits) | spare];
    if (char === text[text.length - 1]) continue;
    variants.push(parts.map((part, i) => (i === segment ? part.slice(0, -1) + char : part)).join('.'));
  }
  return variants;
}

export function withSignature(token: string, signatureBytes: Buffer): string {
  const [h, p] = token.split('.');
  return `${h}.${p}.${signatureBytes.toString('base64url')}`;
}
