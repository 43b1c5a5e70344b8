import { importJWK, type CryptoKey, type JWK } from 'jose';
import { unverifiable } from './refusal.js';

/** A kid the keys do not name refetches them at most this often, so forged kids cannot flood the service. */
const REFETCH_COOLDOWN_MS = 5_000;
const FETCH_TIMEOUT_MS = 5_000;

/** The service's public keys, from its JWKS, by kid. */
export class Jwks {
  private keys = new Map<string, CryptoKey>();
  private fetching: Promise<void> | undefined;
  private lastAttempt = -Infinity;
  /** Set while the last fetch failed: an unknown kid is then unverifiable (503), not untrusted (422). */
  private lastFailure: unknown;

  constructor(private readonly url: string) {}

  /** The key of `kid`; an unknown kid refetches the keys first, unless they were fetched a moment ago. */
  readonly keyFor = (kid: string): CryptoKey | undefined | Promise<CryptoKey | undefined> =>
    this.keys.get(kid) ?? this.refetchFor(kid);

  private async refetchFor(kid: string): Promise<CryptoKey | undefined> {
    if (this.fetching || performance.now() - this.lastAttempt >= REFETCH_COOLDOWN_MS) {
      await this.refresh().catch(() => {});
    }
    if (this.lastFailure !== undefined) throw unverifiable.keysUnavailable(this.lastFailure);
    return this.keys.get(kid);
  }

  /** Fetches the keys; concurrent callers share one request. */
  refresh(): Promise<void> {
    this.fetching ??= this.fetch().finally(() => (this.fetching = undefined));
    return this.fetching;
  }

  private async fetch(): Promise<void> {
    this.lastAttempt = performance.now();
    try {
      const response = await fetch(this.url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      if (response.status !== 200) throw new Error(`GET ${this.url} answered ${response.status}`);
      const { keys } = (await response.json()) as { keys?: unknown };
      if (!Array.isArray(keys)) throw new Error(`GET ${this.url} answered no key set`);
      const imported = new Map<string, CryptoKey>();
      for (const jwk of keys as JWK[]) {
        if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.kid !== 'string') continue;
        if ((jwk.alg ?? 'EdDSA') !== 'EdDSA' || (jwk.use ?? 'sig') !== 'sig') continue;
        imported.set(jwk.kid, (await importJWK(jwk, 'EdDSA')) as CryptoKey);
      }
      this.keys = imported;
      this.lastFailure = undefined;
    } catch (error) {
      this.lastFailure = error;
      throw error;
    }
  }
}
