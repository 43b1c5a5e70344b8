import { createPrivateKey, createPublicKey, randomUUID, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import type { SessionRecord } from '../src/domain/store.js';

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A session row as the server stores it at sign-in, with the tokens of its current pair. */
export type BenchSession = Omit<SessionRecord, 'revokedAt' | 'revokedReason'>;

/**
 * Mints tokens byte for byte as the server issues them (same header and claims, in jose's
 * order, signed by the server's key file), so sessions can be seeded in bulk without a
 * sign-in each. `run.ts` checks the shape against a token from a real sign-in.
 */
export class TokenMinter {
  private constructor(
    private readonly key: KeyObject,
    readonly kid: string,
    readonly publicKey: KeyObject,
  ) {}

  static async fromKeyFile(path: string): Promise<TokenMinter> {
    const key = createPrivateKey(readFileSync(path));
    const publicKey = createPublicKey(key);
    return new TokenMinter(key, await calculateJwkThumbprint(await exportJWK(publicKey)), publicKey);
  }

  /** A new session of `userEmail`, its tokens valid for an hour: longer than any run. */
  session(userEmail: string, now = Math.floor(Date.now() / 1000)): BenchSession {
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

  accessToken(s: BenchSession, accountId: string): string {
    const claims = {
      acc: accountId,
      sub: s.userEmail,
      role: 'ROLE_PEER',
      sid: s.id,
      iat: s.createdAt,
      exp: s.accessExpiresAt,
      jti: s.accessJti,
    };
    return this.sign({ alg: 'EdDSA', typ: 'at+jwt', kid: this.kid }, claims);
  }

  refreshToken(s: BenchSession): string {
    const claims = {
      sub: s.userEmail,
      sid: s.id,
      acjti: s.accessJti,
      iat: s.createdAt,
      exp: s.refreshExpiresAt,
      jti: s.refreshJti,
    };
    return this.sign({ alg: 'EdDSA', typ: 'refresh+jwt', kid: this.kid }, claims);
  }

  private sign(header: object, claims: object): string {
    const input = `${b64(header)}.${b64(claims)}`;
    return `${input}.${sign(null, Buffer.from(input), this.key).toString('base64url')}`;
  }
}
