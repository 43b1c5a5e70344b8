import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { packageRoot } from '../src/package-root.js';
import { CLI, runCli } from './support/cli.js';
import { DATABASES, emptySqliteStore } from './support/databases.js';
import { freePort, processTree } from './support/processes.js';
import { ALICE } from './support/vectors.js';

// The mistakes a new user makes in the first hour (README, "Managing users" and
// "Configuration"): each is one line on standard error naming the cause and the setting or file
// to fix, exit 1; never a stack, never an EPIPE from a worker left without its primary.

const addAlice = ['users', 'add', '--email', ALICE.email, '--auth-public-key', ALICE.publicKeyHex];

let dir: string;
let env: NodeJS.ProcessEnv;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'fib-auth-mistakes-'));
  env = {
    PATH: process.env.PATH,
    DATABASE_URL: emptySqliteStore(join(dir, 'fib-auth.sqlite')),
    FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem'),
    HOST: '127.0.0.1',
    PORT: '0',
    MANAGEMENT_PORT: '0',
  };
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `fib-auth serve` and asserts that it exits 1 with exactly `line` on standard error. */
async function assertServeRefused(extraEnv: NodeJS.ProcessEnv, line: string) {
  for (const workers of ['2', '1']) {
    const result = await runCli(['serve'], { ...env, ...extraEnv, WORKERS: workers });
    assert.equal(result.stderr, `fib-auth: ${line}\n`, `WORKERS=${workers}`);
    assert.equal(result.code, 1, `WORKERS=${workers}`);
  }
}

test('a port in use, with workers or without: one line naming HOST and PORT', async () => {
  const taken = createServer().listen(0, '127.0.0.1');
  await once(taken, 'listening');
  try {
    const { port } = taken.address() as AddressInfo;
    await assertServeRefused(
      { PORT: String(port) },
      `the API listener (HOST, PORT) cannot listen on 127.0.0.1:${port}: the address is already in use`,
    );
  } finally {
    taken.close();
  }
});

/**
 * Starts `fib-auth serve` with two workers, calls `signal` with the primary's pid and its
 * workers' once both are forked (a worker takes far longer to start than this takes to see it),
 * and resolves with the exit code and standard error.
 */
async function serveSignalledWhileStarting(signal: (primary: number, workers: number[]) => void) {
  const child = spawn(process.execPath, [CLI, 'serve'], {
    cwd: packageRoot,
    env: { ...env, WORKERS: '2' },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  try {
    let workers: number[] = [];
    while (workers.length < 2) {
      await sleep(5);
      workers = processTree(child.pid!).slice(1);
    }
    assert.doesNotMatch(stdout, /listening/, 'the workers were still starting');
    signal(child.pid!, workers);
    const [code] = await exited;
    return { code, stdout, stderr, gone: groupGone(child.pid!) };
  } finally {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // every process of the group is gone
    }
  }
}

/** Whether every process of the group `pid` leads has exited: none is left behind by its primary. */
function groupGone(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return false;
  } catch {
    return true;
  }
}

test('a worker killed while it starts: one line from the primary, no EPIPE from the other worker', async () => {
  const { code, stderr, gone } = await serveSignalledWhileStarting((_primary, [worker]) => process.kill(worker, 'SIGTERM'));
  assert.equal(stderr, 'fib-auth: a worker exited (SIGTERM) before it listened\n');
  assert.equal(code, 1);
  assert.ok(gone, 'the other worker stopped before its primary exited');
});

test('SIGTERM to the whole process group while the workers start (Ctrl-C): it stops, exit 0, nothing on standard error', async () => {
  const { code, stderr, gone } = await serveSignalledWhileStarting((primary) => process.kill(-primary, 'SIGTERM'));
  assert.equal(stderr, '');
  assert.equal(code, 0);
  assert.ok(gone, 'every worker stopped with the primary');
});

test('a signing key file that holds no key: one line naming the file and FIB_AUTH_SIGNING_KEY_FILE', async () => {
  const garbage = join(dir, 'garbage-key.pem');
  writeFileSync(garbage, 'not a key\n', { mode: 0o600 });
  const line = `the signing key file ${garbage} (FIB_AUTH_SIGNING_KEY_FILE) holds no PEM private key: put the key there, or remove it and a new one is made`;
  await assertServeRefused({ FIB_AUTH_SIGNING_KEY_FILE: garbage }, line);
  for (const command of [
    ['keys', 'rotate'],
    ['keys', 'revoke', '--kid', 'x'],
  ]) {
    const result = await runCli(command, { ...env, FIB_AUTH_SIGNING_KEY_FILE: garbage });
    assert.deepEqual([result.code, result.stderr], [1, `fib-auth: ${line}\n`], command.join(' '));
  }
});

test('PostgreSQL refusing connections: one line naming DATABASE_URL without its password; no key file is made first', async () => {
  const port = await freePort(); // nothing listens there
  const keyFile = join(dir, 'never-made', 'signing-key.pem');
  const refusing = {
    DATABASE_URL: `postgres://fib_auth:never-printed@127.0.0.1:${port}/fib_auth`,
    FIB_AUTH_SIGNING_KEY_FILE: keyFile,
  };
  const line = `the store DATABASE_URL names (postgres://fib_auth@127.0.0.1:${port}/fib_auth) cannot be opened: connect ECONNREFUSED 127.0.0.1:${port}`;
  await assertServeRefused(refusing, line);
  assert.equal(existsSync(keyFile), false, 'the signing key was made before the store was known to open');
  const listed = await runCli(['users', 'list'], { ...env, ...refusing });
  assert.deepEqual([listed.code, listed.stderr], [1, `fib-auth: ${line}\n`]);
});

test('the CLI in a folder without the store: refused with one line naming the store and DATABASE_URL; nothing is created', async () => {
  const elsewhere = mkdtempSync(join(dir, 'elsewhere-'));
  const { DATABASE_URL: _unset, ...defaults } = env; // the default, ./var/fib-auth.sqlite
  const line = `fib-auth: there is no store at sqlite:${elsewhere}/var/fib-auth.sqlite: set DATABASE_URL to the server's (fib-auth serve creates it on first start)\n`;
  for (const command of [
    addAlice,
    ['users', 'list'],
    ['clients', 'add', '--id', 'orders-service'],
    ['users', 'remove', '--email', ALICE.email],
  ]) {
    const result = await runCli(command, defaults, elsewhere);
    assert.deepEqual([result.code, result.stdout, result.stderr], [1, '', line], command.join(' '));
  }
  assert.equal(existsSync(join(elsewhere, 'var')), false);
});

for (const backend of DATABASES) {
  test(
    `on ${backend.name}: each command that writes names the store it wrote to, never a password; an empty list says so`,
    { skip: backend.skip },
    async () => {
      const database = await backend.create();
      try {
        // A password the test database does not ask for (trust), so that it may be in the URL.
        const url = new URL(database.url);
        if (url.protocol === 'postgres:') url.password = 'never-printed';
        const run = (args: string[]) => runCli(args, { ...env, DATABASE_URL: url.href });
        const store = database.url; // as the CLI names it: a full path, or the URL without a password

        for (const [args, none] of [
          [['users', 'list'], `no users in ${store}\n`],
          [['clients', 'list'], `no resource-server clients in ${store}\n`],
        ] as const) {
          const empty = await run([...args]);
          assert.deepEqual([empty.code, empty.stdout, empty.stderr], [0, '', none], args.join(' '));
          assert.equal((await run([...args, '--json'])).stdout, '[]\n');
        }

        const added = await run([...addAlice, '--account-id', 'acc-1']);
        assert.equal(added.stdout, `added ${ALICE.email} (account acc-1, ROLE_PEER) to ${store}\n`);
        const client = await run(['clients', 'add', '--id', 'orders-service']);
        assert.equal(
          client.stdout.split('\n')[0],
          `added the resource-server client orders-service to ${store}; its secret (shown only now):`,
        );
        assert.equal(
          (await run(['clients', 'remove', '--id', 'orders-service'])).stdout,
          `removed the client orders-service from ${store}\n`,
        );
        assert.equal(
          (await run(['users', 'remove', '--email', ALICE.email])).stdout,
          `removed ${ALICE.email} from ${store} and revoked their sessions\n`,
        );
        const again = await run(['users', 'remove', '--email', ALICE.email]);
        assert.deepEqual([again.code, again.stderr], [1, `fib-auth: no user has the email ${ALICE.email} in ${store}\n`]);
        for (const output of [added, client, again]) assert.doesNotMatch(output.stdout + output.stderr, /never-printed/);
        // The key files are named too: a relative FIB_AUTH_SIGNING_KEY_FILE depends on the folder.
        for (const command of [
          ['keys', 'generate'],
          ['keys', 'rotate'],
        ]) {
          assert.match((await run(command)).stdout, new RegExp(` \\(key files in ${dir}\\)\n$`), command.join(' '));
        }
      } finally {
        await database.drop();
      }
    },
  );
}

test('what was one line already stays one line: an origin without its scheme, an RSA key, a PostgreSQL database that does not exist', async () => {
  const rsa = join(dir, 'rsa-key.pem');
  writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
  });
  await assertServeRefused(
    { FIB_AUTH_SIGNING_KEY_FILE: rsa },
    `the signing key file ${rsa} (FIB_AUTH_SIGNING_KEY_FILE) holds a key of type rsa, not Ed25519`,
  );
  await assertServeRefused(
    { CORS_ORIGINS: 'app.example.com' },
    'CORS_ORIGINS must list origins such as https://app.example.com, separated by commas; got "app.example.com"',
  );
  const admin = process.env.TEST_DATABASE_URL;
  if (admin) {
    const missing = new URL(admin);
    missing.pathname = '/fib_auth_no_such_database';
    await assertServeRefused(
      { DATABASE_URL: missing.href },
      `the store DATABASE_URL names (${missing.href}) cannot be opened: database "fib_auth_no_such_database" does not exist`,
    );
  }
});
