import assert from 'node:assert/strict';
import { after, before, describe, test as testOn } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { DATABASES, type TestDatabase } from '../support/databases.js';
import { assertExample, envelopeOf, startTestServer, type Reply, type TestServer } from '../support/harness.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { decodePart } from '../support/tokens.js';
import { signInBody } from '../support/vectors.js';

const postgres = DATABASES.find((backend) => backend.name === 'PostgreSQL')!;
// Short, to keep the test quick; not shorter, since this process also runs the proxy and the
// server, whose start-up work can delay the first connection on a busy machine. For the same
// reason the suite runs in test/serial/, with no other test file beside it: its server migrates
// within this timeout, and every bound below is a few seconds.
const TIMEOUT_SECONDS = 2;
/** Waiting for a pooled connection, then one statement's reply (timeout + 0.5 s); plus slack. */
const BOUND_MS = 2 * TIMEOUT_SECONDS * 1000 + 500 + 1000;

describe('a PostgreSQL outage', () => {
  // A hang is the failure this suite exists to catch: fail it instead of waiting forever.
  const test = (name: string, fn: () => Promise<void>): void => {
    testOn(name, { skip: postgres.skip, timeout: 20_000 }, fn);
  };
  let database: TestDatabase;
  let proxy: TcpProxy;
  let t: TestServer;
  let sessions: Awaited<ReturnType<TestServer['newSession']>>[];

  before(async () => {
    if (postgres.skip) return;
    database = await postgres.create();
    const url = new URL(database.url);
    proxy = new TcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    await proxy.listen();
    url.host = `127.0.0.1:${proxy.port}`;
    // A small pool, so that requests also queue for a connection while the database is away.
    t = await startTestServer({ DATABASE_URL: url.href, DATABASE_TIMEOUT: String(TIMEOUT_SECONDS), DATABASE_POOL_SIZE: '2' });
    sessions = [await t.newSession(), await t.newSession()];
  });
  after(async () => {
    if (postgres.skip) return;
    // Whatever failed before: the proxy's listener would keep this process alive.
    await t?.stop();
    await proxy?.cut();
    await database?.drop();
  });

  /** Sends every kind of request at once; each must be a 500 envelope within the bound. */
  async function assertBoundedErrors(): Promise<number> {
    const [s, other] = sessions;
    const requests: (() => Promise<Reply>)[] = [
      () => t.logout(s.accessToken),
      () => t.logout(s.accessToken),
      () => t.logout(other.accessToken),
      () => t.refresh(other.refreshToken),
      () => t.signIn(signInBody(s.email, s.key)),
    ];
    const timed = await Promise.all(
      requests.map(async (request) => {
        const started = performance.now();
        const reply = await request();
        return { reply, ms: performance.now() - started };
      }),
    );
    for (const { reply, ms } of timed) {
      assert.equal(reply.status, 500, JSON.stringify(reply.body));
      assert.match(envelopeOf(reply).status.message, /^Internal server error; report request id /);
      assert.ok(ms < BOUND_MS, `answered after ${Math.round(ms)} ms, bound ${BOUND_MS} ms`);
    }
    const slowest = Math.round(Math.max(...timed.map(({ ms }) => ms)));
    console.log(`slowest error reply: ${slowest} ms`);
    return slowest;
  }

  test('a statement stuck behind a lock is cancelled by the database: a 500, and nothing stored', async () => {
    const [s] = sessions;
    const locker = new pg.Client({ connectionString: database.url });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table sessions in exclusive mode');
      const started = performance.now();
      const reply = await t.logout(s.accessToken);
      const ms = Math.round(performance.now() - started);
      console.log(`a logout behind the lock answered after ${ms} ms`);
      assert.equal(reply.status, 500, JSON.stringify(reply.body));
      assert.ok(ms < BOUND_MS, `answered after ${ms} ms, bound ${BOUND_MS} ms`);
    } finally {
      await locker.query('rollback');
      await locker.end();
    }
    // Had the update only been abandoned by the client, it would have run once the lock was gone.
    await sleep(200);
    assert.equal((await t.server.store.findSession(decodePart(s.accessToken, 1).sid as string))?.revokedAt, null);
    assert.ok(
      t.logs.some((line) => line.includes('canceling statement due to statement timeout')),
      'the database cancelled it',
    );
  });

  test('a network gone quiet: every request is a 500 within the timeouts, none hangs', async () => {
    proxy.silence();
    const slowest = await assertBoundedErrors();
    assert.ok(slowest >= TIMEOUT_SECONDS * 1000 - 100, `the answers waited for the timeout (${slowest} ms)`);
  });

  test('a database that refuses connections: every request is a 500 at once', async () => {
    await proxy.cut();
    await assertBoundedErrors();
  });

  test('when the database returns, the same server recovers by itself, having stored nothing in between', async () => {
    await proxy.listen();
    const restored = performance.now();
    const [s, other] = sessions;
    let reply = await t.logout(s.accessToken);
    while (reply.status === 500 && performance.now() - restored < 10_000) {
      await sleep(50);
      reply = await t.logout(s.accessToken);
    }
    console.log(`first answer from the database after ${Math.round(performance.now() - restored)} ms`);
    // The session was still live: none of the outage's logouts had ended it.
    await assertExample(reply, 'LoggedOut');
    await assertExample(await t.logout(s.accessToken), 'AccessTokenLoggedOut');
    assert.equal((await t.refresh(other.refreshToken)).status, 200);
    assert.ok(
      t.logs.some((line) => line.includes('"level":50') && line.includes('request failed')),
      'the 500s were logged with their cause',
    );
  });
});
