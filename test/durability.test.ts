import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { packageRoot } from '../src/package-root.js';
import { CLI, serveChild, type ChildServer } from './support/child-server.js';
import { BASE, bearer, rawCall } from './support/harness.js';
import { ALICE } from './support/vectors.js';

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
let server: ChildServer;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fib-auth-durability-'));
  const env = {
    PATH: process.env.PATH,
    DATABASE_URL: `sqlite:${join(dir, 'fib-auth.sqlite')}`,
    FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem'),
    HOST: '127.0.0.1',
    PORT: '0',
  };
  const added = spawnSync(
    process.execPath,
    [CLI, 'users', 'add', '--email', ALICE.email, '--auth-public-key', ALICE.publicKeyHex],
    { cwd: packageRoot, env, encoding: 'utf8' },
  );
  assert.equal(added.status, 0, added.stderr);
  server = await serveChild(env);
});
after(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `action` while strace records the server's fsync calls; returns the recorded lines. */
async function fsyncsDuring(pid: number, action: () => Promise<void>): Promise<string[]> {
  const traceFile = join(dir, 'fsync.trace');
  const tracer = spawn(STRACE, ['-f', '-e', 'trace=fsync,fdatasync', '-o', traceFile, '-p', String(pid)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => tracer.once('exit', resolve));
  // strace names each thread it attached to on standard error; the main thread commits.
  await new Promise<void>((resolve, reject) => {
    tracer.once('exit', (code) => reject(new Error(`strace exited ${code} before attaching`)));
    createInterface({ input: tracer.stderr! }).on('line', (line) => {
      if (line.includes(`Process ${pid} attached`)) resolve();
    });
  });
  try {
    await action();
  } finally {
    tracer.kill('SIGINT'); // detaches and writes what it saw
    await exited;
  }
  return readFileSync(traceFile, 'utf8')
    .split('\n')
    .filter((line) => /\b(fsync|fdatasync)\(/.test(line));
}

test(
  'SQLite: a logout is on disk before its 200 (the commit waits for fsync)',
  { skip: required ? false : straceMissing },
  async () => {
    assert.ok(!straceMissing, straceMissing);
    const signIn = await rawCall(server.url, 'POST', `${BASE}/session`, {
      body: { email: ALICE.email, signature: ALICE.signature, authPublicKeyHex: ALICE.publicKeyHex },
    });
    assert.equal(signIn.status, 200);
    const { accessToken } = signIn.body.data;

    const fsyncs = await fsyncsDuring(server.pid, async () => {
      const logout = await rawCall(server.url, 'POST', `${BASE}/logout`, { headers: bearer(accessToken) });
      assert.equal(logout.status, 200);
    });
    // Without synchronous = FULL, better-sqlite3's build commits in WAL mode without any fsync.
    assert.ok(fsyncs.length >= 1, 'the logout commit called fsync');
  },
);
