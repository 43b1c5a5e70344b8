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
import { decodePart } from './support/tokens.js';
import { ALICE, ALICE_SIGN_IN } from './support/vectors.js';

// `fib-auth serve` with WORKERS=2 (docs/design.md §13): a primary and two worker processes on
// one port. Whatever one worker decides, the whole server decides: every connection here is a
// fresh one, and the primary hands them to the workers in turn, so both answer.
const WORKERS = 2;
const FAILED_SIGN_INS_PER_EMAIL = 4;

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
        // The per-email limit is tested; the per-address one would stop the other tests' refusals.
        RATE_LIMIT_REFUSED_PER_ADDRESS: '0',
        RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL: String(FAILED_SIGN_INS_PER_EMAIL),
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

    test('/metrics reports the requests of every worker, whichever worker is scraped', async () => {
      const count = async () => {
        const scrape = await rawCall(server.url, 'GET', '/metrics');
        assert.equal(scrape.status, 200);
        const line = /^fib_auth_logout_outcomes_total\{outcome="unreadable"\} (\d+)$/m.exec(String(scrape.body));
        assert.ok(line, 'the logout outcome counter is in the scrape');
        return { value: Number(line[1]), scrape };
      };
      const before = await count();
      const refused = await Promise.all(Array.from({ length: 4 }, () => logout('not-a-token')));
      assert.deepEqual(
        refused.map((r) => r.status),
        [401, 401, 401, 401],
      );
      assert.equal((await workersOf(refused)).size, WORKERS, 'both workers refused some');
      const scrapes = [await count(), await count(), await count()];
      for (const { value } of scrapes) assert.equal(value, before.value + 4, 'the sum over the workers');
      assert.equal((await workersOf(scrapes.map((s) => s.scrape))).size, WORKERS, 'both workers were scraped');
      const live = await count();
      assert.match(String(live.scrape.body), /^fib_auth_active_sessions \d+$/m, 'live sessions counted once, not per worker');
    });

    test('failed sign-ins count against the limit of the whole server, not of each worker', async () => {
      const failing = { ...ALICE_SIGN_IN, email: 'nobody-here@example.test' };
      const replies: Reply[] = [];
      for (let i = 0; i < FAILED_SIGN_INS_PER_EMAIL + 4; i++) {
        replies.push(await rawCall(server.url, 'POST', `${BASE}/session`, { body: failing }));
      }
      const statuses = replies.map((r) => r.status);
      assert.deepEqual(statuses.slice(FAILED_SIGN_INS_PER_EMAIL), [429, 429, 429, 429], statuses.join(' '));
      assert.ok(
        statuses.slice(0, FAILED_SIGN_INS_PER_EMAIL).every((status) => status === 404 || status === 422),
        statuses.join(' '),
      );
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
