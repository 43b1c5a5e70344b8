import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FailureReason } from '../src/domain/failures.js';
import { refusalOf } from '../src/contract/failures.js';
import { serveChild, type ChildServer } from './support/child-server.js';
import { BASE, bearer, bodyOf, rawCall, type Reply, type Session } from './support/harness.js';
import { freePort } from './support/processes.js';
import { addClient, fibAuth } from './support/cli.js';
import {
  registerUsers,
  startResourceServer,
  untilAnswer,
  untilRefused,
  type ResourceServer,
  type User,
} from './support/resource-servers.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { accessClaims, forge, newSession, otherKey, TokenMinter } from './support/tokens.js';

/** The service's sentence for a failure. */
const said = (reason: FailureReason) => refusalOf(reason).message;

const refusedWith = (reply: Reply, status: number, message: string) =>
  assert.deepEqual(
    { status: reply.status, body: reply.body },
    {
      status,
      body: {
        status: {
          code: status,
          name: { 401: 'Unauthorized', 422: 'Unprocessable Entity', 503: 'Service Unavailable' }[status],
          message,
        },
        data: {},
      },
    },
  );

describe('the resource-server library when things go wrong', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let service: ChildServer;
  let users: User[];
  const started: ResourceServer[] = [];
  const startRs = async (options: { serviceUrl?: string; maxStalenessSeconds?: number; gcIntervalMs?: number } = {}) => {
    const rs = await startResourceServer({ serviceUrl: service.url, ...(await addClient(env)), ...options });
    started.push(rs);
    return rs;
  };
  const logout = async (session: Session, scope = 'local') => {
    const reply = await rawCall(service.url, 'POST', `${BASE}/logout?scope=${scope}`, { headers: bearer(session.accessToken) });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
  };
  const refresh = (session: Session) =>
    rawCall(service.url, 'PATCH', `${BASE}/session`, { headers: bearer(session.refreshToken) });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fib-auth-rs-faults-'));
    env = {
      PATH: process.env.PATH,
      DATABASE_URL: `sqlite:${join(dir, 'fib-auth.sqlite')}`,
      FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem'),
      HOST: '127.0.0.1',
      // A fixed port, so that the service comes back where the resource servers look for it.
      PORT: String(await freePort()),
    };
    service = await serveChild(env);
    users = await registerUsers(String(env.DATABASE_URL), service.url, 10);
  });
  after(async () => {
    await Promise.all(started.map((rs) => rs.process.stop()));
    await service?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the service killed: 503 once the feed is older than maxStalenessSeconds, and back to normal when it returns', async () => {
    const maxStalenessSeconds = 2;
    const rs = await startRs({ maxStalenessSeconds });
    const session = await users[0].signIn();
    assert.equal((await rs.get(session.accessToken)).status, 200);

    const killedAt = performance.now();
    assert.equal(await service.stop('SIGKILL'), null);
    const stale = await untilAnswer(rs, session.accessToken, (reply) => reply.status !== 200, (maxStalenessSeconds + 1) * 1000);
    const afterMs = performance.now() - killedAt;
    refusedWith(
      stale,
      503,
      `The revocation feed has not been confirmed current for ${maxStalenessSeconds} seconds; the token cannot be checked.`,
    );
    // The last confirmation came at most one long poll (1 s here) before the kill.
    assert.ok(afterMs >= (maxStalenessSeconds - 1) * 1000 - 100, `503 only ${Math.round(afterMs)} ms after the kill`);
    console.log(`first 503 ${Math.round(afterMs)} ms after the service was killed (maxStalenessSeconds ${maxStalenessSeconds})`);
    for (let i = 0; i < 5; i++) {
      await sleep(200);
      assert.equal((await rs.get(session.accessToken)).status, 503, 'stays closed while the service is down');
    }

    service = await serveChild(env);
    const back = performance.now();
    await untilAnswer(rs, session.accessToken, (reply) => reply.status === 200, 10_000);
    console.log(`accepted again ${Math.round(performance.now() - back)} ms after the service was back`);
    await logout(session);
    const { reply } = await untilRefused(rs, session.accessToken, performance.now(), 5000);
    refusedWith(reply, 401, said('accessTokenLoggedOut'));
  });

  test('the feed connection cut during a long poll: no revocation is lost, the cursor resumes', async () => {
    const proxy = new TcpProxy({ host: '127.0.0.1', port: Number(new URL(service.url).port) });
    await proxy.listen();
    try {
      const rs = await startRs({ serviceUrl: `http://127.0.0.1:${proxy.port}` });
      const sessions = await Promise.all(users.map((user) => user.signIn()));
      for (const session of sessions) assert.equal((await rs.get(session.accessToken)).status, 200);

      // A long poll from a cursor, past the first snapshot, is waiting for its answer.
      const open = await untilWaiting(proxy, 'after=');
      const cursorAtCut = new URL(open.split(' ')[1], 'http://x').searchParams.get('after');
      const linesBefore = proxy.requestLines.length;
      await proxy.cut();

      const [retired, ...loggedOut] = sessions;
      const refreshed = await refresh(retired);
      assert.equal(refreshed.status, 200);
      for (const session of loggedOut) await logout(session);

      await proxy.listen();
      const restored = performance.now();
      for (const session of loggedOut) {
        refusedWith((await untilRefused(rs, session.accessToken, restored, 5000)).reply, 401, said('accessTokenLoggedOut'));
      }
      refusedWith((await untilRefused(rs, retired.accessToken, restored, 5000)).reply, 401, said('accessTokenRetired'));
      const { accessToken } = (await bodyOf(refreshed, 'refreshTokens', 200)).data;
      assert.equal((await rs.get(accessToken)).status, 200, 'the new token of the refresh is accepted');

      const resumed = proxy.requestLines.slice(linesBefore).find((line) => line.includes('/revocations?'));
      assert.ok(resumed, 'the feed was asked again');
      assert.equal(new URL(resumed.split(' ')[1], 'http://x').searchParams.get('after'), cursorAtCut, resumed);
    } finally {
      await proxy.cut();
    }
  });

  test('a feed request that hangs while garbage is collected is given up, and the library recovers by itself', async () => {
    // On Node 20 a timeout signal only an AbortSignal.any() holds is collected, and never fires
    // (nodejs/node#55428): the hung long poll would then be waited for until a restart.
    const proxy = new TcpProxy({ host: '127.0.0.1', port: Number(new URL(service.url).port) });
    await proxy.listen();
    try {
      const maxStalenessSeconds = 2;
      const rs = await startRs({ serviceUrl: `http://127.0.0.1:${proxy.port}`, maxStalenessSeconds, gcIntervalMs: 20 });
      const session = await users[8].signIn();
      assert.equal((await rs.get(session.accessToken)).status, 200);
      await untilWaiting(proxy, 'after=');

      proxy.hang();
      const hungAt = performance.now();
      const stale = await untilAnswer(rs, session.accessToken, (reply) => reply.status !== 200, 5000);
      assert.equal(stale.status, 503, 'the hung long poll leaves the set unconfirmed');
      // The long poll is given up 2 s after its 1 s wait, and the next one confirms within its wait.
      await untilAnswer(rs, session.accessToken, (reply) => reply.status === 200, 10_000);
      console.log(`accepted again ${Math.round(performance.now() - hungAt)} ms after the feed request hung`);
      // The default onEvent: one line on standard error as the set went stale, one as it came back.
      const told = async (pattern: RegExp) => {
        const deadline = performance.now() + 5000;
        let lines: string[];
        while (
          (lines = rs.process
            .output()
            .split('\n')
            .filter((line) => pattern.test(line))).length === 0
        ) {
          assert.ok(performance.now() < deadline, `no line matching ${pattern} in:\n${rs.process.output()}`);
          await sleep(20);
        }
        return lines;
      };
      assert.equal((await told(/^fib-auth-resource-server: .* has not been confirmed current for 2 seconds/)).length, 1);
      assert.equal((await told(/^fib-auth-resource-server: .* is current again, after \d+ seconds unconfirmed/)).length, 1);
    } finally {
      await proxy.cut();
    }
  });

  test("a token signed with the service's key that lives longer than maxTokenAgeSeconds (3600) is refused with 401", async () => {
    const rs = await startRs();
    const minter = await TokenMinter.fromKeyFile(String(env.FIB_AUTH_SIGNING_KEY_FILE));
    const now = Math.floor(Date.now() / 1000);
    const anHour = newSession(users[9].email, now);
    assert.equal((await rs.get(minter.accessToken(anHour, randomUUID()))).status, 200, 'exp - iat of 3600 s');
    const tenYears = { ...anHour, accessExpiresAt: now + 10 * 365 * 86400 };
    const reply = await rs.get(minter.accessToken(tenYears, randomUUID()));
    refusedWith(reply, 401, 'The access token is valid for longer than the 3600 seconds this service accepts.');
    assert.equal(reply.headers['www-authenticate'], 'Bearer error="invalid_token"');
  });

  test('a resource server started after the sessions ended refuses their tokens from its first answer (snapshot)', async () => {
    const [local, global, globalOther, retired, reused, removed, live] = await Promise.all([
      users[1].signIn(),
      users[2].signIn(),
      users[2].signIn(),
      users[3].signIn(),
      users[4].signIn(),
      users[5].signIn(),
      users[6].signIn(),
    ]);
    await logout(local);
    await logout(global, 'global');
    assert.equal((await refresh(retired)).status, 200);
    const refreshed = await refresh(reused);
    assert.equal(refreshed.status, 200);
    assert.equal((await refresh(reused)).status, 401);
    await fibAuth(['users', 'remove', '--email', users[5].email], env);

    const rs = await startRs();
    const expected: [Session | string, string][] = [
      [local, said('accessTokenLoggedOut')],
      [global, said('accessTokenLoggedOut')],
      [globalOther, said('accessTokenLoggedOut')],
      [retired, said('accessTokenRetired')],
      [(await bodyOf(refreshed, 'refreshTokens', 200)).data.accessToken, said('sessionRevokedAfterReuse')],
      [removed, said('sessionEnded')],
    ];
    for (const [session, message] of expected) {
      refusedWith(await rs.get(typeof session === 'string' ? session : session.accessToken), 401, message);
    }
    assert.equal((await rs.get(live.accessToken)).status, 200);
  });

  test('a new signing key is fetched on its first token; forged key ids get 422 without flooding the service', async () => {
    const rs = await startRs();
    const jwksRequests = () => service.lines.filter((line) => line.includes('"path":"/.well-known/jwks.json"')).length;
    const beforeRotation = jwksRequests();
    await fibAuth(['keys', 'rotate'], env);
    process.kill(service.pid, 'SIGHUP');
    await untilLine(service, 'reloaded the keys');
    const session = await users[7].signIn();
    // Until the refetch cooldown after the resource server's first fetch has passed: 422.
    await untilAnswer(rs, session.accessToken, (reply) => reply.status === 200, 10_000);
    await sleep(300); // the service's log line of the request may come after its answer
    assert.equal(jwksRequests() - beforeRotation, 1, 'one JWKS request for the new key id, however often it was asked');

    const beforeFlood = jwksRequests();
    const forged = Array.from({ length: 50 }, () =>
      forge({ alg: 'EdDSA', typ: 'at+jwt', kid: `forged-${Math.random()}` }, accessClaims('mallory@example.test'), otherKey()),
    );
    for (const reply of await Promise.all(forged.map((token) => rs.get(token)))) {
      refusedWith(reply, 422, said('tokenKeyIdUnknown'));
    }
    await sleep(300);
    assert.ok(jwksRequests() - beforeFlood <= 1, `${jwksRequests() - beforeFlood} JWKS requests for 50 forged key ids`);
  });
});

async function untilLine(service: ChildServer, message: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!service.lines.some((line) => line.includes(`"msg":"${message}"`))) {
    assert.ok(performance.now() < deadline, `the service did not log "${message}"`);
    await sleep(20);
  }
}

/** Resolves with the request line of a feed request through `proxy` that waits for its answer, once one whose query holds `query` does. */
async function untilWaiting(proxy: TcpProxy, query: string): Promise<string> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const open = proxy.unanswered('/revocations?').find((line) => line.includes(query));
    if (open) return open;
    assert.ok(performance.now() < deadline, `no feed request with ${query} opened`);
    await sleep(10);
  }
}
