import { AsyncLocalStorage } from 'node:async_hooks';
import { channel } from 'node:diagnostics_channel';

/**
 * Where each request's wall time went, phase by phase (docs/design.md §8): off unless a module
 * subscribed to REQUEST_PHASES_CHANNEL before the server started, as `npm run bench:profile`
 * preloads one. The parts that mark phases are installed at start-up only when timing is on;
 * otherwise the request path runs as if this module did not exist, and the group commit's one
 * check costs a property read per batch.
 */
export const REQUEST_PHASES_CHANNEL = 'fib-auth:request-phases';

/**
 * The phases of a logout, in order. Each mark ends the phase named and starts the next; the
 * time between two marks belongs to the later one, so the phases of a request add up to its
 * time in the server, from Koa's first middleware to the response's `finish`.
 */
export const PHASES = [
  'route', // request id, headers, CORS, the route and the body read (src/http/app.ts)
  'validate', // openapi-backend: match, parse, the Authorization header, validation, until the handler starts
  'verify', // the token's signature and claims
  'queue', // the write waits for its batch: the next turn of the event loop, or the batch before it
  'lock', // the batch waits for SQLite's write lock, held by another process
  'statement', // the batch's statements up to this request's own
  'commit', // the batch's statements after it, and COMMIT with its fsync
  'handler', // from the commit (or the last mark) until the handler's answer is back in Koa
  'log', // the metrics and the request's log line
  'answer', // Koa writes the response, until its finish
] as const;
export type Phase = (typeof PHASES)[number];

/** What the group commit tells a request of the batch its write was in. */
export interface BatchFacts {
  writes: number;
  lockRetries: number;
  /** How long COMMIT took (its fsync), ms. */
  commitMs: number;
}

/** One request's timeline. */
export class RequestPhases {
  /** Epoch milliseconds at the first middleware. */
  readonly startedAt = performance.timeOrigin + performance.now();
  /** Milliseconds in each phase marked so far. */
  readonly ms: Partial<Record<Phase, number>> = {};
  operation: string | undefined;
  status = 0;
  batch: BatchFacts | undefined;
  private last = performance.now();

  /** Ends `phase` at `at` (performance.now()); a phase marked twice adds up. */
  mark(phase: Phase, at = performance.now()): void {
    this.ms[phase] = (this.ms[phase] ?? 0) + (at - this.last);
    this.last = at;
  }
}

const finished = channel(REQUEST_PHASES_CHANNEL);
const current = new AsyncLocalStorage<RequestPhases>();

/** Whether timing was asked for; read once, at start-up, by whatever installs the marks. */
export const phaseTimingRequested = (): boolean => finished.hasSubscribers;

/** Runs `work` (one request) with a timeline of its own; publishes it once `done` is called. */
export function timeRequest<T>(work: (phases: RequestPhases, done: () => void) => T): T {
  const phases = new RequestPhases();
  return current.run(phases, work, phases, () => finished.publish(phases));
}

/** The timeline of the request being served here; undefined when timing is off. */
export const currentPhases = (): RequestPhases | undefined => current.getStore();

/** Replaces `object[method]` so that the phase before it is marked at its call and `phase` once it resolves. */
export function markAround<K extends string, O extends Record<K, (...args: never[]) => Promise<unknown>>>(
  object: O,
  method: K,
  before: Phase,
  phase: Phase,
): void {
  const original = object[method].bind(object) as (...args: unknown[]) => Promise<unknown>;
  object[method] = (async (...args: unknown[]) => {
    currentPhases()?.mark(before);
    const result = await original(...args);
    currentPhases()?.mark(phase);
    return result;
  }) as unknown as O[K];
}

/** The batch timestamps the group commit takes when timing is on, marked into each request of the batch. */
export class BatchTiming {
  private readonly startedAt = performance.now();
  private lockedAt = 0;
  private lockRetries = 0;
  private commitStartedAt = 0;
  private readonly statementEnds: number[] = [];

  retried(): void {
    this.lockRetries++;
  }
  locked(): void {
    this.lockedAt = performance.now();
  }
  statementDone(): void {
    this.statementEnds.push(performance.now());
  }
  committing(): void {
    this.commitStartedAt = performance.now();
  }
  /** After COMMIT: each request of the batch, in order, gets its phases. */
  committed(requests: readonly (RequestPhases | undefined)[]): void {
    const committedAt = performance.now();
    const batch = { writes: requests.length, lockRetries: this.lockRetries, commitMs: committedAt - this.commitStartedAt };
    requests.forEach((phases, i) => {
      if (!phases) return;
      phases.mark('queue', this.startedAt);
      phases.mark('lock', this.lockedAt);
      phases.mark('statement', this.statementEnds[i]);
      phases.mark('commit', committedAt);
      phases.batch = batch;
    });
  }
}
