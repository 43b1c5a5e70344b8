import { loadConfig, storeOptions } from '../src/config.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { openStore } from '../src/store/open.js';
import type { Store } from '../src/domain/store.js';
import { serveChild, type ChildServer } from './support/child-server.js';
import { processTree } from './support/processes.js';
import {
  assertExample,
  BASE,
  bearer,
  bodyOf,
  logEntries,
  rawCall,
  type Reply,
  type Session,
  type TestServer,
} from './support/harness.js';
import { startServerWithStoreHooks, type StoreHooks } from './support/store-hooks.js';
import { ALICE, ALICE_SIGN_IN, signInBody } from './support/vectors.js';

describe('the store failing mid-request', () => {
  let t: TestServer;
  let hooks: StoreHooks;
  before(async () => {
    ({ t, hooks } = await startServerWithStoreHooks());
  });
  after(() => t.stop());

  /** A 500 in the envelope naming its request id, logged with the cause, with nothing of the cause in the answer. */
  function assertInternalError(reply: Reply, method: keyof Store): void {
    assert.equal(reply.status, 500, JSON.stringify(reply.body));
    const id = reply.headers['x-request-id'];
    assert.deepEqual(reply.body, {
      status: { code: 500, name: 'Internal Server Error', message: `Internal server error; report request id ${String(id)}.` },
      data: {},
    });
    const logged = logEntries(t).find((entry) => entry.requestId === id && entry.level === 50);
    assert.match(logged?.err?.message ?? '', new RegExp(`injected failure in ${method}`));
  }

  const sessionCount = () => {
    const db = new Database(hooks.file, { readonly: true });
    try {
      return (db.prepare('select count(*) as n from sessions').get() as { n: number }).n;
    } finally {
      db.close();
    }
  };

  test('sign-in: a failing user lookup or session insert hands out no token and stores no session', async () => {
    for (const method of ['findUser', 'createSession'] as const) {
      const email = `fault-${method}@example.test`;
      const s = await t.newSession(email); // registers the user
      const proof = signInBody(email, s.key);
      const before = sessionCount();
      hooks.failNext(method);
      assertInternalError(await t.signIn(proof), method);
      assert.equal(sessionCount(), before, 'no session was stored');
      assert.equal((await t.signIn(proof)).status, 200, 'the next sign-in works');
    }
  });

  test('logout: the update fails; the same token logs out afterwards', async () => {
    const s = await t.newSession();
    hooks.failNext('endSession');
    assertInternalError(await t.logout(s.accessToken), 'endSession');
    await assertExample(await t.logout(s.accessToken), 'LoggedOut');
  });

  test('logout: the update is stored but its answer is lost; the logout is in force', async () => {
    const s = await t.newSession();
    hooks.failNext('endSession', 'after it ran');
    assertInternalError(await t.logout(s.accessToken), 'endSession');
    await assertExample(await t.logout(s.accessToken), 'AccessTokenLoggedOut');
    await assertExample(await t.refresh(s.refreshToken), 'SessionLoggedOut');
  });

  test('logout of a logged-out token: the user lookup or reading why fails; it stays logged out', async () => {
    for (const method of ['findUser', 'findSession'] as const) {
      const s = await t.newSession();
      await assertExample(await t.logout(s.accessToken), 'LoggedOut');
      hooks.failNext(method);
      assertInternalError(await t.logout(s.accessToken), method);
      await assertExample(await t.logout(s.accessToken), 'AccessTokenLoggedOut');
    }
  });

  test('refresh: the swap fails; the refresh token was not used up', async () => {
    const s = await t.newSession();
    hooks.failNext('rotateSession');
    assertInternalError(await t.refresh(s.refreshToken), 'rotateSession');
    const next = await t.refresh(s.refreshToken);
    assert.equal(next.status, 200);
    await assertExample(await t.logout(next.body.data.accessToken), 'LoggedOut');
  });

  test('refresh: the swap is stored but its answer is lost; retrying is reuse and revokes the session', async () => {
    const s = await t.newSession();
    hooks.failNext('rotateSession', 'after it ran');
    assertInternalError(await t.refresh(s.refreshToken), 'rotateSession');
    // The new pair never left the server; the old refresh token is spent. Fail closed: sign in again.
    await assertExample(await t.refresh(s.refreshToken), 'RefreshTokenReused');
    await assertExample(await t.logout(s.accessToken), 'SessionRevokedAfterReuse');
  });

  test('refresh-token reuse: revoking fails; the reuse is still caught next time', async () => {
    const s = await t.newSession();
    const next: Session = (await bodyOf(await t.refresh(s.refreshToken), 'refreshTokens', 200)).data;
    hooks.failNext('revokeSession');
    assertInternalError(await t.refresh(s.refreshToken), 'revokeSession');
    await assertExample(await t.refresh(s.refreshToken), 'RefreshTokenReused');
    await assertExample(await t.refresh(next.refreshToken), 'SessionRevokedAfterReuse');
  });
});

describe('the server process dying', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fib-auth-faults-'));
    env = {
      PATH: process.env.PATH,
      DATABASE_URL: `sqlite:${join(dir, 'fib-auth.sqlite')}`,
      FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem'),
      HOST: '127.0.0.1',
      PORT: '0',
      // After the restart about 100 logouts are refused as already logged out, on purpose.
      RATE_LIMIT_REFUSED_PER_ADDRESS: '0',
    };
    const store = await openStore(storeOptions(loadConfig(env)));
    await store.addUser({
      email: ALICE.email,
      accountId: 'acc-alice',
      authPublicKeyHex: ALICE.publicKeyHex,
      role: 'ROLE_PEER',
      createdAt: 0,
    });
    await store.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const logout = (server: ChildServer, token: string) =>
    rawCall(server.url, 'POST', `${BASE}/logout`, { headers: bearer(token) });

  test('kill -9 under a load of logouts: every logout answered 200 is in force after the restart', async (ctx) => {
    const SESSIONS = 200;
    const KILL_AFTER = 100;
    const WORKERS = 6;
    const first = await serveChild(env);
    ctx.after(() => first.stop('SIGKILL')); // only if a check failed while it ran
    const tokens: string[] = [];
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (tokens.length < SESSIONS) {
          const reply = await rawCall(first.url, 'POST', `${BASE}/session`, { body: ALICE_SIGN_IN });
          tokens.push((await bodyOf(reply, 'authorizeUser', 200)).data.accessToken);
        }
      }),
    );

    // What each logout got before the kill: 200, or no answer (in flight, or never connected).
    const answered = new Set<string>();
    const inFlight = new Set<string>();
    const neverSent = new Set<string>();
    let killed: Promise<number | null> | undefined;
    let next = 0;
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        while (next < tokens.length) {
          const token = tokens[next++];
          try {
            const reply = await logout(first, token);
            assert.equal(reply.status, 200);
            answered.add(token);
            // At a moment not tied to an answer, so that some logouts are caught half-way.
            if (answered.size === KILL_AFTER) killed = sleep(Math.random() * 3).then(() => first.stop('SIGKILL'));
          } catch (error) {
            if (error instanceof assert.AssertionError) throw error;
            ((error as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? neverSent : inFlight).add(token);
          }
        }
      }),
    );
    assert.equal(await killed, null, 'killed by the signal');

    const second = await serveChild(env);
    ctx.after(() => second.stop('SIGKILL'));
    let inForce = 0;
    let tookEffect = 0;
    for (const token of tokens) {
      const reply = await logout(second, token);
      if (answered.has(token)) {
        assert.equal((await bodyOf(reply, 'logout', 401)).status.message, 'The access token has already been logged out.');
        inForce += 1;
      } else if (inFlight.has(token)) {
        assert.ok(reply.status === 200 || reply.status === 401, String(reply.status));
        if (reply.status === 401) tookEffect += 1;
      } else {
        // Never reached the server: still live, so the check above is not vacuous.
        assert.equal(reply.status, 200, `never sent: ${JSON.stringify(reply.body)}`);
      }
    }
    assert.equal(await second.stop(), 0);
    ctx.diagnostic(
      `answered 200 before kill -9: ${answered.size}; still logged out after the restart: ${inForce}; ` +
        `in flight at the kill: ${inFlight.size} (${tookEffect} had taken effect); never sent: ${neverSent.size}`,
    );
    assert.equal(inForce, answered.size);
    assert.ok(answered.size >= KILL_AFTER);
  });

  test('a worker that gets SIGTERM again while it drains (its primary passes one on, a signal to the process group sends another) still answers its request in flight', async (ctx) => {
    // systemd signals every process of the unit, and Ctrl-C the terminal's process group: each
    // worker then gets SIGTERM twice, once directly and once from its primary.
    const server = await serveChild({ ...env, WORKERS: '2' });
    ctx.after(() => server.stop('SIGKILL'));
    // Both workers past their start-up, where they take SIGTERM as a signal to drain: each answered.
    const answeredBy = () =>
      new Set(
        server.lines
          .filter((line) => line.includes('"msg":"request"'))
          .map((line) => (JSON.parse(line) as { worker: number }).worker),
      );
    for (const deadline = Date.now() + 10_000; answeredBy().size < 2 && Date.now() < deadline; await sleep(5)) {
      await rawCall(server.url, 'GET', '/health/live');
    }
    const body = JSON.stringify(ALICE_SIGN_IN);
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
    socket.on('error', () => {}); // a worker that died resets it: the missing answer is what fails
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write(
      `POST ${BASE}/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`,
    );
    await waitFor('the 100 Continue', () => received.includes('100 Continue'), server);
    const workers = processTree(server.pid).slice(1);
    assert.equal(workers.length, 2);
    for (const worker of workers) process.kill(worker, 'SIGTERM');
    await waitFor(
      'both workers draining',
      () => server.lines.filter((line) => line.includes('worker stopped listening')).length === 2,
      server,
    );
    for (const worker of workers) {
      try {
        process.kill(worker, 'SIGTERM');
      } catch {
        // the worker with no request in flight has drained and exited already
      }
    }
    await sleep(100); // the second signal's moment to do harm

    socket.write(body);
    await closed;
    assert.match(received.slice(received.lastIndexOf('HTTP/1.1 ')), /^HTTP\/1\.1 200 OK\r\n/, JSON.stringify(received));
    assert.equal(await server.stop(), 0);
  });

  test('SIGTERM with WORKERS=2: a request in flight still gets its answer, new connections are refused, exit 0', async (ctx) => {
    // The primary passes the signal on and each worker drains its own requests (docs/design.md §13).
    const server = await serveChild({ ...env, WORKERS: '2' });
    ctx.after(() => server.stop('SIGKILL'));
    const body = JSON.stringify(ALICE_SIGN_IN);
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('utf8')));
    const closed = new Promise((resolve) => socket.on('close', resolve));
    // Expect: 100-continue makes the server say when it has read the head and begun the request.
    socket.write(
      `POST ${BASE}/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`,
    );
    await waitFor('the 100 Continue', () => received.includes('100 Continue'), server);

    const exited = server.stop('SIGTERM');
    // The server logs this once it has stopped listening.
    await waitFor(
      'the log line saying the server stopped listening',
      () => server.lines.some((line) => line.includes('no new connections')),
      server,
    );
    await assert.rejects(rawCall(server.url, 'POST', `${BASE}/logout`), { code: 'ECONNREFUSED' });

    socket.write(body);
    await closed;
    const answer = received.slice(received.lastIndexOf('HTTP/1.1 '));
    assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(
      answer,
      /\r\nConnection: close\r\n/i,
      'the connection closes after the answer, so the drain does not wait for it',
    );
    const reply = { status: 200, headers: {}, body: JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as unknown };
    const envelope = await bodyOf(reply, 'authorizeUser', 200);
    assert.equal(envelope.status.message, 'User has been successfully authorized.');
    assert.match(envelope.data.accessToken, /^eyJ/);
    assert.equal(await exited, 0);
  });
});

/** Waits for `done`, failing after 10 s with the server's output instead of hanging the suite. */
async function waitFor(what: string, done: () => boolean, server: ChildServer): Promise<void> {
  for (const deadline = Date.now() + 10_000; !done(); await sleep(5)) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within 10 s:\n${server.lines.join('\n')}`);
  }
}
