/**
 * `npm run bench:ssf`: Shared Signals under a load of logouts, in one run on this machine
 * (docs/design.md §15). Two questions:
 *
 * 1. How long a logout takes to reach a receiver, by poll (RFC 8936: a long poll, acknowledging
 *    each answer in the next) and by push (RFC 8935: a receiver answering 202): from the
 *    logout's 200 to the SET's arrival, p50 and p99, while logouts run at concurrency 10.
 * 2. What having one poll and one push stream open costs the logout's throughput: runs with
 *    the two streams and runs without alternate, and the ratio of their medians is reported.
 *
 * One server process (WORKERS=1) on SQLite. Results go to bench/results/ssf-<date>.json.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { packageRoot } from '../src/package-root.js';
import { freePort } from '../test/support/processes.js';
import { decodePart, TokenMinter } from '../test/support/tokens.js';
import { openSqlite } from './database.js';
import { makeUsers, SessionFactory, startFibAuth, warmUp } from './fixture.js';
import { load, round, type LoadResult } from './load.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const REPS = Number(process.env.BENCH_REPS ?? 3);
const CONCURRENCY = 10;

const log = (line: string) => console.log(`[bench:ssf] ${line}`);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};
const sessionOf = (set: string) => (decodePart(set, 1).sub_id as { session: { id: string } }).session.id;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fib-auth-bench-ssf-'));
  const sqlitePath = join(dir, 'fib-auth.sqlite');
  const keyFile = join(dir, 'signing-key.pem');
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const server = await startFibAuth(`sqlite:${sqlitePath}`, keyFile, port, { env: { WORKERS: '1', ISSUER: origin } });
  try {
    const minter = await TokenMinter.fromKeyFile(keyFile);
    const db = openSqlite(sqlitePath);
    const users = makeUsers(1000);
    await db.addUsers(users);
    const sessions = new SessionFactory(db, minter, users);
    // A client for the streams, registered as `fib-auth clients add` does: only the secret's hash is stored.
    const secret = randomBytes(32).toString('base64url');
    const clients = new Database(sqlitePath);
    clients.pragma('busy_timeout = 5000');
    clients
      .prepare('insert into clients (id, secret_hash, created_at) values (?, ?, ?)')
      .run('bench-receiver', createHash('sha256').update(secret).digest('hex'), Math.floor(Date.now() / 1000));
    clients.close();
    const authorization = `Basic ${Buffer.from(`bench-receiver:${secret}`).toString('base64')}`;
    const ssf = async (method: string, path: string, body?: object) => {
      const response = await fetch(`${origin}${path}`, {
        method,
        headers: { authorization, 'content-type': 'application/json' },
        body: body && JSON.stringify(body),
      });
      return { status: response.status, body: response.status === 204 ? undefined : ((await response.json()) as unknown) };
    };

    // Arrivals of SETs, by session id, on this process's clock.
    const arrivals = { poll: new Map<string, number>(), push: new Map<string, number>() };
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        arrivals.push.set(sessionOf(Buffer.concat(chunks).toString('utf8')), performance.now());
        res.writeHead(202).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const pushUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/events`;

    /** Opens one poll and one push stream, and polls the first until the returned function is called. */
    const openStreams = async () => {
      const poll = await ssf('POST', '/ssf/streams', {});
      const push = await ssf('POST', '/ssf/streams', { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: pushUrl } });
      assert.equal(poll.status, 201);
      assert.equal(push.status, 201);
      const pollId = (poll.body as { stream_id: string }).stream_id;
      const pushId = (push.body as { stream_id: string }).stream_id;
      let open = true;
      const polling = (async () => {
        let ack: string[] = [];
        while (open) {
          const { status, body } = await ssf('POST', `/ssf/poll/${pollId}`, { ack, maxEvents: 400 });
          assert.equal(status, 200, JSON.stringify(body));
          const { sets } = body as { sets: Record<string, string> };
          const now = performance.now();
          for (const set of Object.values(sets)) arrivals.poll.set(sessionOf(set), now);
          ack = Object.keys(sets);
        }
        await ssf('POST', `/ssf/poll/${pollId}`, { ack, maxEvents: 0 });
      })();
      return async () => {
        open = false;
        await polling;
        for (const id of [pollId, pushId]) assert.equal((await ssf('DELETE', `/ssf/streams?stream_id=${id}`)).status, 204);
      };
    };

    await warmUp(server, sessions);
    const runs = { without: [] as LoadResult[], with: [] as LoadResult[] };
    const latencies = { poll: [] as number[], push: [] as number[] };
    for (let rep = 0; rep < REPS; rep++) {
      for (const streams of ['without', 'with'] as const) {
        const close = streams === 'with' ? await openStreams() : undefined;
        const created = await sessions.create(30_000);
        const requests = created.map(({ session, user }) => ({
          method: 'POST' as const,
          path: '/auth/api/v1/authentication-management/logout',
          headers: { authorization: `Bearer ${minter.accessToken(session, user.accountId)}` },
        }));
        const answered = new Map<string, number>();
        const result = await load(origin, requests, {
          concurrency: CONCURRENCY,
          seconds: SECONDS,
          pid: server.pid,
          onAnswer: (index, status) => status === 200 && answered.set(created[index].session.id, performance.now()),
        });
        assert.deepEqual(result.statuses, { 200: result.requests }, `every logout succeeds: ${JSON.stringify(result.statuses)}`);
        runs[streams].push(result);
        if (close) {
          // Every logout's SET, by both methods, before the streams close.
          const deadline = performance.now() + 30_000;
          while ([...answered.keys()].some((sid) => !arrivals.poll.has(sid) || !arrivals.push.has(sid))) {
            assert.ok(performance.now() < deadline, 'every SET arrives within 30 s');
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
          for (const method of ['poll', 'push'] as const) {
            for (const [sid, at] of answered) latencies[method].push(Math.max(0, arrivals[method].get(sid)! - at));
          }
          await close();
        }
        log(`rep ${rep + 1} ${streams} streams: ${Math.round(result.rps)} logouts/s`);
      }
    }
    receiver.close();
    await db.close();

    const rps = (results: LoadResult[]) => median(results.map((r) => r.rps));
    const summary = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model },
      settings: { seconds: SECONDS, reps: REPS, concurrency: CONCURRENCY, backend: 'sqlite', workers: 1 },
      logoutsPerSecond: {
        withoutStreams: round(rps(runs.without), 0),
        withPollAndPushStreams: round(rps(runs.with), 0),
        ratio: round(rps(runs.with) / rps(runs.without), 3),
      },
      deliveryLatencyMs: {
        poll: {
          sets: latencies.poll.length,
          p50: round(percentile(latencies.poll, 50)),
          p99: round(percentile(latencies.poll, 99)),
        },
        push: {
          sets: latencies.push.length,
          p50: round(percentile(latencies.push, 50)),
          p99: round(percentile(latencies.push, 99)),
        },
      },
    };
    console.log(JSON.stringify(summary, null, 2));
    const results = join(packageRoot, 'bench', 'results');
    mkdirSync(results, { recursive: true });
    writeFileSync(join(results, `ssf-${summary.date.slice(0, 10)}.json`), `${JSON.stringify(summary, null, 2)}\n`);
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
