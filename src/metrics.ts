import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { VerifiedSignature } from './domain/tokens.js';
import { OUTCOMES, type Outcome } from './contract/failures.js';
import type { Logger } from './logger.js';

/**
 * How often the live sessions are counted. Counting reads the sessions' index, which at a
 * million sessions takes long enough to stall the process's other work (docs/design.md §8), so it
 * runs on a timer, whatever the scrapes: Prometheus's usual scrape interval.
 */
const LIVE_SESSIONS_INTERVAL_MS = 15_000;

/**
 * Prometheus metrics of one process that serves HTTP, in a registry of its own. A cluster's
 * primary sums its workers' registries (src/cluster/metrics-relay.ts).
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'fib_auth_http_requests_total',
    help: 'HTTP requests answered, by operation and status.',
    labelNames: ['operation', 'status'],
    registers: [this.registry],
  });
  private readonly latency = new Histogram({
    name: 'fib_auth_http_request_duration_seconds',
    help: 'Time to answer HTTP requests, by operation and status.',
    labelNames: ['operation', 'status'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  private readonly logouts = new Counter({
    name: 'fib_auth_logout_outcomes_total',
    help: 'Logout attempts by outcome.',
    labelNames: ['outcome'],
    registers: [this.registry],
  });

  private readonly verifications = new Counter({
    name: 'fib_auth_signature_verifications_total',
    help: "Ed25519 signatures verified: a token's, or a user's sign-in proof.",
    labelNames: ['signature'],
    registers: [this.registry],
  });

  private readonly securityEventDeliveries = new Histogram({
    name: 'fib_auth_ssf_delivery_seconds',
    help: "Time from a Shared Signals event's queueing to its delivery: acknowledged by a poll, or answered 202 to a push.",
    labelNames: ['method'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });

  constructor() {
    for (const outcome of ['logged_out', ...OUTCOMES]) this.logouts.inc({ outcome }, 0);
    for (const signature of ['token', 'user'] satisfies VerifiedSignature[]) this.verifications.inc({ signature }, 0);
    collectDefaultMetrics({ register: this.registry, prefix: 'fib_auth_' });
  }

  /** Records one answered request; `outcome` is the error layer's, for a refused one. */
  observe(operation: string, status: number, seconds: number, outcome: Outcome | undefined): void {
    const labels = { operation, status: String(status) };
    this.requests.inc(labels);
    this.latency.observe(labels, seconds);
    if (operation === 'logout') this.logouts.inc({ outcome: outcome ?? 'logged_out' });
  }

  /** Records one Shared Signals delivery (docs/design.md §15). */
  readonly securityEventDelivered = (method: 'poll' | 'push', seconds: number): void =>
    this.securityEventDeliveries.observe({ method }, seconds);

  /** Counts one signature verification, as the domain reports them. */
  readonly verified = (signature: VerifiedSignature): void => this.verifications.inc({ signature });
}

/**
 * Puts `fib_auth_active_sessions` into `registry`, counted now and then on a timer, never by a
 * scrape: a scrape costs the same at any number of sessions. One process of a server counts
 * (the primary of a cluster). Resolves once counted, with the function that stops the timer.
 */
export async function countLiveSessions(registry: Registry, count: () => Promise<number>, logger: Logger): Promise<() => void> {
  const gauge = new Gauge({
    name: 'fib_auth_active_sessions',
    help: `Sessions that are neither revoked nor expired, counted every ${LIVE_SESSIONS_INTERVAL_MS / 1000} s.`,
    registers: [registry],
  });
  const update = () =>
    count().then(
      (sessions) => gauge.set(sessions),
      (err: unknown) => logger.warn({ err }, 'counting the live sessions failed; the gauge keeps its last count'),
    );
  const timer = setInterval(() => void update(), LIVE_SESSIONS_INTERVAL_MS).unref();
  await update();
  return () => clearInterval(timer);
}
