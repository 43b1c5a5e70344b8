import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { operations } from '../../generated/openapi.js';
import type { Clock } from '../domain/clock.js';
import type { HttpFailureReason } from '../contract/failures.js';
import { HttpFailure, type Refusal } from './refusals.js';

type OperationId = keyof operations;

/** At most `limit` counted requests per key in `windowSeconds`; a limit of 0 is none. */
export interface Limit {
  limit: number;
  windowSeconds: number;
}

export interface RateLimitSettings {
  refusedPerAddress: Limit;
  /** Sign-ins whose signature does not verify with the user's registered key, per email and client address. */
  failedSignInsPerEmail: Limit;
  /** Challenges issued, per client address: each one is a row in the store until it expires. */
  challengesPerAddress: Limit;
  /** How many proxies in front append to X-Forwarded-For (0: the connection's address is the client's). */
  trustProxy: number;
}

/**
 * Keys a counter keeps at most. Past it the older half is forgotten: an attacker with more
 * addresses than this is not held back by a per-address limit anyway, and memory stays bounded,
 * as every key is 22 characters (limitKey): about 13 MiB per limit at the bound.
 */
const MAX_KEYS = 100_000;

/**
 * The key a counter keeps for what it counts a request by: the first 128 bits of its SHA-256,
 * in base64url (22 characters), so a key takes the same few bytes in each worker's table and
 * on the IPC channel for an address and for a 16 KiB email alike, and no two subjects share one.
 */
const limitKey = (subject: string): string => createHash('sha256').update(subject).digest().subarray(0, 16).toString('base64url');

interface Window {
  start: number;
  count: number;
}

/**
 * Counts events per key in fixed windows that start at a key's first event. Windows are kept in
 * two generations, each a map of at most MAX_KEYS / 2 keys, and forgotten a generation at a time:
 * once the newer generation is a window long, everything in the older one has ended. Deleting
 * single entries from the front of one large map instead leaves holes that every later insertion
 * walks past (V8 compacts a map only when it grows): 50,000 live keys cost 50 µs per count.
 */
class WindowCounter {
  private newer = new Map<string, Window>();
  private older = new Map<string, Window>();
  private newerSince: number;

  constructor(
    readonly name: string,
    readonly limit: Limit,
    private readonly now: Clock,
  ) {
    this.newerSince = now();
  }

  private get windowMs(): number {
    return this.limit.windowSeconds * 1000;
  }

  private live(key: string): Window | undefined {
    const window = this.newer.get(key) ?? this.older.get(key);
    return window && window.start + this.windowMs > this.now() ? window : undefined;
  }

  /** Seconds until `key` may be counted again, when it has used up its window; else undefined. */
  retryAfter(key: string): number | undefined {
    const window = this.live(key);
    if (!window || window.count < this.limit.limit) return undefined;
    return Math.max(1, Math.ceil((window.start + this.windowMs - this.now()) / 1000));
  }

  count(key: string): void {
    const window = this.live(key);
    if (window) {
      window.count += 1;
      return;
    }
    const now = this.now();
    if (this.newer.size >= MAX_KEYS / 2 || now - this.newerSince >= this.windowMs) {
      this.older = this.newer;
      this.newer = new Map();
      this.newerSince = now;
    }
    this.newer.set(key, { start: now, count: 1 });
  }

  /** The draft-ietf-httpapi-ratelimit-headers policy item of this limit. */
  get policy(): string {
    return `"${this.name}";q=${this.limit.limit};w=${this.limit.windowSeconds}`;
  }
}

/** How a request was answered, as the limits read it: its status, and a refusal's reason. */
export interface Answer {
  status: number;
  reason?: Refusal['reason'];
}

/**
 * The answers each operation counts as refused against the per-address limit; any other answer
 * (a success, a 500) never counts. Every operation is listed, so a new one needs a decision:
 * one that takes credentials or guesses names the statuses that refuse them; one that does not
 * says so with an empty set, and the limit leaves it alone.
 */
const REFUSALS: Record<OperationId, ReadonlySet<number>> = {
  authorizeUser: new Set([404, 422]),
  refreshTokens: new Set([401, 422]),
  endSession: new Set([401, 422]),
  logout: new Set([401, 422]),
  introspectToken: new Set([401]),
  listRevocations: new Set([401]),
  // Shared Signals: the stream's owner authenticates as a resource-server client (docs/design.md §15).
  createStream: new Set([401]),
  readStreams: new Set([401]),
  replaceStream: new Set([401]),
  updateStream: new Set([401]),
  deleteStream: new Set([401]),
  readStreamStatus: new Set([401]),
  updateStreamStatus: new Set([401]),
  verifyStream: new Set([401]),
  pollStream: new Set([401]),
  // Limited by challengesPerAddress instead: every challenge counts, refused or not.
  createSignInChallenge: new Set(),
  // Public and credential-free: nothing to guess.
  getJwks: new Set(),
  getAuthorizationServerMetadata: new Set(),
  getSsfConfiguration: new Set(),
  getLiveness: new Set(),
  getReadiness: new Set(),
};

/** What one limit counts, by what, and how it answers a request over it (docs/design.md §12.3). */
interface LimitRule {
  /** Its name in the RateLimit and RateLimit-Policy headers. */
  name: string;
  /** The 429 of the failure table it answers with. */
  reason: HttpFailureReason;
  /** The operations it limits. */
  operations: ReadonlySet<string | undefined>;
  /** What it counts a request by; undefined when the request names nothing to count by. */
  subject(request: LimitedRequest): string | undefined;
  /**
   * Whether the request counts against it: asked once when the request is admitted, without an
   * answer, and once more with its answer.
   */
  counts(request: LimitedRequest, answer?: Answer): boolean;
}

const RULES: Record<Exclude<keyof RateLimitSettings, 'trustProxy'>, LimitRule> = {
  refusedPerAddress: {
    name: 'refused-per-address',
    reason: 'tooManyRefusedRequests',
    operations: new Set(Object.entries(REFUSALS).flatMap(([operation, refused]) => (refused.size > 0 ? [operation] : []))),
    subject: ({ address }) => address,
    counts: ({ operationId }, answer) =>
      answer !== undefined && REFUSALS[operationId as OperationId]?.has(answer.status) === true,
  },
  // Only a signature that the user's own registered key does not verify: not an unknown email
  // (404), another key, nor a nonce refused (a loser of a race for it), which say nothing of a
  // guess at this user's signature. Per address too, so nobody locks a user out from elsewhere.
  failedSignInsPerEmail: {
    name: 'failed-sign-ins-per-email-and-address',
    reason: 'tooManyFailedSignIns',
    operations: new Set(['authorizeUser']),
    subject: ({ address, email }) => (email === undefined ? undefined : `${address}\n${email}`),
    counts: (_request, answer) => answer?.reason === 'signatureNotVerified',
  },
  // Every challenge asked for, not only refusals: each one issued is stored until it expires.
  // Counted when admitted, so requests in flight cannot take more than the limit.
  challengesPerAddress: {
    name: 'challenges-per-address',
    reason: 'tooManyChallenges',
    operations: new Set(['createSignInChallenge']),
    subject: ({ address }) => address,
    counts: (_request, answer) => answer === undefined,
  },
};

/**
 * One IPv6 client usually holds a whole /64, so that is what is counted; an IPv4 address
 * mapped into IPv6 is the IPv4 address.
 */
export function addressKey(address: string): string {
  if (isIP(address) !== 6) return address;
  if (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address)) return address.slice(7);
  const [head, tail = ''] = address.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = address.includes('::')
    ? [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups]
    : headGroups;
  return `${groups
    .slice(0, 4)
    .map((group) => Number.parseInt(group, 16).toString(16))
    .join(':')}::/64`;
}

/**
 * The client's address: the connection's, or behind `trustProxy` proxies that each append the
 * address they saw to X-Forwarded-For, the one the outermost of them saw. Entries further left
 * were written by the client and are not trusted.
 */
export function clientAddress(req: IncomingMessage, trustProxy: number): string {
  const socketAddress = req.socket.remoteAddress ?? '';
  const forwarded = trustProxy > 0 ? req.headersDistinct['x-forwarded-for'] : undefined;
  if (!forwarded) return socketAddress;
  const hops = forwarded.flatMap((value) => value.split(',')).map((entry) => entry.trim());
  const seen = hops.slice(-trustProxy)[0];
  return isIP(seen) ? seen : socketAddress;
}

/** One request counted against a limit's key, as the processes of one server tell each other. */
export interface CountedRequest {
  counter: string;
  /** A limitKey: a few bytes, whatever the request carried. */
  key: string;
}

/**
 * The other processes serving the same port (workers of a cluster): each tells the others
 * what it counted, so a limit holds for the server, not for each process.
 */
export interface LimitPeers {
  publish(counted: CountedRequest): void;
  subscribe(listener: (counted: CountedRequest) => void): void;
}

export interface LimitedRequest {
  operationId: string | undefined;
  address: string;
  /** The email a sign-in names, lower-cased; undefined for other operations. */
  email: string | undefined;
}

/**
 * The limits of docs/design.md §12.3: refused requests per client address for every operation
 * that takes credentials, failed signatures per email and address, and challenges per address.
 * Checked before anything else runs, so a request over a limit costs no signature verification,
 * no lookup and no row. The counters are this instance's own (see §12.3 for why), shared by its
 * worker processes.
 */
export class RateLimits {
  private readonly limits: { rule: LimitRule; counter: WindowCounter }[];

  constructor(
    private readonly settings: RateLimitSettings,
    clock: Clock,
    private readonly peers?: LimitPeers,
  ) {
    this.limits = (Object.keys(RULES) as (keyof typeof RULES)[])
      .filter((name) => settings[name].limit > 0)
      .map((name) => ({ rule: RULES[name], counter: new WindowCounter(RULES[name].name, settings[name], clock) }));
    peers?.subscribe(({ counter, key }) => this.limits.find((limit) => limit.counter.name === counter)?.counter.count(key));
  }

  /** Whether any limit applies to `operationId`. */
  appliesTo(operationId: string | undefined): boolean {
    return this.limits.some(({ rule }) => rule.operations.has(operationId));
  }

  clientAddress(req: IncomingMessage): string {
    return addressKey(clientAddress(req, this.settings.trustProxy));
  }

  /**
   * Throws the 429 when a limit that applies to the request is used up; otherwise returns what
   * to call with the request's answer, which counts it where it counts.
   */
  admit(request: LimitedRequest): (answer: Answer) => void {
    const applying = this.limits.flatMap(({ rule, counter }) => {
      const subject = rule.operations.has(request.operationId) ? rule.subject(request) : undefined;
      return subject === undefined ? [] : [{ rule, counter, key: limitKey(subject) }];
    });
    for (const { rule, counter, key } of applying) {
      const seconds = counter.retryAfter(key);
      if (seconds === undefined) continue;
      throw new HttpFailure(rule.reason, '', {
        'Retry-After': String(seconds),
        'RateLimit-Policy': applying.map(({ counter: { policy } }) => policy).join(', '),
        RateLimit: `"${counter.name}";r=0;t=${seconds}`,
      });
    }
    const count = (answer?: Answer) => {
      for (const { rule, counter, key } of applying) {
        if (!rule.counts(request, answer)) continue;
        counter.count(key);
        this.peers?.publish({ counter: counter.name, key });
      }
    };
    count();
    return count;
  }
}
