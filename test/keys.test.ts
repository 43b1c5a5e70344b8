import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { exportJWK } from 'jose';
import { keyPaths } from '../src/key-files.js';
import { packageRoot } from '../src/package-root.js';
import { CLI, serveChild } from './support/child-server.js';
import { BASE, bearer, bodyOf, example, rawCall } from './support/harness.js';
import { decodePart, forge, kidOf, otherKey } from './support/tokens.js';
import { ALICE, ALICE_SIGN_IN } from './support/vectors.js';

/** Runs the package's bin with exactly `env` (and PATH); a command still running after `timeout` is killed. */
function fibAuth(args: string[], env: NodeJS.ProcessEnv, timeout = 20_000) {
  const result = spawnSync(process.execPath, [CLI, ...args], {
    cwd: packageRoot,
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', ...env },
    encoding: 'utf8',
    timeout,
    killSignal: 'SIGKILL', // a server that started anyway: its status is null
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

// docs/design.md §5: every key file is checked as the signing key is. Whoever can change a
// verification key makes the server trust tokens they sign; whoever can read the next signing
// key can sign the tokens of tomorrow.
describe('the key files: owner and mode', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let files: ReturnType<typeof keyPaths> & { verificationKey: string };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fib-auth-key-files-'));
    env = { DATABASE_URL: `sqlite:${join(dir, 'db.sqlite')}`, FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem') };
    const generated = fibAuth(['keys', 'generate'], env); // the signing key, the next one, and its public half
    assert.equal(generated.code, 0, generated.stderr);
    const kid = generated.stdout.match(/generated the next signing key (\S+);/)![1];
    const paths = keyPaths(env.FIB_AUTH_SIGNING_KEY_FILE!);
    files = { ...paths, verificationKey: join(paths.verificationDir, `${kid}.json`) };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a verification key, its folder or the next signing key that other users can change (or read) stops serve: exit 1, one line naming it', () => {
    const cases: [string, number, number, string][] = [
      [
        files.verificationKey,
        0o666,
        0o644,
        'the verification key file %s has mode 0666: other users can change it; chmod 644 it',
      ],
      [
        files.verificationKey,
        0o664,
        0o644,
        'the verification key file %s has mode 0664: other users can change it; chmod 644 it',
      ],
      [
        files.verificationDir,
        0o777,
        0o755,
        'the verification key folder %s has mode 0777: other users can change it; chmod 755 it',
      ],
      [files.next, 0o644, 0o600, 'the next signing key file %s has mode 0644: other users can read or change it; chmod 600 it'],
      [files.next, 0o660, 0o600, 'the next signing key file %s has mode 0660: other users can read or change it; chmod 600 it'],
    ];
    for (const [path, mode, restored, message] of cases) {
      chmodSync(path, mode);
      try {
        const result = fibAuth(['serve'], env);
        assert.equal(result.code, 1, `${path} ${mode.toString(8)}: ${result.stderr}`);
        assert.equal(result.stderr, `fib-auth: ${message.replace('%s', path)}\n`);
        assert.doesNotMatch(result.stdout, /listening/);
      } finally {
        chmodSync(path, restored);
      }
    }
  });

  test(
    'a key file or folder that belongs to another user stops serve',
    { skip: process.getuid?.() === 0 ? undefined : 'only root can give a file to another user (CI runs as root)' },
    () => {
      for (const path of [files.verificationDir, env.FIB_AUTH_SIGNING_KEY_FILE!]) {
        chownSync(path, 65534, 65534);
        try {
          const result = fibAuth(['serve'], env);
          assert.equal(result.code, 1, result.stderr);
          assert.match(
            result.stderr,
            new RegExp(`^fib-auth: the [a-z ]+ ${path} belongs to uid 65534, not to this user \\(uid 0\\): chown it\\n$`),
          );
        } finally {
          chownSync(path, 0, 0);
        }
      }
    },
  );

  test('SIGHUP: a verification key that other users can change is not loaded; the old keys stay, one error line names it', async () => {
    const child = await serveChild({ PATH: process.env.PATH, ...env, HOST: '127.0.0.1', PORT: '0', WORKERS: '1' });
    try {
      assert.equal(fibAuth(['users', 'add', '--email', ALICE.email, '--auth-public-key', ALICE.publicKeyHex], env).code, 0);
      const signedIn = (
        await bodyOf(await rawCall(child.url, 'POST', `${BASE}/session`, { body: ALICE_SIGN_IN }), 'authorizeUser', 200)
      ).data;
      const jwks = async () => (await bodyOf(await rawCall(child.url, 'GET', '/.well-known/jwks.json'), 'getJwks', 200)).keys;
      const published = await jwks();

      // Someone else's key, dropped where every user may write.
      const planted = otherKey();
      const kid = await kidOf(planted);
      const path = join(files.verificationDir, `${kid}.json`);
      writeFileSync(path, JSON.stringify({ kid, jwk: await exportJWK(planted), notAfter: null }));
      chmodSync(path, 0o666);
      process.kill(child.pid, 'SIGHUP');
      const failed = await logged(child, 'reloading the keys failed; the old keys stay in use');
      assert.equal(failed.length, 1);
      assert.equal(failed[0].level, 50);
      assert.equal(
        failed[0].err?.message,
        `the verification key file ${path} has mode 0666: other users can change it; chmod 644 it`,
      );

      assert.deepEqual(await jwks(), published);
      const token = forge({ ...decodePart(signedIn.accessToken, 0), kid }, decodePart(signedIn.accessToken, 1), planted);
      const refused = await rawCall(child.url, 'POST', `${BASE}/logout`, { headers: bearer(token) });
      assert.deepEqual({ status: refused.status, body: refused.body }, { status: 422, body: example('TokenKeyIdUnknown') });
      rmSync(path);
    } finally {
      await child.stop();
    }
  });
});

interface LoggedLine {
  level: number;
  msg: string;
  err?: { message: string };
}

/** Waits up to 10 s for the server to log `msg`; resolves with every line that says it. */
async function logged(child: { lines: string[] }, msg: string): Promise<LoggedLine[]> {
  const started = performance.now();
  for (;;) {
    const lines = child.lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as LoggedLine);
    const found = lines.filter((line) => line.msg === msg);
    if (found.length > 0) return found;
    assert.ok(performance.now() - started < 10_000, `the server did not log "${msg}":\n${child.lines.join('\n')}`);
    await sleep(20);
  }
}
