import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig, storeOptions } from '../../src/config.js';
import { openStore } from '../../src/store/open.js';
import { BASE, bearer, bodyOf, rawCall, type Reply, type Session } from './harness.js';
import { startProcess, type StartedProcess } from './processes.js';
import { signInBody } from './vectors.js';

export interface ResourceServer {
  url: string;
  process: StartedProcess;
  /** GET /claims with the token: 200 with its claims, or the verifier's refusal. */
  get(token: string): Promise<Reply>;
}

/** Starts test/support/resource-server-process.ts and resolves once its verifier is ready. */
export async function startResourceServer(options: {
  serviceUrl: string;
  clientId: string;
  clientSecret: string;
  maxStalenessSeconds?: number;
  /** Forces a full garbage collection this often in the resource server's process. */
  gcIntervalMs?: number;
}): Promise<ResourceServer> {
  const gc = options.gcIntervalMs === undefined ? [] : ['--expose-gc'];
  const started = await startProcess(process.execPath, [...gc, '--import', 'tsx', 'test/support/resource-server-process.ts'], {
    env: {
      ...process.env,
      PORT: '0',
      FIB_AUTH_URL: options.serviceUrl,
      CLIENT_ID: options.clientId,
      CLIENT_SECRET: options.clientSecret,
      MAX_STALENESS_SECONDS: options.maxStalenessSeconds === undefined ? '' : String(options.maxStalenessSeconds),
      GC_INTERVAL_MS: options.gcIntervalMs === undefined ? '' : String(options.gcIntervalMs),
    },
    ready: /listening on (\d+)[\s\S]*verifier ready/,
  });
  const url = `http://127.0.0.1:${started.readyMatch![1]}`;
  return { url, process: started, get: (token) => rawCall(url, 'GET', '/claims', { headers: bearer(token) }) };
}

/** A user of the service, who signs in over HTTP as often as asked, each time to a new session. */
export interface User {
  email: string;
  signIn(): Promise<Session>;
}

/**
 * Registers `count` users with fresh keys in the service's store, as `fib-auth users add`
 * would but in one connection, for the suites that need many.
 */
export async function registerUsers(databaseUrl: string, serviceUrl: string, count: number): Promise<User[]> {
  const store = await openStore(storeOptions(loadConfig({ DATABASE_URL: databaseUrl })));
  try {
    return await Promise.all(
      Array.from({ length: count }, async () => {
        const email = `user-${randomUUID()}@example.test`;
        const { privateKey: key } = generateKeyPairSync('ed25519');
        const body = signInBody(email, key);
        const added = await store.addUser({
          email,
          accountId: randomUUID(),
          authPublicKeyHex: body.authPublicKeyHex,
          role: 'ROLE_PEER',
          createdAt: Math.floor(Date.now() / 1000),
        });
        assert.ok(added, `user ${email} added`);
        return {
          email,
          async signIn() {
            const reply = await rawCall(serviceUrl, 'POST', `${BASE}/session`, { body });
            return (await bodyOf(reply, 'authorizeUser', 200)).data;
          },
        };
      }),
    );
  } finally {
    await store.close();
  }
}

/**
 * Asks the resource server with the token until it refuses it; resolves with the refusal and
 * the milliseconds from `since` (a performance.now() instant) to the answer that refused.
 */
export async function untilRefused(
  rs: ResourceServer,
  token: string,
  since: number,
  deadlineMs: number,
): Promise<{ reply: Reply; delayMs: number }> {
  for (;;) {
    const reply = await rs.get(token);
    const delayMs = performance.now() - since;
    if (reply.status !== 200) return { reply, delayMs };
    assert.ok(delayMs < deadlineMs, `${rs.url} still accepts the token ${Math.round(delayMs)} ms after it ended`);
    await sleep(2);
  }
}

/** Asks until `accept` holds for an answer, for at most `deadlineMs`; resolves with that answer. */
export async function untilAnswer(
  rs: ResourceServer,
  token: string,
  accept: (reply: Reply) => boolean,
  deadlineMs: number,
): Promise<Reply> {
  const started = performance.now();
  for (;;) {
    const reply = await rs.get(token);
    if (accept(reply)) return reply;
    assert.ok(
      performance.now() - started < deadlineMs,
      `${rs.url} answered ${reply.status} ${JSON.stringify(reply.body)} for ${deadlineMs} ms`,
    );
    await sleep(20);
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** p50, p99 and max of the delays, in milliseconds with one decimal. */
export function delaySummary(delays: readonly number[]) {
  const sorted = [...delays].sort((a, b) => a - b);
  const ms = (value: number) => Math.round(value * 10) / 10;
  return {
    count: sorted.length,
    p50: ms(percentile(sorted, 50)),
    p99: ms(percentile(sorted, 99)),
    max: ms(sorted[sorted.length - 1]),
  };
}
