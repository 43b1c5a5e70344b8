import { resolve } from 'node:path';

export interface Config {
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
  return {
    port: integer(env, 'PORT', 8080, 0, 65535),
    host: env.HOST || '0.0.0.0',
    databaseUrl,
    databasePoolSize: integer(env, 'DATABASE_POOL_SIZE', 10, 1, 1000),
    databaseTimeout: integer(env, 'DATABASE_TIMEOUT', 5, 1, 3600),
    signingKeyFile: resolve(env.FIB_AUTH_SIGNING_KEY_FILE || './var/signing-key.pem'),
    accessTokenTtl: integer(env, 'ACCESS_TOKEN_TTL', 300, 1, 2 ** 31 - 1),
    refreshTokenTtl: integer(env, 'REFRESH_TOKEN_TTL', 86400, 1, 2 ** 31 - 1),
    logLevel,
    corsOrigins: new Set(corsOrigins),
  };
}
