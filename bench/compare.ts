/**
 * `npm run bench:compare -- REV...`: logout, sign-in and refresh throughput of several commits side by side, each
 * built in a temporary clone (with this checkout's node_modules) and run as its own server,
 * measured in interleaved rounds so that other work on the machine weighs on each alike.
 * For judging one optimisation at a time; `npm run bench` is the full benchmark. A revision
 * may name server settings after it: `HEAD:WORKERS=1` runs HEAD's server with WORKERS=1.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../src/package-root.js';
import { openSqlite, type BenchDatabase } from './database.js';
import { freePort } from '../test/support/processes.js';
import { TokenMinter } from '../test/support/tokens.js';
import { makeUsers, SessionFactory, startFibAuth, warmUp, type Service } from './fixture.js';
import { load, type LoadRequest } from './load.js';
import { BASE } from '../test/support/api.js';

const ROUNDS = 5;
const SECONDS = 3;
const CONCURRENCIES = [1, 50];
/** Sign-in and refresh are compared at the concurrency of `npm run bench`'s figures for them. */
const HEAVIEST = 50;

const revisions = process.argv.slice(2);
if (revisions.length < 2) {
  console.error('usage: npm run bench:compare -- REV[:NAME=VALUE,...] REV [REV...]   (git revisions of this repository)');
  process.exit(2);
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const dir = mkdtempSync(join(tmpdir(), 'fib-auth-compare-'));
const keyFile = join(dir, 'signing-key.pem');
writeFileSync(keyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
const minter = await TokenMinter.fromKeyFile(keyFile);
const users = makeUsers(200);
const signIns: LoadRequest[] = users.map((u) => ({
  method: 'POST',
  path: `${BASE}/session`,
  headers: { 'content-type': 'application/json' },
  body: u.signInBody,
}));

interface Contender {
  revision: string;
  service: Service;
  db: BenchDatabase;
  sessions: SessionFactory;
}

/** One kind of request, measured on every contender in turn. */
interface Operation {
  name: string;
  unit: string;
  concurrency: number;
  /** Reuse the requests (sign-in); otherwise each is used once. */
  cycle?: boolean;
  requests: (contender: Contender, count: number) => Promise<LoadRequest[]>;
}
const contenders: Contender[] = [];
try {
  for (const revision of revisions) {
    const [commit, settings = ''] = revision.split(':');
    const env: Record<string, string> = Object.fromEntries(
      settings
        .split(',')
        .filter(Boolean)
        .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
    );
    const root = join(dir, `checkout-${contenders.length}`);
    execFileSync('git', ['clone', '--quiet', packageRoot, root]);
    execFileSync('git', ['-C', root, 'checkout', '--quiet', commit]);
    symlinkSync(join(packageRoot, 'node_modules'), join(root, 'node_modules'));
    execFileSync(process.execPath, [
      join(packageRoot, 'node_modules/typescript/bin/tsc'),
      '-p',
      join(root, 'tsconfig.build.json'),
    ]);
    const databasePath = join(dir, `${contenders.length}.sqlite`);
    const service = await startFibAuth(`sqlite:${databasePath}`, keyFile, await freePort(), { root, env });
    const db = openSqlite(databasePath);
    await db.addUsers(users);
    const sessions = new SessionFactory(db, minter, users);
    await warmUp(service, sessions);
    contenders.push({ revision, service, db, sessions });
  }
  const operations: Operation[] = [
    ...CONCURRENCIES.map((concurrency) => ({
      name: `logout at concurrency ${concurrency}`,
      unit: 'logouts',
      concurrency,
      requests: (c: Contender, count: number) => c.sessions.logouts(count),
    })),
    {
      name: `sign-in at concurrency ${HEAVIEST}`,
      unit: 'sign-ins',
      concurrency: HEAVIEST,
      cycle: true,
      requests: () => Promise.resolve(signIns),
    },
    {
      name: `refresh at concurrency ${HEAVIEST}`,
      unit: 'refreshes',
      concurrency: HEAVIEST,
      requests: (c: Contender, count: number) => c.sessions.refreshes(count),
    },
  ];
  for (const operation of operations) {
    const { concurrency, cycle } = operation;
    const runs = new Map(contenders.map((c) => [c, { rps: [] as number[], cpu: [] as number[], p99: [] as number[] }]));
    for (const c of contenders)
      await load(c.service.origin, await operation.requests(c, 3000), { concurrency, seconds: 1, cycle }); // warm up
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of contenders) {
        const result = await load(c.service.origin, await operation.requests(c, 20_000), {
          concurrency,
          seconds: SECONDS,
          cycle,
          pid: c.service.pid,
        });
        assert.deepEqual(result.statuses, { 200: result.requests }, `${c.revision}: every ${operation.name} must succeed`);
        const of = runs.get(c)!;
        of.rps.push(result.rps);
        of.cpu.push(Math.round((result.server!.cores * 1e6) / result.rps));
        of.p99.push(result.latencyMs.p99);
      }
    }
    console.log(`\n${operation.name}, medians of ${ROUNDS} interleaved runs of ${SECONDS} s:`);
    for (const [c, of] of runs) {
      console.log(
        `  ${c.revision.padEnd(12)} ${String(median(of.rps)).padStart(6)} ${operation.unit}/s  ${String(median(of.cpu)).padStart(5)} µs CPU each  p99 ${median(of.p99)} ms`,
      );
    }
  }
} finally {
  for (const c of contenders) {
    await c.db.close();
    await c.service.stop();
  }
  rmSync(dir, { recursive: true, force: true });
}
