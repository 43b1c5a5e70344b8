import { importJWK, type CryptoKey, type JWK } from 'jose';
import type { EventListener } from './events.js';
import { unverifiable } from './refusal.js';
import { describe, getJson, retryDelayMs } from './requests.js';

/** A kid the keys do not name refetches them at most this often, so forged kids cannot flood the service. */
const REFETCH_COOLDOWN_MS = 5_000;
const FETCH_TIMEOUT_MS = 5_000;
/** A failed scheduled refresh is tried again this soon, unless the refresh period is shorter. */
const FAILED_REFRESH_RETRY_MS = 30_000;

export interface JwksOptions {
  url: string;
  /** How often the keys are fetched again, so that a key the service no longer lists stops verifying. */
  refreshSeconds: number;
  /** Whether the service withdrew the key `kid` (the revocation feed): then it verifies nothing, whatever the JWKS lists. */
  withdraws: (kid: string) => boolean;
  onEvent: EventListener;
}

/** The service's public keys, from its JWKS, by kid, fetched again every `refreshSeconds`. */
export class Jwks {
  private keys = new Map<string, CryptoKey>();
  private fetching: Promise<void> | undefined;
  private lastAttempt = -Infinity;
  /** Set while the last fetch failed: an unknown kid is then unverifiable (503), not untrusted (422). */
  lastFailure: unknown;
  private fetchedOnce = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly closing = new AbortController();
  private markLoaded!: () => void;
  /** Resolves once the keys have been fetched. */
  readonly loaded = new Promise<void>((resolve) => (this.markLoaded = resolve));

  constructor(private readonly options: JwksOptions) {
    void this.refreshOnSchedule(0);
  }

  /** The key of `kid`; an unknown kid refetches the keys first, unless they were fetched a moment ago. */
  readonly keyFor = (kid: string): CryptoKey | undefined | Promise<CryptoKey | undefined> => {
    if (this.options.withdraws(kid)) return undefined;
    return this.keys.get(kid) ?? this.refetchFor(kid);
  };

  close(): void {
    clearTimeout(this.timer);
    this.closing.abort();
  }

  private async refetchFor(kid: string): Promise<CryptoKey | undefined> {
    if (this.fetching || performance.now() - this.lastAttempt >= REFETCH_COOLDOWN_MS) {
      await this.refresh().catch(() => {});
    }
    if (this.lastFailure !== undefined) throw unverifiable.keysUnavailable(this.lastFailure);
    return this.options.withdraws(kid) ? undefined : this.keys.get(kid);
  }

  /**
   * Fetches the keys, then schedules the next fetch: after `refreshSeconds`, or sooner after a
   * failure (quickly while the keys have never been fetched). The timer does not keep the process alive.
   */
  private async refreshOnSchedule(failures: number): Promise<void> {
    let next: number;
    try {
      await this.refresh();
      next = this.options.refreshSeconds * 1000;
      failures = 0;
    } catch (error) {
      if (this.closing.signal.aborted) return;
      next = this.fetchedOnce ? Math.min(this.options.refreshSeconds * 1000, FAILED_REFRESH_RETRY_MS) : retryDelayMs(failures++);
      if (this.fetchedOnce) {
        const reason = describe(error);
        this.options.onEvent({
          type: 'keys-refresh-failed',
          reason,
          message: `The signing keys at ${this.options.url} could not be refreshed (${reason}); the keys fetched before stay in use, retrying in ${Math.round(next / 1000)} seconds.`,
        });
      }
    }
    if (this.closing.signal.aborted) return;
    this.timer = setTimeout(() => void this.refreshOnSchedule(failures), next).unref();
  }

  /** Fetches the keys; concurrent callers share one request. */
  private refresh(): Promise<void> {
    this.fetching ??= this.fetch().finally(() => (this.fetching = undefined));
    return this.fetching;
  }

  private async fetch(): Promise<void> {
    this.lastAttempt = performance.now();
    try {
      const { status, body } = await getJson(this.options.url, { timeoutMs: FETCH_TIMEOUT_MS, signal: this.closing.signal });
      if (status !== 200) throw new Error(`GET ${this.options.url} answered ${status}`);
      const { keys } = (body ?? {}) as { keys?: unknown };
      if (!Array.isArray(keys)) throw new Error(`GET ${this.options.url} answered no key set`);
      const imported = new Map<string, CryptoKey>();
      for (const jwk of keys as JWK[]) {
        if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.kid !== 'string') continue;
        if ((jwk.alg ?? 'EdDSA') !== 'EdDSA' || (jwk.use ?? 'sig') !== 'sig') continue;
        imported.set(jwk.kid, (await importJWK(jwk, 'EdDSA')) as CryptoKey);
      }
      // The keys the service no longer lists are dropped here.
      this.keys = imported;
      this.lastFailure = undefined;
      this.fetchedOnce = true;
      this.markLoaded();
    } catch (error) {
      this.lastFailure = error;
      throw error;
    }
  }
}
