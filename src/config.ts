import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { Lifetimes } from './domain/lifetimes.js';
import type { StoreLog, StoreOptions } from './store/open.js';

/**
 * The server's settings, one entry of SETTINGS per environment variable: `loadConfig` parses
 * and checks them from it, and `npm run gen` writes the README's and docs/design.md §8's
 * configuration tables from it (scripts/config-tables.ts). A new variable is one entry here,
 * plus the code that uses its value, then `npm run gen`; for example
 *
 *     pollInterval: integer('POLL_INTERVAL', 30, [1, 3600], { unit: 'seconds', description: '…', see: { design: '§11' } }),
 *
 * gives `config.pollInterval`, a number, and its row in both tables. `text`, `oneOf` and a
 * literal `{ variable, fallback, values, description, parse }` make the others. A rule that
 * relates several settings is one entry of CHECKS.
 */

/** A configuration value that cannot be used; the CLI prints its message as one line and exits 1. */
export class ConfigError extends Error {}

type Environment = NodeJS.ProcessEnv;

/** Where the README (a heading of it) and docs/design.md (a section) say more about a setting. */
export interface SeeAlso {
  readme?: string;
  design?: string;
}

export interface Setting<T> {
  /** The environment variable; an empty value counts as unset. */
  readonly variable: string;
  /** The text used when the variable is unset, parsed as a value given would be; or worked out from the environment. */
  readonly fallback: string | ((env: Environment) => string);
  /** The default as the tables show it, when `fallback` is worked out. */
  readonly shownDefault?: string;
  /** The values it accepts, as the tables show them. */
  readonly values: string;
  /** What it sets, for both tables. */
  readonly description: string;
  readonly see?: SeeAlso;
  /** The value of the text, or a ConfigError naming the variable. */
  readonly parse: (text: string) => T;
}

interface Described {
  description: string;
  see?: SeeAlso;
  shownDefault?: string;
}

/** 1000000 as 10⁶ and 2147483647 as 2³¹−1, as the tables write bounds. */
function shownNumber(n: number): string {
  if (n === 2 ** 31 - 1) return '2³¹−1';
  const power = Math.log10(n);
  return n >= 10_000 && Number.isInteger(power)
    ? `10${[...String(power)].map((digit) => '⁰¹²³⁴⁵⁶⁷⁸⁹'[Number(digit)]).join('')}`
    : String(n);
}

/** A whole number from `min` to `max`, of `unit` (seconds) when it has one. */
function integer(
  variable: string,
  fallback: number | ((env: Environment) => number),
  [min, max]: [number, number],
  described: Described & { unit?: 'seconds' },
): Setting<number> {
  const { unit, ...rest } = described;
  return {
    variable,
    fallback: typeof fallback === 'number' ? String(fallback) : (env) => String(fallback(env)),
    values: `${unit ? `${unit}, ` : 'integer '}${shownNumber(min)}–${shownNumber(max)}`,
    ...rest,
    parse(text) {
      if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
        throw new ConfigError(`${variable} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
      }
      return Number(text);
    },
  };
}

/** "a or b", "one of a, b or c". */
function alternatives(choices: readonly string[]): string {
  const listed = `${choices.slice(0, -1).join(', ')} or ${choices.at(-1)}`;
  return choices.length > 2 ? `one of ${listed}` : listed;
}

/** One of `choices`. */
function oneOf<const T extends string>(variable: string, choices: readonly T[], fallback: T, described: Described): Setting<T> {
  return {
    variable,
    fallback,
    values: choices.map((choice) => `\`${choice}\``).join(', '),
    ...described,
    parse(text) {
      if (!(choices as readonly string[]).includes(text)) {
        throw new ConfigError(`${variable} must be ${alternatives(choices)}, got ${JSON.stringify(text)}`);
      }
      return text as T;
    },
  };
}

/** Any text: an address to listen on. */
function text(variable: string, fallback: string, described: Described & { values: string }): Setting<string> {
  return { variable, fallback, ...described, parse: (value) => value };
}

const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]'];

/** ISSUER: an origin (no path, query or fragment), https unless it is a loopback address; unset is undefined. */
function issuerOf(raw: string): string | undefined {
  if (raw === '') return undefined;
  const url = URL.canParse(raw) ? new URL(raw) : undefined;
  if (!url || url.origin !== raw.replace(/\/$/, '') || !['https:', 'http:'].includes(url.protocol)) {
    throw new ConfigError(
      `ISSUER must be the service's public origin, such as https://auth.example.com (no path), got ${JSON.stringify(raw)}`,
    );
  }
  if (url.protocol === 'http:' && !LOOPBACK_HOSTS.includes(url.hostname)) {
    throw new ConfigError(`ISSUER must use https unless its host is localhost, 127.0.0.1 or [::1], got ${JSON.stringify(raw)}`);
  }
  return url.origin;
}

const IN_MEMORY_DATABASE = 'sqlite::memory:';

/** The settings, by their name in Config, in the order of the tables. */
export const SETTINGS = {
  workers: integer('WORKERS', (env) => (env.DATABASE_URL === IN_MEMORY_DATABASE ? 1 : availableParallelism()), [1, 64], {
    shownDefault: 'the number of cores',
    description: 'processes that serve HTTP on the one port; `1` serves from the `fib-auth serve` process itself',
    see: { readme: 'Worker processes', design: '§13' },
  }),
  port: integer('PORT', 8080, [0, 65535], { description: 'port to listen on; 0 picks a free one' }),
  host: text('HOST', '0.0.0.0', { values: 'an address', description: 'address to listen on' }),
  managementPort: integer('MANAGEMENT_PORT', 9000, [0, 65535], {
    description:
      'port of the management listener, which serves `/metrics`, apart from the API. A port already in use stops start-up (exit 1)',
    see: { readme: 'Metrics and health' },
  }),
  managementHost: text('MANAGEMENT_HOST', '127.0.0.1', {
    values: 'an address',
    description:
      'its address: the loopback address keeps the metrics off the network; give the address your Prometheus reaches (`0.0.0.0` in a container)',
  }),
  databaseUrl: {
    variable: 'DATABASE_URL',
    fallback: 'sqlite:./var/fib-auth.sqlite',
    values: `\`sqlite:PATH\`, \`${IN_MEMORY_DATABASE}\`, \`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE\``,
    description:
      'the store; PostgreSQL for several instances. A SQLite file is created mode 0600 (its `-wal` and `-shm` files follow it); an existing one that others may read or change is made owner-only at start, with a `warn` line naming it',
    see: { readme: 'PostgreSQL and several instances', design: '§7' },
    parse(url: string): string {
      if (!/^(sqlite:.+|postgres(ql)?:\/\/.+)$/.test(url)) {
        throw new ConfigError(`DATABASE_URL must be sqlite:PATH, ${IN_MEMORY_DATABASE} or postgres://...`);
      }
      return url;
    },
  },
  databasePoolSize: integer('DATABASE_POOL_SIZE', 10, [1, 1000], {
    description:
      'PostgreSQL connections each process may open: each worker and the primary have a pool; on SQLite each process has one connection',
    see: { readme: 'PostgreSQL and several instances' },
  }),
  databaseTimeout: integer('DATABASE_TIMEOUT', 5, [1, 3600], {
    unit: 'seconds',
    description:
      'how long getting a database connection, one statement, or waiting for the SQLite write lock may take before the request fails with a 500',
    see: { design: '§7' },
  }),
  signingKeyFile: {
    variable: 'FIB_AUTH_SIGNING_KEY_FILE',
    fallback: './var/signing-key.pem',
    values: 'a file path',
    description:
      "Ed25519 PKCS#8 PEM; created with mode 0600 when absent. A file that other users can read or change, or that belongs to another user than the server's (or root), stops start-up (exit 1): `chmod 600` it. The key files of rotation beside it are checked alike",
    see: { readme: 'Keys and rotation', design: '§5' },
    parse: (path: string) => resolve(path),
  },
  accessTokenTtl: integer('ACCESS_TOKEN_TTL', 300, [1, 2 ** 31 - 1], {
    unit: 'seconds',
    description:
      'access-token lifetime; `fib-auth-resource-server` refuses tokens that live longer than its `maxTokenAgeSeconds` (3600 by default), so raise that option with it',
    see: { design: '§5' },
  }),
  refreshTokenTtl: integer('REFRESH_TOKEN_TTL', 86400, [1, 2 ** 31 - 1], {
    unit: 'seconds',
    description: 'refresh-token lifetime',
    see: { design: '§5' },
  }),
  logLevel: oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info', {
    description: 'the least severe log lines written',
  }),
  corsOrigins: {
    variable: 'CORS_ORIGINS',
    fallback: '',
    values: 'origins such as `https://app.example.com`, separated by commas',
    description: 'origins whose browser pages may call the API',
    see: { design: '§9' },
    parse(list: string): ReadonlySet<string> {
      const origins = list
        .split(',')
        .map((origin) => origin.trim())
        .filter(Boolean);
      for (const origin of origins) {
        if (!URL.canParse(origin) || new URL(origin).origin !== origin) {
          throw new ConfigError(
            `CORS_ORIGINS must list origins such as https://app.example.com, separated by commas; got ${JSON.stringify(origin)}`,
          );
        }
      }
      return new Set(origins);
    },
  },
  signInChallenge: oneOf('SIGN_IN_CHALLENGE', ['optional', 'required'], 'optional', {
    description: "`required` refuses a sign-in without a challenge's nonce",
    see: { readme: 'Signing in with a challenge', design: '§12' },
  }),
  signInChallengeTtl: integer('SIGN_IN_CHALLENGE_TTL', 60, [1, 3600], {
    unit: 'seconds',
    description: "how long a challenge's nonce stays usable",
    see: { design: '§12' },
  }),
  rateLimitRefusedPerAddress: integer('RATE_LIMIT_REFUSED_PER_ADDRESS', 100, [0, 1_000_000], {
    description: 'refused requests (401, 422; failed sign-ins) per client address per window; `0` disables',
    see: { readme: 'Limits', design: '§12.3' },
  }),
  rateLimitRefusedPerAddressWindow: integer('RATE_LIMIT_REFUSED_PER_ADDRESS_WINDOW', 60, [1, 86400], {
    unit: 'seconds',
    description: 'its window',
  }),
  rateLimitFailedSignInsPerEmail: integer('RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL', 10, [0, 1_000_000], {
    description: "sign-ins whose signature the user's key does not verify, per email and client address per window; `0` disables",
    see: { readme: 'Limits', design: '§12.3' },
  }),
  rateLimitFailedSignInsPerEmailWindow: integer('RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL_WINDOW', 300, [1, 86400], {
    unit: 'seconds',
    description: 'its window',
  }),
  rateLimitChallengesPerAddress: integer('RATE_LIMIT_CHALLENGES_PER_ADDRESS', 30, [0, 1_000_000], {
    description: 'sign-in challenges per client address per window, each one asked for; `0` disables',
    see: { readme: 'Limits', design: '§12.3' },
  }),
  rateLimitChallengesPerAddressWindow: integer('RATE_LIMIT_CHALLENGES_PER_ADDRESS_WINDOW', 60, [1, 86400], {
    unit: 'seconds',
    description: 'its window',
  }),
  trustProxy: integer('TRUST_PROXY', 0, [0, 16], {
    description: 'proxies in front that append to `X-Forwarded-For`; 0 takes the client address from the connection',
    see: { readme: 'Behind a TLS proxy', design: '§12.3' },
  }),
  headersTimeout: integer('HEADERS_TIMEOUT', 10, [1, 3600], {
    unit: 'seconds',
    description: 'how long a client may take to send the request line and headers; then 408',
    see: { readme: 'Slow clients', design: '§9' },
  }),
  requestTimeout: integer('REQUEST_TIMEOUT', 30, [1, 3600], {
    unit: 'seconds',
    description: 'how long a client may take to send the whole request; then 408',
    see: { readme: 'Slow clients', design: '§9' },
  }),
  maxConnections: integer('MAX_CONNECTIONS', 4096, [1, 1_000_000], {
    description:
      'open connections at most, over all workers (each takes its share); past it a new connection is closed at once, without an answer',
    see: { readme: 'Slow clients', design: '§9' },
  }),
  maxConnectionsPerAddress: integer('MAX_CONNECTIONS_PER_ADDRESS', 256, [1, 1_000_000], {
    description:
      'open connections at most from one client address (an IPv6 client by its /64), over all workers (each takes its share); past it a new connection from that address is closed at once. Only with `TRUST_PROXY=0`: behind proxies, cap connections per client in the proxy',
    see: { readme: 'Behind a TLS proxy', design: '§9' },
  }),
  maxLongPollsPerClient: integer('MAX_LONG_POLLS_PER_CLIENT', 16, [1, 10_000], {
    description:
      'long polls one resource-server client may hold open at once, of the revocation feed (`wait` above 0) and Shared Signals polls (`returnImmediately` false) in one budget, over all workers (each takes its share); past it 429',
    see: { design: '§11' },
  }),
  issuer: {
    variable: 'ISSUER',
    fallback: '',
    shownDefault: '`http://localhost:PORT` (the port listened on), with a `warn` line at start',
    values: 'an origin such as `https://auth.example.com`: https unless the host is a loopback address, no path',
    description:
      "the service's public origin: every token's `iss`, and the base of the URLs the metadata lists. Set it in production, the same on every instance; changing it signs every user out (their tokens name the old one)",
    see: { readme: 'Verifying tokens with another library', design: '§14' },
    parse: issuerOf,
  },
  audience: {
    variable: 'AUDIENCE',
    fallback: 'fib-api',
    values: 'names separated by commas, none of them `ISSUER`',
    description:
      'the `aud` of every access token: the FIB API services that accept them (a token names the list). Removing a name refuses the access tokens that named no other (a refresh gets new ones)',
    see: { design: '§5' },
    parse: (list: string): readonly string[] =>
      list
        .split(',')
        .map((name) => name.trim())
        .filter(Boolean),
  },
} satisfies Record<string, Setting<unknown>>;

/** A variable the tables document that `loadConfig` does not read. */
export type DocumentedVariable = Omit<Setting<unknown>, 'parse' | 'fallback'>;

/** The variables Node reads itself, documented in the same tables. */
export const READ_BY_NODE: DocumentedVariable[] = [
  {
    variable: 'UV_THREADPOOL_SIZE',
    shownDefault: 'cores − 1, at least 1',
    values: 'integer 1–1024',
    description:
      "threads of Node's pool in each process, which signs tokens (sign-in, refresh) beside the main thread; `src/fib-auth.cts` sets the default before Node starts the pool",
  },
];

export type Config = { [K in keyof typeof SETTINGS]: ReturnType<(typeof SETTINGS)[K]['parse']> };

/** A rule that relates several settings, checked once they are all parsed (as oidc-provider's `checkTTL`). */
export interface Check {
  /** The rule as the tables' notes state it. */
  readonly rule: string;
  readonly check: (config: Config) => void;
}

export const CHECKS: Check[] = [
  {
    rule: `\`WORKERS\` is 1 with \`DATABASE_URL=${IN_MEMORY_DATABASE}\`: a database in memory belongs to one process`,
    check: function checkMemoryDatabaseHasOneProcess({ databaseUrl, workers }) {
      if (databaseUrl === IN_MEMORY_DATABASE && workers > 1)
        throw new ConfigError(`WORKERS must be 1 with DATABASE_URL=${IN_MEMORY_DATABASE} (one process holds it)`);
    },
  },
  {
    rule: '`MANAGEMENT_PORT` is not `PORT` (but both may be 0): the metrics are served apart from the API',
    check: function checkManagementPortApart({ port, managementPort }) {
      if (port !== 0 && managementPort === port) {
        throw new ConfigError(`MANAGEMENT_PORT must not be PORT (${port}): the metrics are served apart from the API`);
      }
    },
  },
  {
    rule: "`HEADERS_TIMEOUT` is at most `REQUEST_TIMEOUT`: Node refuses a headers timeout longer than the request's, which includes the headers",
    check: function checkTimeoutsInOrder({ headersTimeout, requestTimeout }) {
      if (headersTimeout > requestTimeout) {
        throw new ConfigError(`HEADERS_TIMEOUT (${headersTimeout}) must not be longer than REQUEST_TIMEOUT (${requestTimeout})`);
      }
    },
  },
  {
    rule: "`AUDIENCE` names at least one audience and not `ISSUER`: a refresh token's audience is the issuer, so a resource server must never accept the issuer as an access audience",
    check: function checkAudienceApartFromIssuer({ audience, issuer }) {
      if (audience.length === 0 || (issuer !== undefined && audience.includes(issuer))) {
        throw new ConfigError(
          `AUDIENCE must name one or more audiences, separated by commas, none of them ISSUER; got ${JSON.stringify(audience.join(','))}`,
        );
      }
    },
  },
];

function valueOf<T>(setting: Setting<T>, env: Environment): T {
  const given = env[setting.variable];
  if (given !== undefined && given !== '') return setting.parse(given);
  return setting.parse(typeof setting.fallback === 'string' ? setting.fallback : setting.fallback(env));
}

/** The settings `env` gives, each parsed and every CHECKS rule kept; a ConfigError names the first that is not. */
export function loadConfig(env: Environment = process.env): Config {
  const config = Object.fromEntries(
    Object.entries(SETTINGS).map(([key, setting]) => [key, valueOf(setting as Setting<unknown>, env)]),
  ) as Config;
  for (const { check } of CHECKS) check(config);
  return config;
}

/** The token and key lifetimes the settings give (docs/design.md §5). */
export const lifetimesOf = (config: Config): Lifetimes =>
  new Lifetimes({
    accessToken: config.accessTokenTtl,
    refreshToken: config.refreshTokenTtl,
    signInChallenge: config.signInChallengeTtl,
  });

/** What the store is given of the configuration (docs/design.md §7): the store knows nothing else of it. */
export function storeOptions(config: Config, log?: StoreLog): StoreOptions {
  return { url: config.databaseUrl, poolSize: config.databasePoolSize, timeoutMs: config.databaseTimeout * 1000, log };
}
