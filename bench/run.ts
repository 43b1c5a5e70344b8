/**
 * `npm run bench`: logout against its limits, in one run on this machine. See BENCHMARKS.md
 * for the method; the results go to bench/results/<date>.json, the table to the console and
 * BENCHMARKS.md, the chart to bench/chart.svg.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundledSpecPath, packageRoot } from '../src/package-root.js';
import { measureCeiling } from './ceiling.js';
import { BASE } from '../test/support/api.js';
import type { TestDatabase } from '../test/support/databases.js';
import { createSchema } from '../test/support/postgres.js';
import { freePort } from '../test/support/processes.js';
import { decodePart, TokenMinter } from '../test/support/tokens.js';
import { openPostgres, openSqlite, type BenchDatabase, type BenchUser } from './database.js';
import {
  LOG_LEVEL,
  logoutRequest,
  makeUsers,
  SessionFactory,
  startFibAuth,
  startService,
  warmUp,
  type Service,
  type SignInUser,
} from './fixture.js';
import { load, type LoadRequest, type LoadResult } from './load.js';
import { rssMiB } from './process-usage.js';
import { printReport, writeReport, type GrowthPoint, type Results } from './report.js';
import { OidcPeer } from './peer.js';
import { measureResourceServer } from './resource-server.js';
import { measureSharedSignals } from './shared-signals.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const REPS = Number(process.env.BENCH_REPS ?? 3);
const WARMUP_SECONDS = 1;
const CONCURRENCIES = [1, 10, 50];
const USERS = 1000;
const GROWTH_SIZES = [1e3, 1e5, 1e6];
const GROWTH_CONCURRENCY = 10;
const GROWTH_SECONDS = 4;

const log = (line: string) => console.log(`[bench] ${line}`);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/**
 * How many single-use requests (logout tokens, the peer's tokens) a run of `seconds` at
 * `concurrency` can use at most, judged by the fastest run of the target so far.
 */
function runBudget(observed: Map<number, number>, concurrency: number, seconds: number): number {
  const expected = observed.get(concurrency) ?? (Math.max(...observed.values(), 0) || 5000);
  return Math.ceil(expected * 1.5 * seconds) + 500;
}

/** Records a run's throughput for `runBudget`. */
function observe(observed: Map<number, number>, result: LoadResult): void {
  observed.set(result.concurrency, Math.max(observed.get(result.concurrency) ?? 0, result.rps));
}

/** Every request of a run against the real server must have been answered 200. */
function assertAllOk(what: string, result: LoadResult, server: Service): void {
  assert.deepEqual(
    result.statuses,
    { 200: result.requests },
    `${what}: every request must succeed, got ${JSON.stringify(result.statuses)}` +
      (result.firstError ? ` (${result.firstError}); the server's last output:\n${server.output().slice(-2000)}` : ''),
  );
}

const shape = (token: string) =>
  ([0, 1] as const).map((part) =>
    Object.entries(decodePart(token, part))
      .map(([k, v]) => `${k}:${typeof v}`)
      .join(','),
  );

/** The minted tokens must look exactly like the server's own, and log out like them. */
async function checkMintedTokens(
  server: Service,
  sessions: SessionFactory,
  minter: TokenMinter,
  user: SignInUser,
): Promise<string> {
  const signedIn = await fetch(`${server.origin}${BASE}/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: user.signInBody,
  });
  assert.equal(signedIn.status, 200, await signedIn.clone().text());
  const issued = ((await signedIn.json()) as { data: { accessToken: string; refreshToken: string } }).data;
  const [{ session }] = await sessions.create(1);
  const minted = { accessToken: minter.accessToken(session, user.accountId), refreshToken: minter.refreshToken(session) };
  for (const kind of ['accessToken', 'refreshToken'] as const) {
    assert.deepEqual(shape(minted[kind]), shape(issued[kind]), `minted ${kind} has the server's header and claims`);
    assert.equal(minted[kind].length, issued[kind].length, `minted ${kind} is as long as the server's`);
  }
  const loggedOut = await fetch(`${server.origin}${BASE}/logout`, {
    method: 'POST',
    headers: { authorization: `Bearer ${minted.accessToken}` },
  });
  assert.equal(loggedOut.status, 200, 'a minted access token logs out');
  return minted.accessToken;
}

/** Logout latency as the store grows: the same 1000 real sessions, logged out again and again, among filler rows. */
async function growth(
  server: Service,
  db: BenchDatabase,
  minter: TokenMinter,
  users: readonly BenchUser[],
): Promise<GrowthPoint[]> {
  const real = await new SessionFactory(db, minter, users).create(GROWTH_SIZES[0]);
  const points: GrowthPoint[] = [];
  for (const size of GROWTH_SIZES) {
    const fillStarted = performance.now();
    const filler = size - (await db.countSessions());
    if (filler > 0) await db.addFiller(filler);
    const fillSeconds = (performance.now() - fillStarted) / 1000;
    const logOutAll = async () => {
      for (const { session } of real) session.accessJti = randomUUID();
      await db.rearm(real.map((r) => r.session));
      const requests = real.map(({ session, user }) => logoutRequest(minter.accessToken(session, user.accountId)));
      const round = await load(server.origin, requests, {
        concurrency: GROWTH_CONCURRENCY,
        seconds: GROWTH_SECONDS,
        pid: server.pid,
      });
      assertAllOk(`growth at ${size} sessions`, round, server);
      return round;
    };
    await logOutAll(); // warm-up: the first size would otherwise pay for the JIT
    const rounds: LoadResult[] = [];
    const started = performance.now();
    while (performance.now() - started < GROWTH_SECONDS * 1000) rounds.push(await logOutAll());
    const point: GrowthPoint = {
      sessions: await db.countSessions(),
      logouts: rounds.reduce((sum, r) => sum + r.requests, 0),
      p50Ms: median(rounds.map((r) => r.latencyMs.p50)),
      p99Ms: median(rounds.map((r) => r.latencyMs.p99)),
      rps: median(rounds.map((r) => r.rps)),
      bytesPerSession: Math.round((await db.sessionBytes()) / size),
      rssMiB: Math.max(...rounds.map((r) => r.server?.rssMaxMiB ?? 0)),
      fillSeconds: Math.round(fillSeconds * 10) / 10,
    };
    log(
      `growth ${point.sessions} sessions: p50 ${point.p50Ms} ms, p99 ${point.p99Ms} ms, ${point.bytesPerSession} B/session, server RSS ${point.rssMiB} MiB (filled in ${point.fillSeconds} s)`,
    );
    points.push(point);
  }
  return points;
}

const NO_POSTGRES_STORE = 'this build of the server has no PostgreSQL store';

/** fib-auth on a PostgreSQL schema; undefined where this build of the server has no PostgreSQL store. */
async function startOnPostgres(url: string, keyFile: string): Promise<Service | undefined> {
  try {
    return await startFibAuth(url, keyFile, await freePort());
  } catch (error) {
    if (/does not support/.test((error as Error).message)) return undefined;
    throw error;
  }
}

/** PostgreSQL is measured when TEST_DATABASE_URL names one and this build's store speaks to it. */
async function postgresGrowth(
  keyFile: string,
  minter: TokenMinter,
  users: readonly BenchUser[],
): Promise<GrowthPoint[] | { skipped: string }> {
  const adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) return { skipped: 'TEST_DATABASE_URL is not set' };
  let schema: TestDatabase;
  try {
    schema = await createSchema(adminUrl, 'fib_auth_bench');
  } catch (error) {
    return { skipped: `cannot prepare a PostgreSQL schema: ${(error as Error).message}` };
  }
  try {
    const server = await startOnPostgres(schema.url, keyFile);
    if (!server) return { skipped: NO_POSTGRES_STORE };
    const db = await openPostgres(schema.url);
    try {
      await db.addUsers(users);
      return await growth(server, db, minter, users);
    } finally {
      await db.close();
      await server.stop();
    }
  } finally {
    await schema.drop();
  }
}

/**
 * Logout on PostgreSQL beside the fair peer: oidc-provider on its PostgreSQL adapter, each in a
 * schema of its own on the same database, in interleaved runs at the heaviest concurrency.
 */
async function postgresPeer(
  keyFile: string,
  minter: TokenMinter,
  users: readonly BenchUser[],
  concurrency: number,
): Promise<NonNullable<Results['postgresPeer']>> {
  const adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) return { skipped: 'TEST_DATABASE_URL is not set' };
  let schemas: TestDatabase[];
  try {
    schemas = [await createSchema(adminUrl, 'fib_auth_bench'), await createSchema(adminUrl, 'oidc_bench')];
  } catch (error) {
    return { skipped: `cannot prepare a PostgreSQL schema: ${(error as Error).message}` };
  }
  const [ours, theirs] = schemas;
  const services: Service[] = [];
  try {
    const server = await startOnPostgres(ours.url, keyFile);
    if (!server) return { skipped: NO_POSTGRES_STORE };
    services.push(server);
    const peer = await OidcPeer.start(theirs.url);
    services.push(peer.service);
    log('oidc-provider on PostgreSQL issues, introspects and revokes a token');
    const db = await openPostgres(ours.url);
    try {
      await db.addUsers(users);
      const sessions = new SessionFactory(db, minter, users);
      await warmUp(server, sessions);
      const observed = { server: new Map<number, number>(), peer: new Map<number, number>() };
      const runs = {
        peer: async (seconds: number) => {
          const result = await peer.revocations(concurrency, seconds, runBudget(observed.peer, concurrency, seconds));
          observe(observed.peer, result);
          return result;
        },
        server: async (seconds: number) => {
          const requests = await sessions.logouts(runBudget(observed.server, concurrency, seconds));
          const result = await load(server.origin, requests, { concurrency, seconds, pid: server.pid });
          assertAllOk(`logout on PostgreSQL at concurrency ${concurrency}`, result, server);
          observe(observed.server, result);
          return result;
        },
      };
      for (const run of Object.values(runs)) await run(WARMUP_SECONDS);
      const results = { concurrency, server: [] as LoadResult[], peer: [] as LoadResult[] };
      for (let rep = 0; rep < REPS; rep++) {
        for (const [name, run] of Object.entries(runs) as [keyof typeof runs, (s: number) => Promise<LoadResult>][]) {
          const result = await run(SECONDS);
          results[name].push(result);
          log(
            `PostgreSQL c=${concurrency} run ${rep + 1} ${name}: ${result.rps} req/s, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, ${result.server?.cores} cores`,
          );
        }
      }
      return results;
    } finally {
      await db.close();
    }
  } finally {
    await Promise.all(services.map((s) => s.stop()));
    await Promise.all(schemas.map((schema) => schema.drop()));
  }
}

async function main(): Promise<void> {
  const benchStarted = performance.now();
  // The machine may be shared: what else ran shows in the one-minute load average.
  const loadAverageAtStart = loadavg()[0];
  const dir = mkdtempSync(join(tmpdir(), 'fib-auth-bench-'));
  const keyFile = join(dir, 'signing-key.pem');
  const services: Service[] = [];
  const stopAll = () => Promise.all(services.splice(0).map((s) => s.stop()));
  process.once('SIGINT', () => void stopAll().finally(() => process.exit(130)));
  try {
    log(
      `${cpus().length} cores (load average ${loadAverageAtStart}), ${SECONDS} s per run, ${REPS} runs each, server LOG_LEVEL=${LOG_LEVEL}, ` +
        `WORKERS=${process.env.WORKERS ?? "unset (the server's default)"}`,
    );
    const sqlitePath = join(dir, 'fib-auth.sqlite');
    const server = await startFibAuth(`sqlite:${sqlitePath}`, keyFile, await freePort());
    services.push(server);
    const rssAtRest = rssMiB(server.pid);
    const koaPort = await freePort();
    const koa = await startService(process.execPath, [join(packageRoot, 'bench/bare-koa.mjs')], koaPort, {
      PORT: String(koaPort),
    });
    services.push(koa);
    const prismPort = await freePort();
    const prismBin = join(packageRoot, 'node_modules/.bin/prism');
    const prism = await startService(prismBin, ['mock', '-p', String(prismPort), '-v', 'warn', bundledSpecPath], prismPort);
    services.push(prism);
    const peer = await OidcPeer.start();
    services.push(peer.service);
    log('oidc-provider issues, introspects and revokes a token');

    const minter = await TokenMinter.fromKeyFile(keyFile);
    const db = openSqlite(sqlitePath);
    const users = makeUsers(USERS);
    await db.addUsers(users);
    const sessions = new SessionFactory(db, minter, users);
    const sampleToken = await checkMintedTokens(server, sessions, minter, users[0]);
    await warmUp(server, sessions);
    log(`minted tokens match the server's (${sampleToken.length} characters)`);

    // Koa and Prism check nothing, so they answer the same requests again and again.
    const fixedRequests = await sessions.logouts(1000);
    const observed = new Map<number, number>();
    const serverRun = async (concurrency: number, seconds: number) => {
      // Each token logs out once: mint what this run can use at most.
      const requests = await sessions.logouts(runBudget(observed, concurrency, seconds));
      const result = await load(server.origin, requests, { concurrency, seconds, pid: server.pid });
      assertAllOk(`logout at concurrency ${concurrency}`, result, server);
      observe(observed, result);
      return result;
    };
    const observedPeer = new Map<number, number>();
    const peerRun = async (concurrency: number, seconds: number) => {
      const result = await peer.revocations(concurrency, seconds, runBudget(observedPeer, concurrency, seconds));
      observe(observedPeer, result);
      return result;
    };
    const targets = {
      koa: (concurrency: number, seconds: number) =>
        load(koa.origin, fixedRequests, { concurrency, seconds, cycle: true, pid: koa.pid }),
      prism: (concurrency: number, seconds: number) =>
        load(prism.origin, fixedRequests, { concurrency, seconds, cycle: true, pid: prism.pid }),
      peer: peerRun,
      server: serverRun,
    };

    const results: Results = {
      date: new Date().toISOString(),
      machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, loadAverageAtStart },
      settings: {
        secondsPerRun: SECONDS,
        runs: REPS,
        serverLogLevel: LOG_LEVEL,
        tokenCharacters: sampleToken.length,
        users: USERS,
        workers: process.env.WORKERS,
      },
      ceiling: [],
      logout: {},
      signIn: [],
      refresh: [],
      rss: { atRestMiB: rssAtRest, underLoadMiB: 0 },
      growth: { sqlite: [], postgres: { skipped: 'not run' } },
      postgresPeer: { skipped: 'not run' },
      benchSeconds: 0,
    };
    for (const concurrency of CONCURRENCIES) {
      for (const run of Object.values(targets)) await run(concurrency, WARMUP_SECONDS);
      const byTarget: Record<keyof typeof targets, LoadResult[]> = { koa: [], prism: [], peer: [], server: [] };
      results.logout[concurrency] = byTarget;
      for (let rep = 0; rep < REPS; rep++) {
        // Interleaved, so that other work on this shared machine weighs on every column alike.
        results.ceiling.push(await measureCeiling(sampleToken, minter.publicKey, 1, 50));
        for (const [name, run] of Object.entries(targets) as [
          keyof typeof targets,
          (c: number, s: number) => Promise<LoadResult>,
        ][]) {
          const result = await run(concurrency, SECONDS);
          byTarget[name].push(result);
          log(
            `c=${concurrency} run ${rep + 1} ${name}: ${result.rps} req/s, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, ` +
              `${result.server?.cores} cores in ${result.server?.processes} processes (load generator ${result.loadGeneratorCores})`,
          );
        }
      }
    }

    const signInRequests: LoadRequest[] = users.map((u) => ({
      method: 'POST',
      path: `${BASE}/session`,
      headers: { 'content-type': 'application/json' },
      body: u.signInBody,
    }));
    const heaviest = CONCURRENCIES[CONCURRENCIES.length - 1];
    for (let rep = 0; rep < REPS; rep++) {
      const signIn = await load(server.origin, signInRequests, {
        concurrency: heaviest,
        seconds: SECONDS,
        cycle: true,
        pid: server.pid,
      });
      assertAllOk('sign-in', signIn, server);
      results.signIn.push(signIn);
      // A refresh verifies one token like a logout, and signs two more: it is not faster.
      const refreshRequests = await sessions.refreshes(Math.ceil(Math.max(...observed.values()) * 1.5 * SECONDS) + 500);
      const refresh = await load(server.origin, refreshRequests, { concurrency: heaviest, seconds: SECONDS, pid: server.pid });
      assertAllOk('refresh', refresh, server);
      results.refresh.push(refresh);
      log(`sign-in ${signIn.rps} req/s, refresh ${refresh.rps} req/s`);
    }
    const serverRuns = [
      ...Object.values(results.logout).flatMap((byTarget) => byTarget.server),
      ...results.signIn,
      ...results.refresh,
    ];
    results.rss.underLoadMiB = Math.max(...serverRuns.map((r) => r.server?.rssMaxMiB ?? 0));
    results.settings.serverProcesses = Math.max(...serverRuns.map((r) => r.server?.processes ?? 0));

    log('resource servers: propagation under logout load, local verify, introspection');
    results.resourceServer = await measureResourceServer({
      server,
      databaseUrl: `sqlite:${sqlitePath}`,
      minter,
      sessions,
      seconds: SECONDS,
      reps: REPS,
      log,
    });
    await db.close();
    await stopAll();

    log('Shared Signals: logout throughput with and without a poll and a push stream, SET delivery under a paced load');
    results.sharedSignals = await measureSharedSignals({ seconds: SECONDS, reps: REPS, log });

    log('growth on SQLite');
    const growthServer = await startFibAuth(`sqlite:${join(dir, 'growth.sqlite')}`, keyFile, await freePort());
    services.push(growthServer);
    const growthDb = openSqlite(join(dir, 'growth.sqlite'));
    await growthDb.addUsers(users);
    results.growth.sqlite = await growth(growthServer, growthDb, minter, users);
    await growthDb.close();
    await stopAll();

    log('growth on PostgreSQL');
    results.growth.postgres = await postgresGrowth(keyFile, minter, users);
    if ('skipped' in results.growth.postgres) {
      console.log(`\n!!! PostgreSQL growth SKIPPED: ${results.growth.postgres.skipped}. Only SQLite was measured. !!!\n`);
    }

    log('logout on PostgreSQL beside oidc-provider on its PostgreSQL adapter');
    results.postgresPeer = await postgresPeer(keyFile, minter, users, CONCURRENCIES[CONCURRENCIES.length - 1]);
    if ('skipped' in results.postgresPeer) {
      console.log(`\n!!! oidc-provider on PostgreSQL SKIPPED: ${results.postgresPeer.skipped}. !!!\n`);
    }

    results.benchSeconds = Math.round((performance.now() - benchStarted) / 1000);
    results.machine.loadAverageAtEnd = loadavg()[0];
    const resultsDir = join(packageRoot, 'bench/results');
    mkdirSync(resultsDir, { recursive: true });
    const file = join(resultsDir, `${results.date.slice(0, 10)}.json`);
    writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
    printReport(results);
    writeReport(results);
    log(`wrote ${file}, bench/chart.svg and the table in BENCHMARKS.md (${results.benchSeconds} s)`);
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
