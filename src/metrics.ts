import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { VerifiedSignature } from './domain/tokens.js';
import { OUTCOMES, type Outcome } from './http/failures.js';

/**
 * Prometheus metrics of one server, in a registry of its own. In a worker of a cluster
 * (src/workers.ts) `clusterText` gives the text of every worker's registry summed, since a
 * scrape reaches one worker but must see the whole server.
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

  constructor(
    liveSessions: () => Promise<number>,
    private readonly clusterText?: () => Promise<string>,
  ) {
    for (const outcome of ['logged_out', ...OUTCOMES]) this.logouts.inc({ outcome }, 0);
    for (const signature of ['token', 'user'] satisfies VerifiedSignature[]) this.verifications.inc({ signature }, 0);
    new Gauge({
      name: 'fib_auth_active_sessions',
      help: 'Sessions that are neither revoked nor expired.',
      registers: [this.registry],
      aggregator: 'first', // every worker counts the same store
      async collect() {
        this.set(await liveSessions());
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'fib_auth_' });
  }

  /** Records one answered request; `outcome` is the error layer's, for a refused one. */
  observe(operation: string, status: number, seconds: number, outcome: Outcome | undefined): void {
    const labels = { operation, status: String(status) };
    this.requests.inc(labels);
    this.latency.observe(labels, seconds);
    if (operation === 'logout') this.logouts.inc({ outcome: outcome ?? 'logged_out' });
  }

  /** Counts one signature verification, as the domain reports them. */
  readonly verified = (signature: VerifiedSignature): void => this.verifications.inc({ signature });

  text(): Promise<string> {
    return this.clusterText ? this.clusterText() : this.registry.metrics();
  }
}
