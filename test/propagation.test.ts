import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test as testOn } from 'node:test';
import type { FailureReason } from '../src/domain/failures.js';
import { refusalOf } from '../src/contract/failures.js';
import { serveChild, type ChildServer } from './support/child-server.js';
import { DATABASES, type TestDatabase } from './support/databases.js';
import { BASE, bearer, bodyOf, rawCall, type Session } from './support/harness.js';
import { addClient, fibAuth } from './support/cli.js';
import {
  delaySummary,
  registerUsers,
  startResourceServer,
  untilRefused,
  type ResourceServer,
  type User,
} from './support/resource-servers.js';

const RESOURCE_SERVERS = 3;
const LOCAL_LOGOUTS = 120;
const GLOBAL_LOGOUTS = 80;
const REFRESHES = 20;
const REUSES = 10;
const REMOVED_USER_SESSIONS = 3;
/** Endings in flight at once. */
const CONCURRENCY = 4;
/** The correctness bound the issue sets for the propagation delay. */
const P99_BOUND_MS = 1000;
/** Past this, one token still accepted fails the suite on its own, naming the token. */
const DEADLINE_MS = 5000;

/** One way a session (or one of its access tokens) ends at the service, and what every resource server must then say. */
interface Ending {
  kind: string;
  /** Signs in and prepares; resolves with the tokens the ending will end. */
  prepare(): Promise<{ tokens: string[]; end: () => Promise<void> }>;
  refusal: FailureReason;
}

for (const backend of DATABASES) {
  // Instances on separate machines share only a database reached over the network.
  const instances = backend.overNetwork ? 2 : 1;
  const where =
    instances === 1
      ? `one service on ${backend.name}`
      : `two service instances on ${backend.name}, the endings sent to A and the resource servers following B`;
  describe(`every resource server refuses an ended session's tokens: ${where}`, () => {
    const test = (name: string, fn: (t: { diagnostic(message: string): void }) => Promise<void>): void => {
      testOn(name, { skip: backend.skip, timeout: 180_000 }, fn);
    };
    let database: TestDatabase;
    let keyDir: string;
    let env: NodeJS.ProcessEnv;
    let services: ChildServer[] = [];
    let resourceServers: ResourceServer[] = [];

    before(async () => {
      if (backend.skip) return;
      database = await backend.create();
      keyDir = mkdtempSync(join(tmpdir(), 'fib-auth-rs-e2e-'));
      env = {
        PATH: process.env.PATH,
        DATABASE_URL: database.url,
        FIB_AUTH_SIGNING_KEY_FILE: join(keyDir, 'signing-key.pem'),
        HOST: '127.0.0.1',
        PORT: '0',
      };
      services = [await serveChild(env)];
      if (instances === 2) services.push(await serveChild(env));
      const followed = services[services.length - 1];
      resourceServers = await Promise.all(
        Array.from({ length: RESOURCE_SERVERS }, async () =>
          startResourceServer({ serviceUrl: followed.url, ...(await addClient(env)) }),
        ),
      );
    });
    after(async () => {
      if (backend.skip) return;
      await Promise.all(resourceServers.map((rs) => rs.process.stop()));
      await Promise.all(services.map((service) => service.stop()));
      await database?.drop();
      rmSync(keyDir, { recursive: true, force: true });
    });

    test('200 logouts, local and global, refresh-retired tokens, reuse revocation and a removed user', async (t) => {
      const a = services[0].url;
      const users = await registerUsers(database.url, a, 10 + GLOBAL_LOGOUTS + 1);
      const [localUsers, globalUsers, [removed]] = [users.slice(0, 10), users.slice(10, -1), users.slice(-1)];
      const logout = async (session: Session, scope: 'local' | 'global') => {
        const reply = await rawCall(a, 'POST', `${BASE}/logout?scope=${scope}`, { headers: bearer(session.accessToken) });
        assert.equal(reply.status, 200, JSON.stringify(reply.body));
      };
      const refresh = async (session: Session) => {
        const reply = await rawCall(a, 'PATCH', `${BASE}/session`, { headers: bearer(session.refreshToken) });
        return reply;
      };
      const anyLocalUser = (i: number): User => localUsers[i % localUsers.length];

      const endings: Ending[] = [
        ...Array.from({ length: LOCAL_LOGOUTS }, (_, i): Ending => ({
          kind: 'local logout',
          refusal: 'accessTokenLoggedOut',
          async prepare() {
            const session = await anyLocalUser(i).signIn();
            return { tokens: [session.accessToken], end: () => logout(session, 'local') };
          },
        })),
        ...globalUsers.map((user): Ending => ({
          kind: 'global logout',
          refusal: 'accessTokenLoggedOut',
          async prepare() {
            const sessions = [await user.signIn(), await user.signIn()];
            return { tokens: sessions.map((s) => s.accessToken), end: () => logout(sessions[0], 'global') };
          },
        })),
        ...Array.from({ length: REFRESHES }, (_, i): Ending => ({
          kind: 'access token retired by a refresh',
          refusal: 'accessTokenRetired',
          async prepare() {
            const session = await anyLocalUser(i).signIn();
            return {
              tokens: [session.accessToken],
              async end() {
                const reply = await refresh(session);
                survivors.push((await bodyOf(reply, 'refreshTokens', 200)).data.accessToken);
              },
            };
          },
        })),
        ...Array.from({ length: REUSES }, (_, i): Ending => ({
          kind: 'session revoked after refresh-token reuse',
          refusal: 'sessionRevokedAfterReuse',
          async prepare() {
            const session = await anyLocalUser(i).signIn();
            const refreshed = await refresh(session);
            const { accessToken } = (await bodyOf(refreshed, 'refreshTokens', 200)).data;
            return {
              tokens: [accessToken],
              async end() {
                const reused = await refresh(session);
                assert.equal(
                  (await bodyOf(reused, 'refreshTokens', 401)).status.message,
                  refusalOf('refreshTokenReused').message,
                );
              },
            };
          },
        })),
        {
          kind: 'user removed',
          refusal: 'sessionEnded',
          async prepare() {
            const sessions = await Promise.all(Array.from({ length: REMOVED_USER_SESSIONS }, () => removed.signIn()));
            return {
              tokens: sessions.map((s) => s.accessToken),
              end: async () => void (await fibAuth(['users', 'remove', '--email', removed.email], env)),
            };
          },
        },
      ];
      // Sessions nobody ends: every resource server must still accept them at the end.
      const survivors: string[] = (await Promise.all(localUsers.map((user) => user.signIn()))).map((s) => s.accessToken);

      const delays: { kind: string; ms: number }[] = [];
      const queue = [...endings];
      const worker = async () => {
        for (let ending = queue.shift(); ending; ending = queue.shift()) {
          const { tokens, end } = await ending.prepare();
          for (const token of tokens) {
            for (const rs of resourceServers) {
              const accepted = await rs.get(token);
              assert.equal(accepted.status, 200, `${ending.kind}: accepted before it ends: ${JSON.stringify(accepted.body)}`);
            }
          }
          await end();
          const answered = performance.now();
          await Promise.all(
            tokens.flatMap((token) =>
              resourceServers.map(async (rs) => {
                const { reply, delayMs } = await untilRefused(rs, token, answered, DEADLINE_MS);
                assert.equal(reply.status, 401, `${ending.kind}: ${JSON.stringify(reply.body)}`);
                const expected = refusalOf(ending.refusal);
                assert.deepEqual(reply.body, {
                  status: { code: 401, name: 'Unauthorized', message: expected.message },
                  data: {},
                });
                assert.equal(reply.headers['www-authenticate'], expected.challenge);
                delays.push({ kind: ending.kind, ms: delayMs });
              }),
            ),
          );
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));

      for (const token of survivors) {
        for (const rs of resourceServers) assert.equal((await rs.get(token)).status, 200, 'a session nobody ended is accepted');
      }
      const all = delaySummary(delays.map((d) => d.ms));
      const tokens = all.count / RESOURCE_SERVERS;
      const report = [
        `propagation, ${where}: ${tokens} tokens × ${RESOURCE_SERVERS} resource servers: p50 ${all.p50} ms, p99 ${all.p99} ms, max ${all.max} ms`,
        ...[...new Set(delays.map((d) => d.kind))].map((kind) => {
          const of = delaySummary(delays.filter((d) => d.kind === kind).map((d) => d.ms));
          return `  ${kind}: ${of.count} refusals, p50 ${of.p50} ms, p99 ${of.p99} ms, max ${of.max} ms`;
        }),
      ];
      for (const line of report) {
        console.log(line);
        t.diagnostic(line);
      }
      assert.equal(tokens, LOCAL_LOGOUTS + 2 * GLOBAL_LOGOUTS + REFRESHES + REUSES + REMOVED_USER_SESSIONS);
      assert.ok(all.p99 <= P99_BOUND_MS, `p99 ${all.p99} ms exceeds ${P99_BOUND_MS} ms`);
    });
  });
}
