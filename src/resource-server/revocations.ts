import { setTimeout as sleep } from 'node:timers/promises';
import type { AccessClaims } from '../domain/tokens.js';
import { revokedRefusal, unverifiable } from './refusal.js';

/** One entry of the feed: without `jti` the whole session `sid`, with it only that access token. */
export interface Revocation {
  sid: string;
  jti?: string;
  reason: string;
  /** Epoch seconds from which the revoked tokens are expired anyway. */
  until: number;
}

interface FeedPage {
  cursor: string;
  snapshot: boolean;
  more: boolean;
  revocations: Revocation[];
}

/** The sessions and access tokens the feed reported ended, kept until their tokens expire. */
class RevocationSet {
  private readonly sessions = new Map<string, Revocation>();
  private readonly tokens = new Map<string, Revocation>();

  add(entries: readonly Revocation[]): void {
    for (const entry of entries) {
      const byId = entry.jti === undefined ? this.sessions : this.tokens;
      const id = entry.jti ?? entry.sid;
      const known = byId.get(id);
      // The first reason is the one the service gives; the entry lasts as long as the longest.
      byId.set(id, known ? { ...known, until: Math.max(known.until, entry.until) } : entry);
    }
  }

  /** The entry that revokes this token, if any. */
  find(claims: AccessClaims): Revocation | undefined {
    return this.sessions.get(claims.sid) ?? this.tokens.get(claims.jti);
  }

  /** Drops the entries whose tokens have all expired by `nowSeconds`. */
  forgetBefore(nowSeconds: number): void {
    for (const byId of [this.sessions, this.tokens]) {
      for (const [id, entry] of byId) if (entry.until <= nowSeconds) byId.delete(id);
    }
  }
}

/**
 * An entry is forgotten this long after its `until`: a verification that read the clock just
 * before `until` may look the entry up a moment after it, and must still find it.
 */
const FORGET_GRACE_SECONDS = 60;
const FORGET_INTERVAL_MS = 1_000;
/** A long poll gets this long beyond its `wait` to answer before it is given up as lost. */
const ANSWER_MARGIN_MS = 2_000;
/** After an answer with revocations, the next long poll waits this long (see run). */
const GATHER_MS = 10;
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;

/** The feed's answers that trying again will not fix: the client credentials, or the URL, are wrong. */
const REFUSALS = new Set([400, 401, 403, 404]);

/** A refusal by the feed that trying again will not fix (REFUSALS). */
class FeedRefused extends Error {
  override name = 'FeedRefused';
}

function isRevocation(value: unknown): value is Revocation {
  const entry = value as Revocation;
  return (
    typeof entry === 'object' &&
    entry !== null &&
    typeof entry.sid === 'string' &&
    (entry.jti === undefined || typeof entry.jti === 'string') &&
    typeof entry.reason === 'string' &&
    Number.isFinite(entry.until)
  );
}

function pageOf(body: unknown): FeedPage {
  const page = (body as { data?: FeedPage } | null)?.data;
  if (
    typeof page?.cursor !== 'string' ||
    typeof page.snapshot !== 'boolean' ||
    typeof page.more !== 'boolean' ||
    !Array.isArray(page.revocations) ||
    !page.revocations.every(isRevocation)
  ) {
    throw new Error('The revocation feed answered a body that is not a page of revocations.');
  }
  return page;
}

export interface FeedOptions {
  /** The feed's URL: the service's base URL and the revocations path. */
  url: string;
  authorization: string;
  maxStalenessSeconds: number;
}

/**
 * Follows the service's revocation feed with long polls and keeps the revocation set current.
 * It is trusted only while the last answer that left nothing to fetch (`more: false`) is at
 * most `maxStalenessSeconds` old: past that, every check fails closed with a 503.
 */
export class RevocationFeed {
  private live = new RevocationSet();
  /** The snapshot being received, page by page; it replaces `live` once complete. */
  private incoming: RevocationSet | undefined;
  private cursor: string | undefined;
  /** performance.now() when the last `more: false` answer arrived. */
  private currentAt: number | undefined;
  private lastFailure: unknown;
  private lastForget = -Infinity;
  private readonly stopping = new AbortController();
  private readonly waitSeconds: number;
  private readonly running: Promise<void>;
  private markCurrent!: () => void;
  private markRefused!: (error: unknown) => void;
  /** Settles when the set is current for the first time, or when the feed refuses the client. */
  readonly current: Promise<void>;

  constructor(private readonly options: FeedOptions) {
    // Healthy long polls answer at least this often, which leaves time for a retry before the set goes stale.
    this.waitSeconds = Math.min(30, Math.max(1, Math.floor(options.maxStalenessSeconds / 3)));
    this.current = new Promise<void>((resolve, reject) => {
      this.markCurrent = resolve;
      this.markRefused = reject;
    });
    this.current.catch(() => {}); // ready() reports it; a verifier nobody awaits must not crash the process
    this.running = this.run();
  }

  /** Throws the refusal for a token the feed reports ended, or a 503 while the feed is not trusted. */
  check(claims: AccessClaims): void {
    if (this.stopping.signal.aborted) throw unverifiable.closed();
    const revocation = this.live.find(claims) ?? this.incoming?.find(claims);
    if (revocation) throw revokedRefusal(revocation.reason);
    if (this.currentAt === undefined) throw unverifiable.feedNotYetCurrent();
    if (performance.now() - this.currentAt > this.options.maxStalenessSeconds * 1000) {
      throw unverifiable.feedStale(this.options.maxStalenessSeconds, this.lastFailure);
    }
  }

  async close(): Promise<void> {
    this.stopping.abort();
    this.markRefused(new Error('The verifier was closed before the revocation feed was current.'));
    await this.running;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping.signal.aborted) {
      try {
        const page = await this.fetchPage();
        this.apply(page);
        failures = 0;
        // Revocations come in bursts under load: gathering them for a moment asks the service
        // once per burst rather than once per logout, for a delay of at most this pause.
        if (!page.more && page.revocations.length > 0) await this.pause(GATHER_MS);
      } catch (error) {
        if (this.stopping.signal.aborted) return;
        this.lastFailure = error;
        if (error instanceof FeedRefused) this.markRefused(error);
        // Jittered, so that resource servers cut off together do not come back together.
        await this.pause(Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** failures++) * (0.5 + Math.random() / 2));
      }
    }
  }

  private pause(ms: number): Promise<void> {
    return sleep(ms, undefined, { signal: this.stopping.signal }).catch(() => {});
  }

  private async fetchPage(): Promise<FeedPage> {
    const query = new URLSearchParams({ wait: String(this.waitSeconds) });
    if (this.cursor !== undefined) query.set('after', this.cursor);
    const response = await fetch(`${this.options.url}?${query}`, {
      headers: { authorization: this.options.authorization, accept: 'application/json' },
      signal: AbortSignal.any([this.stopping.signal, AbortSignal.timeout(this.waitSeconds * 1000 + ANSWER_MARGIN_MS)]),
    });
    const body: unknown = await response.json().catch(() => undefined);
    if (response.status === 200) return pageOf(body);
    const message = (body as { status?: { message?: string } } | undefined)?.status?.message ?? '';
    const why = `The revocation feed answered ${response.status}: ${message}`;
    throw REFUSALS.has(response.status) ? new FeedRefused(why) : new Error(why);
  }

  private apply(page: FeedPage): void {
    if (page.snapshot) this.incoming = new RevocationSet();
    this.live.add(page.revocations);
    this.incoming?.add(page.revocations);
    this.cursor = page.cursor;
    if (!page.more) {
      if (this.incoming) [this.live, this.incoming] = [this.incoming, undefined];
      this.currentAt = performance.now();
      this.lastFailure = undefined;
      this.markCurrent();
    }
    if (performance.now() - this.lastForget >= FORGET_INTERVAL_MS) {
      this.lastForget = performance.now();
      this.live.forgetBefore(Date.now() / 1000 - FORGET_GRACE_SECONDS);
    }
  }
}
