import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { messageDigest } from '../src/domain/signature.js';
import { packageRoot } from '../src/package-root.js';
import type { BenchDatabase, BenchUser } from './database.js';
import type { LoadRequest } from './load.js';
import { startService, type Service } from './processes.js';
import type { BenchSession, TokenMinter } from './tokens.js';

export const BASE = '/auth/api/v1/authentication-management';
/** The server's default: one JSON line per request, written to standard output (here /dev/null). */
export const LOG_LEVEL = 'info';

export interface SignInUser extends BenchUser {
  signInBody: string;
}

/** Users with keys of their own, each with the body that signs them in. */
export function makeUsers(count: number): SignInUser[] {
  return Array.from({ length: count }, (_, i) => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const email = `bench-user-${i}@example.test`;
    const authPublicKeyHex = Buffer.from(privateKey.export({ format: 'jwk' }).x!, 'base64url').toString('hex');
    const signature = sign(null, messageDigest(email), privateKey).toString('hex');
    return {
      email,
      accountId: randomUUID(),
      authPublicKeyHex,
      signInBody: JSON.stringify({ email, signature, authPublicKeyHex }),
    };
  });
}

export const logoutRequest = (accessToken: string): LoadRequest => ({
  method: 'POST',
  path: `${BASE}/logout`,
  headers: { authorization: `Bearer ${accessToken}` },
});

/** Creates sessions for the users in the database and mints their tokens, as sign-ins would. */
export class SessionFactory {
  constructor(
    private readonly db: BenchDatabase,
    private readonly minter: TokenMinter,
    private readonly users: readonly BenchUser[],
  ) {}

  async create(count: number): Promise<{ session: BenchSession; user: BenchUser }[]> {
    const created = Array.from({ length: count }, (_, i) => {
      const user = this.users[i % this.users.length];
      return { session: this.minter.session(user.email), user };
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
      headers: { authorization: `Bearer ${this.minter.refreshToken(session)}` },
    }));
  }
}

export interface ServerOptions {
  /** Options for node itself (a profiler, say). */
  nodeOptions?: string[];
  /** The checkout whose build runs: this one by default. */
  root?: string;
  name?: string;
}

/** The real server, `fib-auth serve` as the package's bin runs it, as its own process. */
export function startFibAuth(databaseUrl: string, keyFile: string, port: number, options: ServerOptions = {}): Promise<Service> {
  const { nodeOptions = [], root = packageRoot, name = 'fib-auth' } = options;
  const bin = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['fib-auth'];
  return startService(name, process.execPath, [...nodeOptions, join(root, bin), 'serve'], port, {
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    FIB_AUTH_SIGNING_KEY_FILE: keyFile,
    LOG_LEVEL,
  });
}
