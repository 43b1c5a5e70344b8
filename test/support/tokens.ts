import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import type { SessionRecord } from '../../src/domain/store.js';
import { TEST_ISSUER } from './api.js';
import type { TestServer } from './harness.js';

export const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

export function decodePart(token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[index], 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** The server's own signing key, read from its key file. */
export function serverKey(t: TestServer): KeyObject {
  return createPrivateKey(readFileSync(t.config.signingKeyFile));
}

export async function kidOf(key: KeyObject): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(key));
}

/** A JWS over any header and payload, signed with Ed25519 by `key`. */
export function forge(header: unknown, payload: unknown, key: KeyObject): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`;
}

/** A session as the server stores it at sign-in, before it ends. */
export type LiveSession = Omit<SessionRecord, 'revokedAt' | 'revokedReason'>;

/** A new session of `userEmail`, its access token valid for an hour and its refresh token for a day. */
export function newSession(userEmail: string, now = Math.floor(Date.now() / 1000)): LiveSession {
  return {
    id: randomUUID(),
    userEmail,
    accessJti: randomUUID(),
    refreshJti: randomUUID(),
    accessExpiresAt: now + 3600,
    refreshExpiresAt: now + 86400,
    createdAt: now,
  };
}

/**
 * The claims of the session's access token, in the order the server writes them, for a server
 * with ISSUER=TEST_ISSUER and the default AUDIENCE (docs/design.md §5).
 */
export const accessClaimsOf = (s: LiveSession, accountId: string) => ({
  acc: accountId,
  sub: s.userEmail,
  role: 'ROLE_PEER',
  sid: s.id,
  iss: TEST_ISSUER,
  aud: 'fib-api',
  client_id: 'fib-sign-in',
  iat: s.createdAt,
  exp: s.accessExpiresAt,
  jti: s.accessJti,
});

/** The claims of the session's refresh token, in the order the server writes them (ISSUER=TEST_ISSUER). */
export const refreshClaimsOf = (s: LiveSession) => ({
  sub: s.userEmail,
  sid: s.id,
  acjti: s.accessJti,
  iss: TEST_ISSUER,
  aud: TEST_ISSUER,
  iat: s.createdAt,
  exp: s.refreshExpiresAt,
  jti: s.refreshJti,
});

/** Claims of a valid access token of `sub`, for a session no server opened. */
export const accessClaims = (sub: string) => accessClaimsOf(newSession(sub), randomUUID());

/** Claims of a valid refresh token of `sub`, for a session no server opened. */
export const refreshClaims = (sub: string) => refreshClaimsOf(newSession(sub));

/**
 * Mints tokens byte for byte as a server with ISSUER=TEST_ISSUER issues them (same header and
 * claims, in the same order, signed by its key file), so that sessions can be stored in bulk
 * without a sign-in each.
 */
export class TokenMinter {
  private constructor(
    private readonly key: KeyObject,
    readonly kid: string,
    readonly publicKey: KeyObject,
  ) {}

  static async fromKeyFile(path: string): Promise<TokenMinter> {
    const key = createPrivateKey(readFileSync(path));
    return new TokenMinter(key, await kidOf(key), createPublicKey(key));
  }

  accessToken(s: LiveSession, accountId: string): string {
    return forge({ alg: 'EdDSA', typ: 'at+jwt', kid: this.kid }, accessClaimsOf(s, accountId), this.key);
  }

  refreshToken(s: LiveSession): string {
    return forge({ alg: 'EdDSA', typ: 'refresh+jwt', kid: this.kid }, refreshClaimsOf(s), this.key);
  }
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
