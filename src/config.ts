import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';

export interface Config {
  /** Processes that serve HTTP (docs/design.md §13); one serves from the process itself. */
  workers: number;
  port: number;
  host: string;
  databaseUrl: string;
  /** PostgreSQL connections per instance; SQLite has one. */
  databasePoolSize: number;
  /** Seconds a database connection, statement or open transaction may take before it fails. */
  databaseTimeout: number;
  signingKeyFile: string;
  accessTokenTtl: number;
  refreshTokenTtl: number;
  logLevel: string;
  /** Origins whose browser pages may call the API; none by default. */
  corsOrigins: ReadonlySet<string>;
  /** Whether a sign-in must answer a challenge (docs/design.md §12). */
  signInChallenge: 'optional' | 'required';
  /** Seconds a sign-in challenge's nonce stays usable. */
  signInChallengeTtl: number;
  /** Refused requests (401, 422; failed sign-ins) per client address per window; 0 disables the limit. */
  rateLimitRefusedPerAddress: number;
  rateLimitRefusedPerAddressWindow: number;
  /** Sign-ins whose signature does not verify, per email and client address per window; 0 disables the limit. */
  rateLimitFailedSignInsPerEmail: number;
  rateLimitFailedSignInsPerEmailWindow: number;
  /** Sign-in challenges issued per client address per window; 0 disables the limit. */
  rateLimitChallengesPerAddress: number;
  rateLimitChallengesPerAddressWindow: number;
  /** How many proxies in front append to X-Forwarded-For; 0 takes the client address from the connection. */
  trustProxy: number;
  /** Seconds a client may take to send the request line and headers, and the whole request. */
  headersTimeout: number;
  requestTimeout: number;
  /** Open connections at most; more are closed at once. */
  maxConnections: number;
  /** Open connections at most from one client address (an IPv6 /64), where clients connect directly (trustProxy 0). */
  maxConnectionsPerAddress: number;
  /** Long polls of the revocation feed that one client may hold open at once. */
  maxLongPollsPerClient: number;
  /** Where the management listener serves the metrics (docs/design.md §8), apart from the public port. */
  managementPort: number;
  managementHost: string;
  /** The origin that names this service in what it signs (`iss`): Shared Signals' issuer (docs/design.md §14). */
  issuer: string;
}

/** A configuration value that cannot be used; the CLI prints its message as one line and exits 1. */
export class ConfigError extends Error {}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const logLevel = env.LOG_LEVEL || 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }
  const databaseUrl = env.DATABASE_URL || 'sqlite:./var/fib-auth.sqlite';
  if (!/^(sqlite:.+|postgres(ql)?:\/\/.+)$/.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must be sqlite:PATH, sqlite::memory: or postgres://...');
  }
  const corsOrigins = (env.CORS_ORIGINS ?? '')
    .split(',')
    .map((origin) => origin.trim())
    .filter(Boolean);
  for (const origin of corsOrigins) {
    if (!URL.canParse(origin) || new URL(origin).origin !== origin) {
      throw new ConfigError(
        `CORS_ORIGINS must list origins such as https://app.example.com, separated by commas; got ${JSON.stringify(origin)}`,
      );
    }
  }
  const signInChallenge = env.SIGN_IN_CHALLENGE || 'optional';
  if (signInChallenge !== 'optional' && signInChallenge !== 'required') {
    throw new ConfigError(`SIGN_IN_CHALLENGE must be optional or required, got ${JSON.stringify(signInChallenge)}`);
  }
  // A database in memory belongs to one process: it is served by that process alone.
  const inMemory = databaseUrl === 'sqlite::memory:';
  const workers = integer(env, 'WORKERS', inMemory ? 1 : availableParallelism(), 1, 64);
  if (inMemory && workers > 1)
    throw new ConfigError('WORKERS must be 1 with DATABASE_URL=sqlite::memory: (one process holds it)');
  const headersTimeout = integer(env, 'HEADERS_TIMEOUT', 10, 1, 3600);
  const requestTimeout = integer(env, 'REQUEST_TIMEOUT', 30, 1, 3600);
  // Node refuses a headers timeout longer than the request's, which includes the headers.
  if (headersTimeout > requestTimeout) {
    throw new ConfigError(`HEADERS_TIMEOUT (${headersTimeout}) must not be longer than REQUEST_TIMEOUT (${requestTimeout})`);
  }
  const port = integer(env, 'PORT', 8080, 0, 65535);
  const managementPort = integer(env, 'MANAGEMENT_PORT', 9000, 0, 65535);
  if (port !== 0 && managementPort === port) {
    throw new ConfigError(`MANAGEMENT_PORT must not be PORT (${port}): the metrics are served apart from the API`);
  }
  const issuer = env.ISSUER || `http://localhost:${port}`;
  if (!URL.canParse(issuer) || new URL(issuer).origin !== issuer) {
    throw new ConfigError(`ISSUER must be an origin such as https://auth.example.com, got ${JSON.stringify(issuer)}`);
  }
  return {
    workers,
    port,
    host: env.HOST || '0.0.0.0',
    databaseUrl,
    databasePoolSize: integer(env, 'DATABASE_POOL_SIZE', 10, 1, 1000),
    databaseTimeout: integer(env, 'DATABASE_TIMEOUT', 5, 1, 3600),
    signingKeyFile: resolve(env.FIB_AUTH_SIGNING_KEY_FILE || './var/signing-key.pem'),
    accessTokenTtl: integer(env, 'ACCESS_TOKEN_TTL', 300, 1, 2 ** 31 - 1),
    refreshTokenTtl: integer(env, 'REFRESH_TOKEN_TTL', 86400, 1, 2 ** 31 - 1),
    logLevel,
    corsOrigins: new Set(corsOrigins),
    signInChallenge,
    signInChallengeTtl: integer(env, 'SIGN_IN_CHALLENGE_TTL', 60, 1, 3600),
    rateLimitRefusedPerAddress: integer(env, 'RATE_LIMIT_REFUSED_PER_ADDRESS', 100, 0, 1_000_000),
    rateLimitRefusedPerAddressWindow: integer(env, 'RATE_LIMIT_REFUSED_PER_ADDRESS_WINDOW', 60, 1, 86400),
    rateLimitFailedSignInsPerEmail: integer(env, 'RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL', 10, 0, 1_000_000),
    rateLimitFailedSignInsPerEmailWindow: integer(env, 'RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL_WINDOW', 300, 1, 86400),
    rateLimitChallengesPerAddress: integer(env, 'RATE_LIMIT_CHALLENGES_PER_ADDRESS', 30, 0, 1_000_000),
    rateLimitChallengesPerAddressWindow: integer(env, 'RATE_LIMIT_CHALLENGES_PER_ADDRESS_WINDOW', 60, 1, 86400),
    trustProxy: integer(env, 'TRUST_PROXY', 0, 0, 16),
    headersTimeout,
    requestTimeout,
    maxConnections: integer(env, 'MAX_CONNECTIONS', 4096, 1, 1_000_000),
    maxConnectionsPerAddress: integer(env, 'MAX_CONNECTIONS_PER_ADDRESS', 256, 1, 1_000_000),
    maxLongPollsPerClient: integer(env, 'MAX_LONG_POLLS_PER_CLIENT', 16, 1, 10_000),
    managementPort,
    managementHost: env.MANAGEMENT_HOST || '127.0.0.1',
    issuer,
  };
}
