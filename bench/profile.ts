/**
 * `npm run bench:profile`: the server under `node --cpu-prof` while it answers logouts at
 * concurrency 50 for a few seconds, then the functions and packages it spent its time in.
 * The profile itself is kept for Chrome DevTools (its path is printed).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqlite } from './database.js';
import { freePort } from '../test/support/processes.js';
import { TokenMinter } from '../test/support/tokens.js';
import { makeUsers, SessionFactory, startFibAuth } from './fixture.js';
import { load } from './load.js';

const SECONDS = 5;
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
/** Only the samples taken while the load ran count: not start-up, not seeding. */
const window = { start: 0, end: 0 };

const dir = mkdtempSync(join(tmpdir(), 'fib-auth-profile-'));
const keyFile = join(dir, 'signing-key.pem');
const sqlitePath = join(dir, 'fib-auth.sqlite');
// One process: with workers each would write a profile of its own, and the primary's is idle.
const server = await startFibAuth(`sqlite:${sqlitePath}`, keyFile, await freePort(), {
  nodeOptions: ['--cpu-prof', `--cpu-prof-dir=${dir}`],
  env: { WORKERS: '1' },
});
try {
  const db = openSqlite(sqlitePath);
  const users = makeUsers(100);
  await db.addUsers(users);
  const sessions = new SessionFactory(db, await TokenMinter.fromKeyFile(keyFile), users);
  await load(server.origin, await sessions.logouts(2000), { concurrency: CONCURRENCY, seconds: 1 }); // warm up
  const requests = await sessions.logouts(100_000);
  window.start = monotonicMicroseconds();
  const result = await load(server.origin, requests, { concurrency: CONCURRENCY, seconds: SECONDS, pid: server.pid });
  window.end = monotonicMicroseconds();
  assert.deepEqual(result.statuses, { 200: result.requests });
  const cpuPerLogout = Math.round((result.server!.cores * 1e6) / result.rps);
  console.log(
    `${result.rps} logouts/s at c=${CONCURRENCY}, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, ${result.server!.cores} cores: ${cpuPerLogout} µs of CPU per logout`,
  );
  await db.close();
} finally {
  await server.stop(); // the profile is written as the server exits
}

// Keep the profile, for Chrome DevTools; not the database and key it was taken with.
for (const name of readdirSync(dir)) if (!name.endsWith('.cpuprofile')) rmSync(join(dir, name), { recursive: true, force: true });
const file = join(
  dir,
  readdirSync(dir).find((name) => name.endsWith('.cpuprofile'))!,
);
const profile = JSON.parse(readFileSync(file, 'utf8')) as {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
};
const nodeById = new Map(profile.nodes.map((node) => [node.id, node]));
const byFunction = new Map<string, number>();
const byOwner = new Map<string, number>();
let total = 0;
let at = profile.startTime;
profile.samples.forEach((id, i) => {
  at += profile.timeDeltas[i];
  if (at < window.start || at > window.end) return;
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
console.log(`\nprofile: ${file}`);
