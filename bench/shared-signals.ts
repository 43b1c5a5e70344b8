/**
 * Shared Signals under a load of logouts (docs/design.md §15), measured by `npm run bench`
 * (bench/run.ts); `npm run bench:ssf` runs this part alone. Two questions:
 *
 * 1. What having one poll and one push stream open costs the logout's throughput: closed-loop
 *    runs at concurrency 10 with the two streams and without them alternate, and the ratio of
 *    their medians is reported.
 * 2. How long a logout takes to reach a receiver, by poll (RFC 8936: a long poll, acknowledging
 *    each answer in the next) and by push (RFC 8935: a receiver answering 202): from the
 *    logout's 200 to the SET's arrival, p50 and p99, under a paced (open-loop) load of 1,000
 *    logouts/s, or of the throughput without streams when the machine sustains less.
 *
 * One server process (WORKERS=1) on SQLite.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { packageRoot } from '../src/package-root.js';
import { freePort } from '../test/support/processes.js';
import { decodePart, TokenMinter } from '../test/support/tokens.js';
import { openSqlite } from './database.js';
import { logoutRequest, makeUsers, SessionFactory, startFibAuth, warmUp } from './fixture.js';
import { load, round, type LoadResult } from './load.js';
import { sharedSignalsTable } from './report.js';

/** The closed-loop runs' concurrency; the paced runs' connections at most. */
const CONCURRENCY = 10;
const PACED_CONNECTIONS = 32;
/** The paced load the issue names (issue 22), when the machine sustains it without streams. */
const TARGET_RATE = 1000;

export interface DeliveryLatency {
  sets: number;
  p50Ms: number;
  p99Ms: number;
}

export interface SharedSignalsResults {
  settings: { secondsPerRun: number; runs: number; concurrency: number; backend: 'sqlite'; workers: 1 };
  /** One-minute load averages at the start and the end of this part. */
  loadAverage: { atStart: number; atEnd: number };
  /** Closed-loop logout runs, alternating: without any stream, and with one poll and one push stream open. */
  throughput: { without: LoadResult[]; with: LoadResult[] };
  /** The paced runs, with both streams open, and the SETs' delivery over all of them. */
  paced: {
    ratePerSecond: number;
    /** Why that rate: the issue's 1,000/s, or the throughput without streams when below it. */
    rateBasis: 'issue 22: 1,000 logouts/s' | 'the median throughput without streams (below 1,000/s)';
    runs: LoadResult[];
    delivery: { poll: DeliveryLatency; push: DeliveryLatency };
  };
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const latencyOf = (values: number[]): DeliveryLatency => {
  const sorted = [...values].sort((a, b) => a - b);
  return { sets: sorted.length, p50Ms: round(percentile(sorted, 50)), p99Ms: round(percentile(sorted, 99)) };
};
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const sessionOf = (set: string) => (decodePart(set, 1).sub_id as { session: { id: string } }).session.id;

export async function measureSharedSignals({
  seconds,
  reps,
  log,
}: {
  seconds: number;
  reps: number;
  log: (line: string) => void;
}): Promise<SharedSignalsResults> {
  // The machine may be shared: what else ran shows in the one-minute load average.
  const loadAverageAtStart = loadavg()[0];
  const dir = mkdtempSync(join(tmpdir(), 'fib-auth-bench-ssf-'));
  const sqlitePath = join(dir, 'fib-auth.sqlite');
  const keyFile = join(dir, 'signing-key.pem');
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  // The default ISSUER (the one the minted tokens name): the bench polls by path, not by the stream's endpoint_url.
  const server = await startFibAuth(`sqlite:${sqlitePath}`, keyFile, port, { env: { WORKERS: '1' } });
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

    /**
     * One run of logouts, closed loop or paced at `ratePerSecond`; with the streams open, it
     * waits for every logout's SET by both methods (so that no backlog weighs on the next run)
     * and returns each one's time from the logout's 200 to its arrival.
     */
    const run = async (streams: boolean, ratePerSecond?: number) => {
      const close = streams ? await openStreams() : undefined;
      const created = await sessions.create(
        ratePerSecond === undefined ? 10_000 * seconds : Math.ceil(ratePerSecond * seconds) + 100,
      );
      const requests = created.map(({ session, user }) => logoutRequest(minter.accessToken(session, user.accountId)));
      const answered = new Map<string, number>();
      const result = await load(origin, requests, {
        concurrency: ratePerSecond === undefined ? CONCURRENCY : PACED_CONNECTIONS,
        seconds,
        ratePerSecond,
        pid: server.pid,
        onAnswer: (index, status) => status === 200 && answered.set(created[index].session.id, performance.now()),
      });
      assert.deepEqual(result.statuses, { 200: result.requests }, `every logout succeeds: ${JSON.stringify(result.statuses)}`);
      const delivered = { poll: [] as number[], push: [] as number[] };
      if (close) {
        const deadline = performance.now() + 30_000;
        while ([...answered.keys()].some((sid) => !arrivals.poll.has(sid) || !arrivals.push.has(sid))) {
          assert.ok(performance.now() < deadline, 'every SET arrives within 30 s');
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        for (const method of ['poll', 'push'] as const) {
          for (const [sid, at] of answered) delivered[method].push(Math.max(0, arrivals[method].get(sid)! - at));
        }
        await close();
      }
      return { result, delivered };
    };

    await warmUp(server, sessions);
    const throughput = { without: [] as LoadResult[], with: [] as LoadResult[] };
    for (let rep = 0; rep < reps; rep++) {
      for (const streams of ['without', 'with'] as const) {
        const { result } = await run(streams === 'with');
        throughput[streams].push(result);
        log(`closed loop c=${CONCURRENCY} run ${rep + 1} ${streams} streams: ${result.rps} logouts/s`);
      }
    }
    const withoutStreams = median(throughput.without.map((r) => r.rps));
    const ratePerSecond = Math.min(TARGET_RATE, withoutStreams);
    const pacedRuns: LoadResult[] = [];
    const delivered = { poll: [] as number[], push: [] as number[] };
    for (let rep = 0; rep < reps; rep++) {
      const { result, delivered: sets } = await run(true, ratePerSecond);
      pacedRuns.push(result);
      delivered.poll.push(...sets.poll);
      delivered.push.push(...sets.push);
      const [poll, push] = [latencyOf(sets.poll), latencyOf(sets.push)];
      log(
        `paced at ${ratePerSecond}/s run ${rep + 1} with streams: ${result.rps} logouts/s (logout p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms); ` +
          `SET by poll p50 ${poll.p50Ms} ms, p99 ${poll.p99Ms} ms; by push p50 ${push.p50Ms} ms, p99 ${push.p99Ms} ms`,
      );
    }
    receiver.close();
    await db.close();
    return {
      settings: { secondsPerRun: seconds, runs: reps, concurrency: CONCURRENCY, backend: 'sqlite', workers: 1 },
      loadAverage: { atStart: loadAverageAtStart, atEnd: loadavg()[0] },
      throughput,
      paced: {
        ratePerSecond,
        rateBasis:
          ratePerSecond === TARGET_RATE ? 'issue 22: 1,000 logouts/s' : 'the median throughput without streams (below 1,000/s)',
        runs: pacedRuns,
        delivery: { poll: latencyOf(delivered.poll), push: latencyOf(delivered.push) },
      },
    };
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await measureSharedSignals({
    seconds: Number(process.env.BENCH_SECONDS ?? 3),
    reps: Number(process.env.BENCH_REPS ?? 3),
    log: (line) => console.log(`[bench:ssf] ${line}`),
  });
  console.log(`\n${sharedSignalsTable(results)}\n`);
  const date = new Date().toISOString();
  const dir = join(packageRoot, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const machine = { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version };
  const file = join(dir, `ssf-${date.slice(0, 10)}.json`);
  writeFileSync(file, `${JSON.stringify({ date, machine, sharedSignals: results }, null, 2)}\n`);
  console.log(`[bench:ssf] wrote ${file}`);
}
