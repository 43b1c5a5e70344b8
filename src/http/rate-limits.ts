import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { operations } from '../../generated/openapi.js';
import type { Clock } from '../domain/clock.js';
import { HttpFailure, type HttpFailureReason } from './failures.js';

type OperationId = keyof operations;

/** At most `limit` refused requests per key in `windowSeconds`; a limit of 0 is none. */
export interface Limit {
  limit: number;
  windowSeconds: number;
}

export interface RateLimitSettings {
  refusedPerAddress: Limit;
  failedSignInsPerEmail: Limit;
  /** How many proxies in front append to X-Forwarded-For (0: the connection's address is the client's). */
  trustProxy: number;
}

/**
 * Keys a counter keeps at most. Past it the oldest window is forgotten: an attacker with more
 * addresses than this is not held back by a per-address limit anyway, and memory stays bounded.
 */
const MAX_KEYS = 100_000;

/**
 * Counts events per key in fixed windows that start at a key's first event. The map is kept in
 * the order the windows started, so expired windows are always at its front.
 */
class WindowCounter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    readonly name: string,
    readonly limit: Limit,
    private readonly now: Clock,
  ) {}

  private live(key: string): { start: number; count: number } | undefined {
    const window = this.windows.get(key);
    return window && window.start + this.limit.windowSeconds * 1000 > this.now() ? window : undefined;
  }

  /** Seconds until `key` may be refused again, when it has used up its window; else undefined. */
  retryAfter(key: string): number | undefined {
    const window = this.live(key);
    if (!window || window.count < this.limit.limit) return undefined;
    return Math.max(1, Math.ceil((window.start + this.limit.windowSeconds * 1000 - this.now()) / 1000));
  }

  count(key: string): void {
    const window = this.live(key);
    if (window) {
      window.count += 1;
      return;
    }
    this.windows.delete(key);
    for (const [oldest, { start }] of this.windows) {
      if (this.windows.size < MAX_KEYS && start + this.limit.windowSeconds * 1000 > this.now()) break;
      this.windows.delete(oldest);
    }
    this.windows.set(key, { start: this.now(), count: 1 });
  }

  /** The draft-ietf-httpapi-ratelimit-headers policy item of this limit. */
  get policy(): string {
    return `"${this.name}";q=${this.limit.limit};w=${this.limit.windowSeconds}`;
  }
}

/** The answers each limited operation counts as refused; any other answer (a success, a 500) never counts. */
const REFUSALS: Partial<Record<OperationId, ReadonlySet<number>>> = {
  authorizeUser: new Set([404, 422]),
  refreshTokens: new Set([401, 422]),
  endSession: new Set([401, 422]),
  logout: new Set([401, 422]),
  introspectToken: new Set([401]),
  listRevocations: new Set([401]),
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

/** One refusal counted against a limit's key, as the processes of one server tell each other. */
export interface CountedRefusal {
  counter: string;
  key: string;
}

/**
 * The other processes serving the same port (workers of a cluster): each tells the others
 * what it counted, so a limit holds for the server, not for each process.
 */
export interface LimitPeers {
  publish(counted: CountedRefusal): void;
  subscribe(listener: (counted: CountedRefusal) => void): void;
}

export interface LimitedRequest {
  operationId: string | undefined;
  address: string;
  /** The email a sign-in names, lower-cased; undefined for other operations. */
  email: string | undefined;
}

/**
 * Limits on refused requests (docs/design.md §12): per client address for every operation that
 * takes credentials, and per email for failed sign-ins. Checked before anything else runs, so a
 * request over a limit costs no signature verification and no lookup; only refusals count.
 * The counters are this instance's own (see §12 for why), shared by its worker processes.
 */
export class RateLimits {
  private readonly perAddress: WindowCounter | undefined;
  private readonly perEmail: WindowCounter | undefined;

  constructor(
    private readonly settings: RateLimitSettings,
    clock: Clock,
    private readonly peers?: LimitPeers,
  ) {
    const { refusedPerAddress, failedSignInsPerEmail } = settings;
    if (refusedPerAddress.limit > 0) this.perAddress = new WindowCounter('refused-per-address', refusedPerAddress, clock);
    if (failedSignInsPerEmail.limit > 0)
      this.perEmail = new WindowCounter('failed-sign-ins-per-email', failedSignInsPerEmail, clock);
    peers?.subscribe(({ counter, key }) => [this.perAddress, this.perEmail].find((c) => c?.name === counter)?.count(key));
  }

  /** Whether any limit applies to `operationId`. */
  appliesTo(operationId: string | undefined): boolean {
    return operationId !== undefined && operationId in REFUSALS && (this.perAddress ?? this.perEmail) !== undefined;
  }

  clientAddress(req: IncomingMessage): string {
    return addressKey(clientAddress(req, this.settings.trustProxy));
  }

  /** Throws the 429 when the request's address, or the email it signs in, has used up its limit. */
  check(request: LimitedRequest): void {
    const counters = this.countersOf(request);
    for (const [counter, key, reason] of counters) {
      const seconds = counter.retryAfter(key);
      if (seconds === undefined) continue;
      throw new HttpFailure(reason, '', {
        'Retry-After': String(seconds),
        'RateLimit-Policy': counters.map(([{ policy }]) => policy).join(', '),
        RateLimit: `"${counter.name}";r=0;t=${seconds}`,
      });
    }
  }

  /** Counts the request when its answer was a refusal. */
  answered(request: LimitedRequest, status: number): void {
    if (!REFUSALS[request.operationId as OperationId]?.has(status)) return;
    for (const [counter, key] of this.countersOf(request)) {
      counter.count(key);
      this.peers?.publish({ counter: counter.name, key });
    }
  }

  private countersOf({ operationId, address, email }: LimitedRequest): [WindowCounter, string, HttpFailureReason][] {
    const counters: [WindowCounter, string, HttpFailureReason][] = [];
    if (this.perAddress) counters.push([this.perAddress, address, 'tooManyRefusedRequests']);
    if (this.perEmail && operationId === 'authorizeUser' && email !== undefined)
      counters.push([this.perEmail, email, 'tooManyFailedSignIns']);
    return counters;
  }
}
