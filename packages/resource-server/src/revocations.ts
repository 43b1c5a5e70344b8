import { setTimeout as sleep } from 'node:timers/promises';
import type { AccessClaims } from '../../../src/domain/tokens.js';
import { FeedRefusedError, VerifierClosedError } from './errors.js';
import type { EventListener } from './events.js';
import { revokedRefusal, unverifiable } from './refusal.js';
import { describe, getJson, retryDelayMs } from './requests.js';

/** One entry of the feed that ends sessions: without `jti` the whole session `sid`, with it only that access token. */
export interface Revocation {
  sid: string;
  jti?: string;
  reason: string;
  /** Epoch seconds from which the revoked tokens are expired anyway. */
  until: number;
}

/** One entry of the feed that withdraws a signing key: tokens with this `kid` are refused until `until`. */
export interface KeyWithdrawal {
  kid: string;
  reason: string;
  until: number;
}

type FeedEntry = Revocation | KeyWithdrawal;

interface FeedPage {
  cursor: string;
  snapshot: boolean;
  more: boolean;
  revocations: FeedEntry[];
}

/** The sessions, access tokens and signing keys the feed reported ended, kept until their tokens expire. */
class RevocationSet {
  private readonly sessions = new Map<string, FeedEntry>();
  private readonly tokens = new Map<string, FeedEntry>();
  private readonly keys = new Map<string, FeedEntry>();

  add(entry: FeedEntry): void {
    const [byId, id] =
      'kid' in entry ? [this.keys, entry.kid] : entry.jti === undefined ? [this.sessions, entry.sid] : [this.tokens, entry.jti];
    const known = byId.get(id);
    // The first reason is the one the service gives; the entry lasts as long as the longest.
    byId.set(id, known ? { ...known, until: Math.max(known.until, entry.until) } : entry);
  }

  /** The entry that revokes this token, if any. */
  find(claims: AccessClaims): FeedEntry | undefined {
    return this.sessions.get(claims.sid) ?? this.tokens.get(claims.jti);
  }

  withdraws(kid: string): boolean {
    return this.keys.has(kid);
  }

  /** Drops the entries whose tokens have all expired by `nowSeconds`. */
  forgetBefore(nowSeconds: number): void {
    for (const byId of [this.sessions, this.tokens, this.keys]) {
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
/** A long poll gets this long beyond its `wait` to answer, body included, before it is given up as lost. */
const ANSWER_MARGIN_MS = 2_000;
/** The watchdog replaces a loop that has not moved for its request's time limit and this much more. */
const WATCHDOG_MARGIN_MS = 2_000;
const WATCH_INTERVAL_MS = 1_000;
/**
 * A refused client asks again this often: its 401s count against its address's limit on refused
 * requests (README, "Limits on refused requests"), which healthy resource servers on the same
 * host share.
 */
const REFUSED_RETRY_MS = 30_000;
/** After an answer with revocations, the next long poll waits this long (see run). */
const GATHER_MS = 10;

/** The feed's answers that trying again will not fix: the client credentials, or the URL, are wrong. */
const REFUSALS = new Set([400, 401, 403, 404]);

const isString = (value: unknown): value is string => typeof value === 'string';

function isEntry(value: unknown): value is FeedEntry {
  if (typeof value !== 'object' || value === null) return false;
  const entry = value as Record<string, unknown>;
  if (!isString(entry.reason) || !Number.isFinite(entry.until)) return false;
  // A key withdrawal names a kid and no session; any other entry names a session.
  if (entry.sid === undefined) return isString(entry.kid) && entry.jti === undefined;
  return isString(entry.sid) && (entry.jti === undefined || isString(entry.jti)) && entry.kid === undefined;
}

function pageOf(body: unknown): FeedPage {
  const page = (body as { data?: FeedPage } | null)?.data;
  if (
    typeof page?.cursor !== 'string' ||
    typeof page.snapshot !== 'boolean' ||
    typeof page.more !== 'boolean' ||
    !Array.isArray(page.revocations) ||
    !page.revocations.every(isEntry)
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
  onEvent: EventListener;
}

/**
 * Follows the service's revocation feed with long polls and keeps the revocation set current.
 * It is trusted only while the last answer that left nothing to fetch (`more: false`) is at
 * most `maxStalenessSeconds` old: past that, every check fails closed with a 503.
 */
export class RevocationFollower {
  private live = new RevocationSet();
  /** The snapshot being received, page by page; it replaces `live` once complete. */
  private incoming: RevocationSet | undefined;
  private cursor: string | undefined;
  /** performance.now() when the last `more: false` answer arrived. */
  private currentAt: number | undefined;
  /** Once the set is reported stale: when it was last confirmed. */
  private staleSince: number | undefined;
  private refused = false;
  /** Why the last request failed; undefined once one succeeds. */
  lastFailure: unknown;
  private lastForget = -Infinity;
  private closed = false;
  /** Aborted to stop the running loop: on close, or when the watchdog replaces it. */
  private loop = new AbortController();
  /** performance.now() when the running loop last moved: sent a request, or had its answer. */
  private lastMove = performance.now();
  private running: Promise<void>;
  private readonly watchdog: NodeJS.Timeout;
  private readonly waitSeconds: number;
  private readonly answerTimeoutMs: number;
  private markCurrent!: () => void;
  private markFailed!: (error: unknown) => void;
  /** Settles when the set is current for the first time, or when the feed refuses the client. */
  readonly current: Promise<void>;

  constructor(private readonly options: FeedOptions) {
    // Healthy long polls answer at least this often, which leaves time for a retry before the set goes stale.
    this.waitSeconds = Math.min(30, Math.max(1, Math.floor(options.maxStalenessSeconds / 3)));
    this.answerTimeoutMs = this.waitSeconds * 1000 + ANSWER_MARGIN_MS;
    this.current = new Promise<void>((resolve, reject) => {
      this.markCurrent = resolve;
      this.markFailed = reject;
    });
    this.current.catch(() => {}); // ready() reports it; a verifier nobody awaits must not crash the process
    this.running = this.run(this.loop.signal);
    this.watchdog = setInterval(() => this.watch(), WATCH_INTERVAL_MS).unref();
  }

  /** Throws the refusal for a token the feed reports ended, or a 503 while the feed is not trusted. */
  check(claims: AccessClaims): void {
    if (this.closed) throw unverifiable.closed();
    const revocation = this.live.find(claims) ?? this.incoming?.find(claims);
    if (revocation) throw revokedRefusal(revocation.reason);
    if (this.currentAt === undefined) throw unverifiable.feedNotYetCurrent();
    if (this.isStale()) throw unverifiable.feedStale(this.options.maxStalenessSeconds, this.lastFailure);
  }

  /** Whether the feed withdrew the signing key `kid`. */
  withdraws(kid: string): boolean {
    return this.live.withdraws(kid) || (this.incoming?.withdraws(kid) ?? false);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    this.loop.abort();
    this.markFailed(new VerifierClosedError('The verifier was closed before the revocation feed was current.'));
    await this.running;
  }

  private isStale(): boolean {
    return this.currentAt !== undefined && performance.now() - this.currentAt > this.options.maxStalenessSeconds * 1000;
  }

  /**
   * Tells of the set going stale, and replaces a loop that has not moved for longer than its
   * request's time limit: the last defence against a request that never settles.
   */
  private watch(): void {
    if (this.isStale() && this.staleSince === undefined) {
      this.staleSince = this.currentAt;
      const { maxStalenessSeconds: seconds, url } = this.options;
      const reason = this.lastFailure === undefined ? 'no answer yet to the last long poll' : describe(this.lastFailure);
      this.options.onEvent({
        type: 'stale',
        seconds,
        reason,
        message: `The revocation feed at ${url} has not been confirmed current for ${seconds} seconds (${reason}); every token is refused with 503 until it is.`,
      });
    }
    if (performance.now() - this.lastMove > this.answerTimeoutMs + WATCHDOG_MARGIN_MS) {
      this.loop.abort();
      this.loop = new AbortController();
      this.lastMove = performance.now();
      this.running = this.run(this.loop.signal);
    }
  }

  private async run(loop: AbortSignal): Promise<void> {
    let failures = 0;
    while (!loop.aborted) {
      this.lastMove = performance.now();
      try {
        const page = await this.fetchPage(loop);
        if (loop.aborted) return; // replaced meanwhile: the cursor is the new loop's
        this.lastMove = performance.now();
        this.apply(page);
        failures = 0;
        // Revocations come in bursts under load: gathering them for a moment asks the service
        // once per burst rather than once per logout, for a delay of at most this pause.
        if (!page.more && page.revocations.length > 0) await this.pause(GATHER_MS, loop);
      } catch (error) {
        if (loop.aborted) return;
        this.lastMove = performance.now();
        this.lastFailure = error;
        if (error instanceof FeedRefusedError) this.refuse(error);
        await this.pause(error instanceof FeedRefusedError ? REFUSED_RETRY_MS : retryDelayMs(failures++), loop);
      }
    }
  }

  private pause(ms: number, loop: AbortSignal): Promise<void> {
    return sleep(ms, undefined, { signal: loop }).catch(() => {});
  }

  private async fetchPage(loop: AbortSignal): Promise<FeedPage> {
    const query = new URLSearchParams({ wait: String(this.waitSeconds) });
    if (this.cursor !== undefined) query.set('after', this.cursor);
    const { status, body } = await getJson(`${this.options.url}?${query}`, {
      headers: { authorization: this.options.authorization, accept: 'application/json' },
      timeoutMs: this.answerTimeoutMs,
      signal: loop,
    });
    if (status === 200) return pageOf(body);
    const message = (body as { status?: { message?: string } } | undefined)?.status?.message ?? '';
    const why = `The revocation feed at ${this.options.url} answered ${status}${message ? `: ${message}` : '.'}`;
    throw REFUSALS.has(status) ? new FeedRefusedError(why, status) : new Error(why);
  }

  private refuse(error: FeedRefusedError): void {
    this.markFailed(error);
    if (this.refused) return;
    this.refused = true;
    this.options.onEvent({
      type: 'feed-refused',
      status: error.status,
      message: `${error.message} Check url, clientId and clientSecret; every token is refused with 503 until the feed accepts the client (asking again every 30 seconds).`,
    });
  }

  private apply(page: FeedPage): void {
    if (page.snapshot) this.incoming = new RevocationSet();
    for (const entry of page.revocations) {
      if ('kid' in entry && !this.withdraws(entry.kid)) {
        this.options.onEvent({
          type: 'key-withdrawn',
          kid: entry.kid,
          until: entry.until,
          message: `The service withdrew signing key ${entry.kid}: tokens signed with it are refused from now on.`,
        });
      }
      this.live.add(entry);
      this.incoming?.add(entry);
    }
    this.cursor = page.cursor;
    this.refused = false;
    if (!page.more) {
      if (this.incoming) [this.live, this.incoming] = [this.incoming, undefined];
      this.currentAt = performance.now();
      this.lastFailure = undefined;
      this.markCurrent();
      if (this.staleSince !== undefined) {
        const staleSeconds = Math.round((performance.now() - this.staleSince) / 1000);
        this.staleSince = undefined;
        this.options.onEvent({
          type: 'recovered',
          staleSeconds,
          message: `The revocation feed at ${this.options.url} is current again, after ${staleSeconds} seconds unconfirmed: tokens are checked again.`,
        });
      }
    }
    if (performance.now() - this.lastForget >= FORGET_INTERVAL_MS) {
      this.lastForget = performance.now();
      this.live.forgetBefore(Date.now() / 1000 - FORGET_GRACE_SECONDS);
    }
  }
}
