import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test as testOn } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { serveChild, type ChildServer } from './support/child-server.js';
import { fibAuth } from './support/cli.js';
import { DATABASES, type TestDatabase } from './support/databases.js';
import { processTree } from './support/processes.js';
import { BASE, bearer, bodyOf, exactlyOne200, rawCall, type Reply } from './support/harness.js';
import { sample, scrape } from './support/metrics.js';
import { decodePart } from './support/tokens.js';
import { ALICE, ALICE_SIGN_IN, BOB_SIGNATURE } from './support/vectors.js';

// `fib-auth serve` with WORKERS=2 (docs/design.md §13): a primary and two worker processes on
// one port. Whatever one worker decides, the whole server decides: every connection here is a
// fresh one, and the primary hands them to the workers in turn, so both answer.
const WORKERS = 2;
const FAILED_SIGN_INS_PER_EMAIL = 4;
const CHALLENGES_PER_ADDRESS = 6;

interface LogLine {
  msg: string;
  worker?: number;
  requestId?: string;
  status?: number;
}

for (const backend of DATABASES) {
  describe(`WORKERS=${WORKERS} on ${backend.name}`, () => {
    const test = (name: string, fn: () => Promise<void>): void => {
      testOn(name, { skip: backend.skip }, fn);
    };
    let database: TestDatabase;
    let dir: string;
    let env: NodeJS.ProcessEnv;
    let server: ChildServer;
    const logLines = () => server.lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as LogLine);
    /** The worker whose log line records the answer (pino writes asynchronously: wait for it). */
    const answeredBy = async (reply: Reply): Promise<number> => {
      const requestId = reply.headers['x-request-id'];
      for (let tries = 0; tries < 100; tries++) {
        const line = logLines().find((l) => l.msg === 'request' && l.requestId === requestId);
        if (line?.worker !== undefined) return line.worker;
        await sleep(20);
      }
      assert.fail(`no worker logged the request ${String(requestId)}`);
    };
    const workersOf = async (replies: Reply[]) => new Set(await Promise.all(replies.map(answeredBy)));
    const signIn = async () =>
      (await bodyOf(await rawCall(server.url, 'POST', `${BASE}/session`, { body: ALICE_SIGN_IN }), 'authorizeUser', 200)).data;
    const logout = (token: string) => rawCall(server.url, 'POST', `${BASE}/logout`, { headers: bearer(token) });

    before(async () => {
      if (backend.skip) return;
      database = await backend.create();
      dir = mkdtempSync(join(tmpdir(), 'fib-auth-workers-'));
      env = {
        PATH: process.env.PATH,
        DATABASE_URL: database.url,
        FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem'),
        HOST: '127.0.0.1',
        PORT: '0',
        WORKERS: String(WORKERS),
        // The per-email and challenge limits are tested; the per-address one would stop the other
        // tests' refusals.
        RATE_LIMIT_REFUSED_PER_ADDRESS: '0',
        RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL: String(FAILED_SIGN_INS_PER_EMAIL),
        RATE_LIMIT_CHALLENGES_PER_ADDRESS: String(CHALLENGES_PER_ADDRESS),
      };
      await fibAuth(['users', 'add', '--email', ALICE.email, '--auth-public-key', ALICE.publicKeyHex], env);
      server = await serveChild(env);
    });
    after(async () => {
      if (backend.skip) return;
      await server?.stop();
      await database?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    test('the server is a primary and its workers, which all answer', async () => {
      assert.equal(processTree(server.pid).length, 1 + WORKERS);
      const replies = await Promise.all(Array.from({ length: 8 }, () => rawCall(server.url, 'GET', '/health/live')));
      assert.deepEqual(
        replies.map((r) => r.status),
        Array(8).fill(200),
      );
      assert.equal((await workersOf(replies)).size, WORKERS, 'every worker answered some of the connections');
    });

    test('20 concurrent logouts of one token, over connections to both workers: exactly one 200', async () => {
      const { accessToken } = await signIn();
      const { winner, losers } = await exactlyOne200(20, () => logout(accessToken), 401);
      assert.equal((await workersOf([winner, ...losers])).size, WORKERS, 'both workers answered some of the logouts');
    });

    test('a logout on one worker holds on the other at once', async () => {
      for (let i = 0; i < 4; i++) {
        const { accessToken, refreshToken } = await signIn();
        const first = await logout(accessToken);
        assert.equal(first.status, 200);
        // Fresh connections go to the workers in turn: the next ones reach the other worker too.
        const again = await Promise.all([logout(accessToken), logout(accessToken)]);
        assert.deepEqual(
          again.map((r) => r.status),
          [401, 401],
        );
        const refreshed = await rawCall(server.url, 'PATCH', `${BASE}/session`, { headers: bearer(refreshToken) });
        assert.equal(refreshed.status, 401);
        assert.equal((await workersOf([first, ...again])).size, WORKERS);
      }
    });

    test("the primary's management listener reports the requests of every worker, summed", async () => {
      const refusedLogouts = async () => {
        const text = await scrape(server.managementUrl);
        assert.equal(text.match(/^fib_auth_active_sessions \d+$/gm)?.length, 1, 'live sessions counted once, not per worker');
        return sample(text, 'fib_auth_logout_outcomes_total{outcome="unreadable"}');
      };
      const before = await refusedLogouts();
      const refused = await Promise.all(Array.from({ length: 4 }, () => logout('not-a-token')));
      assert.deepEqual(
        refused.map((r) => r.status),
        [401, 401, 401, 401],
      );
      assert.equal((await workersOf(refused)).size, WORKERS, 'both workers refused some');
      assert.equal(await refusedLogouts(), before! + 4, 'the sum over the workers');
      const onTheApiPort = await Promise.all(Array.from({ length: 4 }, () => rawCall(server.url, 'GET', '/metrics')));
      assert.deepEqual(
        onTheApiPort.map((r) => r.status),
        [404, 404, 404, 404],
      );
      assert.equal((await workersOf(onTheApiPort)).size, WORKERS, 'neither worker serves them');
    });

    test('failed signatures count against the limit of the whole server, not of each worker', async () => {
      // From an address of its own, so that Alice still signs in from 127.0.0.1 afterwards.
      const failing = { ...ALICE_SIGN_IN, signature: BOB_SIGNATURE };
      const replies: Reply[] = [];
      for (let i = 0; i < FAILED_SIGN_INS_PER_EMAIL + 4; i++) {
        replies.push(await rawCall(server.url, 'POST', `${BASE}/session`, { body: failing, localAddress: '127.0.0.2' }));
      }
      const statuses = replies.map((r) => r.status);
      assert.deepEqual(statuses, [...Array<number>(FAILED_SIGN_INS_PER_EMAIL).fill(422), 429, 429, 429, 429]);
      assert.equal((await workersOf(replies)).size, WORKERS, 'both workers answered');
    });

    test('challenges count against the limit of the whole server: every one issued by either worker', async () => {
      const replies: Reply[] = [];
      for (let i = 0; i < CHALLENGES_PER_ADDRESS + 4; i++) {
        const body = { email: `asked-${i}@example.test` };
        replies.push(await rawCall(server.url, 'POST', `${BASE}/session/challenge`, { body, localAddress: '127.0.0.3' }));
      }
      const statuses = replies.map((r) => r.status);
      assert.deepEqual(statuses, [...Array<number>(CHALLENGES_PER_ADDRESS).fill(200), 429, 429, 429, 429]);
      assert.equal((await workersOf(replies)).size, WORKERS, 'both workers answered');
    });

    test('SIGHUP to the primary reloads the keys in every worker', async () => {
      await fibAuth(['keys', 'generate'], env);
      await fibAuth(['keys', 'rotate'], env);
      const reloadedBefore = logLines().filter((l) => l.msg === 'reloaded the keys').length;
      process.kill(server.pid, 'SIGHUP');
      for (let tries = 0; tries < 100; tries++) {
        if (logLines().filter((l) => l.msg === 'reloaded the keys').length === reloadedBefore + WORKERS) break;
        await sleep(20);
      }
      const reloaded = logLines()
        .filter((l) => l.msg === 'reloaded the keys')
        .slice(reloadedBefore);
      assert.deepEqual(new Set(reloaded.map((l) => l.worker)).size, WORKERS, 'each worker reloaded its keys');
      const jwks = await rawCall(server.url, 'GET', '/.well-known/jwks.json');
      const signer = (jwks.body as { keys: { kid: string }[] }).keys[0].kid;
      const signIns = await Promise.all(
        Array.from({ length: 6 }, () => rawCall(server.url, 'POST', `${BASE}/session`, { body: ALICE_SIGN_IN })),
      );
      for (const reply of signIns) {
        const { accessToken } = (await bodyOf(reply, 'authorizeUser', 200)).data;
        assert.equal(decodePart(accessToken, 0).kid, signer, 'signed with the rotated key');
      }
      assert.equal((await workersOf(signIns)).size, WORKERS, 'both workers signed in some');
    });

    test('a worker that crashes is replaced; the other keeps answering meanwhile', async () => {
      // A connection the primary is handing to the worker just as it dies stays unanswered
      // (Node's cluster keeps it): like a client of a real server, wait a while, then try again.
      const answered = async (call: () => Promise<Reply>): Promise<Reply> => {
        for (let tries = 0; tries < 3; tries++) {
          const reply = await Promise.race([call(), sleep(3000).then(() => undefined)]);
          if (reply) return reply;
        }
        assert.fail('three requests in a row went unanswered');
      };
      const [, crashing] = processTree(server.pid);
      process.kill(crashing, 'SIGKILL');
      const meanwhile = await answered(() => rawCall(server.url, 'GET', '/health/live'));
      assert.equal(meanwhile.status, 200);
      for (let tries = 0; tries < 200 && logLines().filter((l) => l.msg === 'worker listening').length <= WORKERS; tries++) {
        await sleep(50);
      }
      const workers = processTree(server.pid).slice(1);
      assert.equal(workers.length, WORKERS, 'as many workers as before');
      assert.ok(!workers.includes(crashing));
      const replies = await Promise.all(
        Array.from({ length: 4 }, () => answered(() => rawCall(server.url, 'GET', '/health/ready'))),
      );
      assert.deepEqual(
        replies.map((r) => r.status),
        [200, 200, 200, 200],
      );
      assert.equal((await workersOf(replies)).size, WORKERS, 'the new worker answers too');
    });
  });
}
