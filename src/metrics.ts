import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { AuthFailure } from './domain/failures.js';

const LOGOUT_OUTCOMES = [
  'logged_out',
  'already_over',
  'expired',
  'bad_signature',
  'unknown_user',
  'unreadable',
  'unacceptable',
  'bad_request',
  'error',
] as const;
type LogoutOutcome = (typeof LOGOUT_OUTCOMES)[number];

function logoutOutcome(status: number, error: unknown): LogoutOutcome {
  if (status === 200) return 'logged_out';
  if (!(error instanceof AuthFailure)) return status === 400 ? 'bad_request' : 'error';
  switch (error.kind) {
    case 'credentials-unreadable':
      return 'unreadable';
    case 'token-untrusted':
      return 'bad_signature';
    case 'token-unacceptable':
      return error.messageId === 'accessTokenExpired' ? 'expired' : 'unacceptable';
    case 'user-not-found':
      return 'unknown_user';
    case 'session-over':
      return 'already_over';
    default:
      return 'error';
  }
}

/** Prometheus metrics of one server, in a registry of its own. */
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

  constructor(liveSessions: () => Promise<number>) {
    for (const outcome of LOGOUT_OUTCOMES) this.logouts.inc({ outcome }, 0);
    new Gauge({
      name: 'fib_auth_active_sessions',
      help: 'Sessions that are neither revoked nor expired.',
      registers: [this.registry],
      async collect() {
        this.set(await liveSessions());
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'fib_auth_' });
  }

  /** Records one answered request; `error` is what the error layer turned into the answer, if anything. */
  observe(operation: string, status: number, seconds: number, error: unknown): void {
    const labels = { operation, status: String(status) };
    this.requests.inc(labels);
    this.latency.observe(labels, seconds);
    if (operation === 'logout') this.logouts.inc({ outcome: logoutOutcome(status, error) });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
