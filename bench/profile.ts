/**
 * `npm run bench:profile`: where a logout's time goes, at concurrency 50 for a few seconds each.
 *
 * 1. The server under `node --cpu-prof` (one process), then the functions and packages it spent
 *    its CPU in. The profile itself is kept for Chrome DevTools (its path is printed).
 *    `npm run bench:profile -- postgres` runs both parts on a schema of TEST_DATABASE_URL's
 *    PostgreSQL instead of a SQLite file.
 * 2. The latency breakdown: the server with phase timing on (src/request-phases.ts, turned on by
 *    bench/phase-recorder.mjs preloaded into its processes), with its default workers and with
 *    one, and each phase's p50 and p99 over the logouts of the run, beside the latency the load
 *    generator measured. BENCHMARKS.md explains the phases.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../src/package-root.js';
import { PHASES, type BatchFacts, type Phase } from '../src/request-phases.js';
import { openPostgres, openSqlite, type BenchDatabase } from './database.js';
import { createSchema } from '../test/support/postgres.js';
import { freePort } from '../test/support/processes.js';
import { TokenMinter } from '../test/support/tokens.js';
import { makeUsers, SessionFactory, startFibAuth, type ServerOptions } from './fixture.js';
import { load, round, type LoadResult } from './load.js';

const SECONDS = 5;
const ON_POSTGRES = process.argv.includes('postgres');
const STORE = ON_POSTGRES ? 'PostgreSQL' : 'SQLite';
if (ON_POSTGRES && !process.env.TEST_DATABASE_URL) {
  console.error('npm run bench:profile -- postgres: set TEST_DATABASE_URL to a PostgreSQL database it may add a schema to');
  process.exit(2);
}

/** The server's database for one run, and the bench's own connection to it once the server made its schema. */
async function database(dir: string): Promise<{ url: string; open: () => Promise<BenchDatabase>; drop: () => Promise<void> }> {
  if (!ON_POSTGRES) {
    const path = join(dir, 'fib-auth.sqlite');
    return { url: `sqlite:${path}`, open: () => Promise.resolve(openSqlite(path)), drop: () => Promise.resolve() };
  }
  const schema = await createSchema(process.env.TEST_DATABASE_URL!, 'fib_auth_profile');
  return { url: schema.url, open: () => openPostgres(schema.url), drop: () => schema.drop() };
}
const CONCURRENCY = 50;
const TOP = 25;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

/** Where a function lives: its npm package, or the project file. */
function owner(url: string): string {
  const inPackage = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url);
  if (inPackage) return inPackage[1];
  if (url.startsWith('node:')) return 'node internals';
  const ownFile = /\/(dist\/src\/.*)$/.exec(url);
  return ownFile ? ownFile[1] : url || '(native, GC, idle)';
}

function topOf(entries: Map<string, number>, total: number): string[] {
  return [...entries]
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP)
    .map(([name, hits]) => `${((100 * hits) / total).toFixed(1).padStart(5)} %  ${name}`);
}

/** V8 stamps profile samples with this clock (CLOCK_MONOTONIC, µs), in every process alike. */
const monotonicMicroseconds = () => Number(process.hrtime.bigint() / 1000n);

/**
 * Starts a server on a fresh SQLite file (or PostgreSQL schema) with `options`, warms it up, and logs out at
 * concurrency 50 for SECONDS; `measure` is told when the timed run started and ended, as
 * epoch milliseconds, after the server stopped (so that it wrote what it kept).
 */
async function logoutRun(
  options: ServerOptions,
  measure: (result: LoadResult, window: { start: number; end: number }) => void,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fib-auth-profile-'));
  const keyFile = join(dir, 'signing-key.pem');
  const store = await database(dir);
  const server = await startFibAuth(store.url, keyFile, await freePort(), options);
  let result: LoadResult;
  const window = { start: 0, end: 0 };
  try {
    const db = await store.open();
    const users = makeUsers(100);
    await db.addUsers(users);
    const sessions = new SessionFactory(db, await TokenMinter.fromKeyFile(keyFile), users);
    // Fifty connections reach every worker and warm each up.
    await load(server.origin, await sessions.logouts(6000), { concurrency: CONCURRENCY, seconds: 2 });
    const requests = await sessions.logouts(100_000);
    window.start = performance.timeOrigin + performance.now();
    result = await load(server.origin, requests, { concurrency: CONCURRENCY, seconds: SECONDS, pid: server.pid });
    window.end = performance.timeOrigin + performance.now();
    assert.deepEqual(result.statuses, { 200: result.requests });
    await db.close();
  } finally {
    await server.stop(); // profiles and timelines are written as the server's processes exit
    await store.drop();
  }
  try {
    measure(result, window);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const summary = (result: LoadResult) => {
  const cpuPerLogout = Math.round((result.server!.cores * 1e6) / result.rps);
  return `${result.rps} logouts/s at c=${CONCURRENCY}, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, ${result.server!.cores} cores in ${result.server!.processes} processes: ${cpuPerLogout} µs of CPU per logout`;
};

/** Part 1: the CPU profile of one process. */
async function cpuProfile(): Promise<void> {
  const keep = mkdtempSync(join(tmpdir(), 'fib-auth-cpu-profile-'));
  let file = '';
  // One process: with workers each would write a profile of its own, and the primary's is idle.
  await logoutRun({ nodeOptions: ['--cpu-prof', `--cpu-prof-dir=${keep}`], env: { WORKERS: '1' } }, (result, window) => {
    console.log(`CPU profile, ${STORE}, WORKERS=1: ${summary(result)}`);
    file = join(
      keep,
      readdirSync(keep).find((name) => name.endsWith('.cpuprofile'))!,
    );
    const profile = JSON.parse(readFileSync(file, 'utf8')) as {
      nodes: ProfileNode[];
      startTime: number;
      samples: number[];
      timeDeltas: number[];
    };
    // V8 stamps samples with CLOCK_MONOTONIC (µs), which performance.now() counts from timeOrigin.
    const fromEpoch = (epochMs: number) =>
      (epochMs - performance.timeOrigin) * 1000 + monotonicMicroseconds() - performance.now() * 1000;
    const [start, end] = [fromEpoch(window.start), fromEpoch(window.end)];
    const nodeById = new Map(profile.nodes.map((node) => [node.id, node]));
    const byFunction = new Map<string, number>();
    const byOwner = new Map<string, number>();
    let total = 0;
    let at = profile.startTime;
    profile.samples.forEach((id, i) => {
      at += profile.timeDeltas[i];
      if (at < start || at > end) return; // only while the load ran: not start-up, not seeding
      const { callFrame } = nodeById.get(id)!;
      const where = `${owner(callFrame.url)}:${callFrame.lineNumber + 1}`;
      const name = `${callFrame.functionName || '(anonymous)'}  ${callFrame.url ? where : ''}`;
      byFunction.set(name, (byFunction.get(name) ?? 0) + 1);
      byOwner.set(owner(callFrame.url), (byOwner.get(owner(callFrame.url)) ?? 0) + 1);
      total++;
    });
    assert.ok(total > 0, 'the profile has samples from the load');
    console.log(`\nself time of the main thread during the load, by package or file:\n${topOf(byOwner, total).join('\n')}`);
    console.log(`\nself time by function:\n${topOf(byFunction, total).join('\n')}`);
  });
  console.log(`\nprofile: ${file}`);
}

interface TimedRequest {
  at: number;
  operation: string | undefined;
  status: number;
  ms: Partial<Record<Phase, number>>;
  /** With the recorder's id of the batch, the same for every request of it. */
  batch?: BatchFacts & { id: string };
}

const percentile = (sorted: readonly number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const sortedOf = (values: number[]) => values.sort((a, b) => a - b);
const ms = (value: number) => round(value, 2).toFixed(2);

/** Part 2: the latency breakdown of the logouts of one run, as a markdown table. */
async function phaseBreakdown(workers: string | undefined): Promise<void> {
  const recordDir = mkdtempSync(join(tmpdir(), 'fib-auth-phases-'));
  try {
    const options = {
      nodeOptions: ['--import', join(packageRoot, 'bench/phase-recorder.mjs')],
      env: { PHASE_RECORD_DIR: recordDir, ...(workers ? { WORKERS: workers } : {}) },
    };
    await logoutRun(options, (result, window) => {
      const logouts = readdirSync(recordDir)
        .flatMap((name) => JSON.parse(readFileSync(join(recordDir, name), 'utf8')) as TimedRequest[])
        .filter((r) => r.operation === 'logout' && r.status === 200 && r.at >= window.start && r.at <= window.end);
      assert.ok(logouts.length > 0.9 * result.requests, `timelines of ${logouts.length} of ${result.requests} logouts`);
      const totals = logouts.map((r) => PHASES.reduce((sum, phase) => sum + (r.ms[phase] ?? 0), 0));
      const sortedTotals = sortedOf([...totals]);
      const tailFrom = percentile(sortedTotals, 99);
      const tail = logouts.filter((_, i) => totals[i] >= tailFrom);
      const mean = (of: TimedRequest[], phase: Phase) => of.reduce((sum, r) => sum + (r.ms[phase] ?? 0), 0) / of.length;
      const rows = PHASES.map((phase) => {
        const sorted = sortedOf(logouts.map((r) => r.ms[phase] ?? 0));
        return `| ${phase} | ${ms(percentile(sorted, 50))} | ${ms(percentile(sorted, 99))} | ${ms(mean(logouts, phase))} | ${ms(mean(tail, phase))} |`;
      });
      const distinct = [...new Map(logouts.filter((r) => r.batch).map((r) => [r.batch!.id, r.batch!])).values()];
      const writes = sortedOf(logouts.filter((r) => r.batch).map((r) => r.batch!.writes));
      const retries = sortedOf(distinct.map((b) => b.lockRetries));
      const commits = sortedOf(distinct.map((b) => b.commitMs));
      console.log(
        [
          `\n### Latency breakdown, ${STORE}, WORKERS=${workers ?? 'unset (the default)'}, c=${CONCURRENCY}, ${SECONDS} s, load average ${loadavg()[0].toFixed(1)}`,
          '',
          summary(result),
          '',
          '| phase | p50 ms | p99 ms | mean ms | mean ms in the slowest 1 % |',
          '| --- | ---: | ---: | ---: | ---: |',
          ...rows,
          `| **in the server** (sum of the phases) | ${ms(percentile(sortedTotals, 50))} | ${ms(percentile(sortedTotals, 99))} | ${ms(totals.reduce((a, b) => a + b, 0) / totals.length)} | ${ms(tail.reduce((sum, r) => sum + PHASES.reduce((s, p) => s + (r.ms[p] ?? 0), 0), 0) / tail.length)} |`,
          `| **at the load generator** | ${result.latencyMs.p50} | ${result.latencyMs.p99} | | |`,
          '',
          `${logouts.length} logouts timed. Their writes' batches: ${writes.length ? `${percentile(writes, 50)} writes at the median logout's batch, ${percentile(writes, 99)} at p99` : 'none'}; ` +
            `of ${distinct.length} batches, ${distinct.filter((b) => b.lockRetries > 0).length} waited for the write lock ` +
            `(retries per batch p50 ${percentile(retries, 50) ?? 0}, p99 ${percentile(retries, 99) ?? 0}, max ${retries.at(-1) ?? 0}); ` +
            `COMMIT (fsync) p50 ${ms(percentile(commits, 50) ?? 0)} ms, p99 ${ms(percentile(commits, 99) ?? 0)} ms.`,
        ].join('\n'),
      );
    });
  } finally {
    rmSync(recordDir, { recursive: true, force: true });
  }
}

await cpuProfile();
await phaseBreakdown(undefined);
await phaseBreakdown('1');
