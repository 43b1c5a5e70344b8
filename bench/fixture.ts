import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { packageRoot } from '../src/package-root.js';
import { BASE, bearer, TEST_ISSUER } from '../test/support/api.js';
import { binOf } from '../test/support/cli.js';
import { startProcess, type StartedProcess } from '../test/support/processes.js';
import { newSession, type LiveSession, type TokenMinter } from '../test/support/tokens.js';
import { signInBody } from '../test/support/vectors.js';
import type { BenchDatabase, BenchUser } from './database.js';
import { load, type LoadRequest } from './load.js';

/** The server's default: one JSON line per request, written to standard output (here nowhere). */
export const LOG_LEVEL = 'info';

export interface SignInUser extends BenchUser {
  signInBody: string;
}

/** Users with keys of their own, each with the body that signs them in. */
export function makeUsers(count: number): SignInUser[] {
  return Array.from({ length: count }, (_, i) => {
    const email = `bench-user-${i}@example.test`;
    const body = signInBody(email, generateKeyPairSync('ed25519').privateKey);
    return { email, accountId: randomUUID(), authPublicKeyHex: body.authPublicKeyHex, signInBody: JSON.stringify(body) };
  });
}

export const logoutRequest = (accessToken: string): LoadRequest => ({
  method: 'POST',
  path: `${BASE}/logout`,
  headers: bearer(accessToken),
});

/** Creates sessions for the users in the database and mints their tokens, as sign-ins would. */
export class SessionFactory {
  constructor(
    private readonly db: BenchDatabase,
    private readonly minter: TokenMinter,
    private readonly users: readonly BenchUser[],
  ) {}

  async create(count: number): Promise<{ session: LiveSession; user: BenchUser }[]> {
    const created = Array.from({ length: count }, (_, i) => {
      const user = this.users[i % this.users.length];
      return { session: newSession(user.email), user };
    });
    await this.db.addSessions(created.map((c) => c.session));
    return created;
  }

  async logouts(count: number): Promise<LoadRequest[]> {
    return (await this.create(count)).map(({ session, user }) => logoutRequest(this.minter.accessToken(session, user.accountId)));
  }

  async refreshes(count: number): Promise<LoadRequest[]> {
    return (await this.create(count)).map(({ session }) => ({
      method: 'PATCH',
      path: `${BASE}/session`,
      headers: bearer(this.minter.refreshToken(session)),
    }));
  }
}

/** A server process the bench loads, at its origin. */
export interface Service extends StartedProcess {
  origin: string;
}

/**
 * Starts a server process that listens on `port`, ready once it answers HTTP. Its standard
 * output goes nowhere: logs are written, as in production, but nobody reads them.
 */
export async function startService(command: string, args: string[], port: number, env: NodeJS.ProcessEnv = {}): Promise<Service> {
  const origin = `http://127.0.0.1:${port}`;
  const started = await startProcess(command, args, { env: { ...process.env, ...env }, ready: new URL(origin), quiet: true });
  return { ...started, origin };
}

export interface ServerOptions {
  /** Options for node itself (a profiler, say). */
  nodeOptions?: string[];
  /** The checkout whose build runs: this one by default. */
  root?: string;
  /** More of the server's environment (WORKERS=1, say). */
  env?: NodeJS.ProcessEnv;
}

/**
 * The real server, `fib-auth serve` as the package's bin runs it, as its own process; its
 * management listener (the metrics) on a free port, apart from any other server's.
 */
export function startFibAuth(databaseUrl: string, keyFile: string, port: number, options: ServerOptions = {}): Promise<Service> {
  const { nodeOptions = [], root = packageRoot, env = {} } = options;
  return startService(process.execPath, [...nodeOptions, binOf(root), 'serve'], port, {
    PORT: String(port),
    MANAGEMENT_PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    FIB_AUTH_SIGNING_KEY_FILE: keyFile,
    LOG_LEVEL,
    // The issuer the minted tokens name (TokenMinter).
    ISSUER: TEST_ISSUER,
    ...env,
  });
}

/**
 * Logs out for a while at concurrency 50 before anything is measured. A server of several
 * workers answers once its first worker listens, while the others still start; each worker
 * then compiles its own code, and one connection (c=1) reaches one worker only. Fifty
 * connections reach every worker and warm each up.
 */
export async function warmUp(server: Service, sessions: SessionFactory, seconds = 3): Promise<void> {
  await load(server.origin, await sessions.logouts(20_000), { concurrency: 50, seconds });
}
