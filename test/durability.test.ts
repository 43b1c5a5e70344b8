import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { serveChild } from './support/child-server.js';
import { fibAuth } from './support/cli.js';
import { emptySqliteStore } from './support/databases.js';
import { processTree } from './support/processes.js';
import { BASE, bearer, bodyOf, rawCall } from './support/harness.js';
import { ALICE, ALICE_SIGN_IN } from './support/vectors.js';

// A logout answered 200 must survive a power failure (README, "Durability"): on SQLite the
// commit waits for fsync before the answer. Whether it did is seen only in the system calls,
// so the server is watched with strace. .ci/run installs strace and sets REQUIRE_STRACE=1.
const STRACE = '/usr/bin/strace';
const required = process.env.REQUIRE_STRACE === '1';
const straceMissing = existsSync(STRACE)
  ? undefined
  : `${STRACE} is missing, so SQLite's fsync on commit was NOT checked (apt-get install strace, or run .ci/run)`;
if (straceMissing && !required) console.warn(`WARNING: ${straceMissing}`);

let dir: string;
let databaseFile: string;
let env: NodeJS.ProcessEnv;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fib-auth-durability-'));
  databaseFile = join(dir, 'fib-auth.sqlite');
  env = {
    PATH: process.env.PATH,
    DATABASE_URL: emptySqliteStore(databaseFile),
    FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem'),
    HOST: '127.0.0.1',
    PORT: '0',
  };
  await fibAuth(['users', 'add', '--email', ALICE.email, '--auth-public-key', ALICE.publicKeyHex], env);
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** One system call as strace saw it: when it started and ended (seconds), what its first descriptor is, and the rest. */
interface Syscall {
  name: string;
  start: number;
  end: number;
  /** What `-yy` says the descriptor is: a path, or `TCP:[from->to]`. */
  descriptor: string;
  line: string;
}

const SYSCALLS = ['fsync', 'fdatasync', 'pwrite64', 'read', 'recvfrom', 'recvmsg', 'write', 'writev', 'sendto', 'sendmsg'];

/**
 * Runs `action` while strace records the syncs, reads and writes of the server's processes
 * (with workers, the worker that reads the request also commits it and answers it), one file per
 * thread (so no call is split by another thread's); returns the calls in the order they started.
 */
async function syscallsDuring(pids: number[], action: () => Promise<void>): Promise<Syscall[]> {
  const traceDir = mkdtempSync(join(dir, 'trace-'));
  const args = ['-ff', '-ttt', '-T', '-yy', '-s', '80', '-e', `trace=${SYSCALLS.join(',')}`, '-o', join(traceDir, 'trace')];
  const attach = pids.flatMap((pid) => ['-p', String(pid)]);
  const tracer = spawn(STRACE, [...args, ...attach], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => tracer.once('exit', resolve));
  await new Promise<void>((resolve, reject) => {
    tracer.once('exit', (code) => reject(new Error(`strace exited ${code} before attaching`)));
    const waiting = new Set(pids);
    createInterface({ input: tracer.stderr }).on('line', (line) => {
      for (const pid of waiting) if (line.includes(`Process ${pid} attached`)) waiting.delete(pid);
      if (waiting.size === 0) resolve();
    });
  });
  try {
    await action();
    // A commit that came only after the answer is still seen, and named as late.
    await sleep(200);
  } finally {
    tracer.kill('SIGINT'); // detaches and writes what it saw
    await exited;
  }
  // `1796314864.199085 fsync(19</tmp/…/fib-auth.sqlite-wal>) = 0 <0.000409>`
  const call = /^(\d+\.\d+) (\w+)\(\d+<([^>]*)>(.*) <(\d+\.\d+)>$/;
  return readdirSync(traceDir)
    .flatMap((file) =>
      readFileSync(join(traceDir, file), 'utf8')
        .split('\n')
        .flatMap((line) => {
          const match = call.exec(line);
          if (!match) return [];
          const [, start, name, descriptor, , duration] = match;
          return [{ name, start: Number(start), end: Number(start) + Number(duration), descriptor, line }];
        }),
    )
    .sort((a, b) => a.start - b.start);
}

for (const workers of [1, 2]) {
  test(
    `SQLite, WORKERS=${workers}: a logout is on disk before its 200 (the commit's WAL writes are synced before it)`,
    { skip: required ? false : straceMissing },
    async (ctx) => {
      assert.ok(!straceMissing, straceMissing);
      const server = await serveChild({ ...env, WORKERS: String(workers) });
      ctx.after(() => server.stop());
      const signIn = await rawCall(server.url, 'POST', `${BASE}/session`, {
        body: ALICE_SIGN_IN,
      });
      const { accessToken } = (await bodyOf(signIn, 'authorizeUser', 200)).data;

      const pids = processTree(server.pid);
      // With workers, the primary only hands connections over; a worker reads, commits and answers.
      assert.equal(pids.length, workers === 1 ? 1 : 1 + workers, `the server's processes: ${pids.join(', ')}`);
      const calls = await syscallsDuring(pids, async () => {
        const logout = await rawCall(server.url, 'POST', `${BASE}/logout`, { headers: bearer(accessToken) });
        assert.equal(logout.status, 200);
      });
      const onTcp = (names: string[], text: string) =>
        calls.find((c) => names.includes(c.name) && c.descriptor.startsWith('TCP:') && c.line.includes(text));
      const request = onTcp(['read', 'recvfrom', 'recvmsg'], `"POST ${BASE}/logout HTTP/1.1\\r\\n`);
      const answer = onTcp(['write', 'writev', 'sendto', 'sendmsg'], '"HTTP/1.1 ');
      const trace = calls.map((c) => c.line).join('\n');
      assert.ok(request, `strace saw the server read the logout request:\n${trace}`);
      assert.ok(answer, `strace saw the server write its answer:\n${trace}`);
      assert.match(answer.line, /"HTTP\/1\.1 200 /, 'the answer is the 200');
      // COMMIT writes the transaction's frames into the WAL; the last of those writes before the
      // answer must be followed by a sync of the WAL (from any thread) that ends before the answer.
      // Without synchronous = FULL, better-sqlite3's build commits in WAL mode without any fsync.
      const walWrites = calls.filter(
        (c) => c.name === 'pwrite64' && c.descriptor === `${databaseFile}-wal` && c.start >= request.end && c.end <= answer.start,
      );
      assert.ok(walWrites.length >= 1, `between reading the logout and writing its 200, the commit wrote the WAL:\n${trace}`);
      const lastWrite = walWrites[walWrites.length - 1];
      const syncs = calls.filter(
        (c) => ['fsync', 'fdatasync'].includes(c.name) && [databaseFile, `${databaseFile}-wal`].includes(c.descriptor),
      );
      const beforeAnswer = syncs.filter((c) => c.start >= lastWrite.end && c.end <= answer.start);
      const late = syncs.filter((c) => c.end > answer.start).map((c) => c.line);
      assert.ok(
        beforeAnswer.length >= 1,
        `after the commit's last write of the WAL and before the 200, the server synced the WAL` +
          ` (${late.length} syncs of it came later: ${late.join('; ')}):\n${trace}`,
      );
      const lastSync = beforeAnswer[beforeAnswer.length - 1];
      ctx.diagnostic(
        `${lastSync.name} of ${lastSync.descriptor} ended ${Math.round((answer.start - lastSync.end) * 1e6)} µs before the 200`,
      );
    },
  );
}
