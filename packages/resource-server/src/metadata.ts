import { getJson, retryDelayMs } from './requests.js';

const FETCH_TIMEOUT_MS = 5_000;

/** The issuer and access audience a verifier demands, from its options or the service's metadata. */
export interface Expected {
  issuer: string;
  audience: readonly string[];
}

/**
 * The issuer and the access tokens' audience the service names in its RFC 8414 metadata
 * (`fib_access_token_audience` is its own), fetched until it answers with both, or until closed.
 * Each option given replaces what the metadata says; with both, nothing is fetched.
 */
export class ServiceMetadata {
  private known: Expected | undefined;
  /** Set while the last fetch failed: `ready()`'s timeout names it. */
  lastFailure: unknown;
  readonly loaded: Promise<void>;

  constructor(
    private readonly url: string,
    given: { issuer?: string; audience?: readonly string[] },
    private readonly closing: AbortSignal,
  ) {
    if (given.issuer !== undefined && given.audience !== undefined) {
      this.known = { issuer: given.issuer, audience: given.audience };
      this.loaded = Promise.resolve();
    } else {
      this.loaded = this.fetchUntilKnown(given);
    }
  }

  /** What tokens must carry; undefined until the metadata has been fetched. */
  get expected(): Expected | undefined {
    return this.known;
  }

  private async fetchUntilKnown(given: { issuer?: string; audience?: readonly string[] }): Promise<void> {
    for (let failures = 0; !this.closing.aborted; failures++) {
      try {
        const { status, body } = await getJson(this.url, { timeoutMs: FETCH_TIMEOUT_MS, signal: this.closing });
        if (status !== 200) throw new Error(`GET ${this.url} answered ${status}`);
        const { issuer, fib_access_token_audience: audience } = (body ?? {}) as Record<string, unknown>;
        if (typeof issuer !== 'string' || !Array.isArray(audience) || !audience.every((aud) => typeof aud === 'string')) {
          throw new Error(`GET ${this.url} answered no issuer and audience`);
        }
        this.known = { issuer: given.issuer ?? issuer, audience: given.audience ?? audience };
        this.lastFailure = undefined;
        return;
      } catch (error) {
        if (this.closing.aborted) return;
        this.lastFailure = error;
        await new Promise((resolve) => setTimeout(resolve, retryDelayMs(failures)).unref());
      }
    }
  }
}
