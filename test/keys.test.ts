import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { exportJWK } from 'jose';
import { Clients } from '../src/domain/clients.js';
import { keyPaths } from '../src/key-files.js';
import { serveChild, type ChildServer } from './support/child-server.js';
import { fibAuth, runCli } from './support/cli.js';
import { DATABASES } from './support/databases.js';
import {
  assertExample,
  BASE,
  bearer,
  bodyOf,
  example,
  logEntries,
  rawCall,
  startTestServerOn,
  type TestServer,
} from './support/harness.js';
import { startResourceServer, untilRefused } from './support/resource-servers.js';
import { decodePart, forge, kidOf, otherKey } from './support/tokens.js';
import { ALICE, ALICE_SIGN_IN } from './support/vectors.js';

/** Runs the package's bin (runCli) with `env`, on 127.0.0.1 and any free port should serve start. */
const run = (args: string[], env: NodeJS.ProcessEnv) => runCli(args, { HOST: '127.0.0.1', PORT: '0', ...env });

// docs/design.md §5: every key file is checked as the signing key is. Whoever can change a
// verification key makes the server trust tokens they sign; whoever can read the next signing
// key can sign the tokens of tomorrow.
describe('the key files: owner and mode', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let files: ReturnType<typeof keyPaths> & { verificationKey: string };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fib-auth-key-files-'));
    env = { DATABASE_URL: `sqlite:${join(dir, 'db.sqlite')}`, FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem') };
    const generated = await fibAuth(['keys', 'generate'], env); // the signing key, the next one, and its public half
    const kid = generated.match(/generated the next signing key (\S+);/)![1];
    const paths = keyPaths(env.FIB_AUTH_SIGNING_KEY_FILE!);
    files = { ...paths, verificationKey: join(paths.verificationDir, `${kid}.json`) };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a verification key, its folder or the next signing key that other users can change (or read) stops serve: exit 1, one line naming it', async () => {
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
        const result = await run(['serve'], env);
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
    async () => {
      for (const path of [files.verificationDir, env.FIB_AUTH_SIGNING_KEY_FILE!]) {
        chownSync(path, 65534, 65534);
        try {
          const result = await run(['serve'], env);
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
    const child = await serveChild({ ...env, HOST: '127.0.0.1', PORT: '0' });
    try {
      await fibAuth(['users', 'add', '--email', ALICE.email, '--auth-public-key', ALICE.publicKeyHex], env);
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

// docs/design.md §5: `fib-auth keys revoke --kid KID` withdraws a verification key at once, for
// a leaked private key. The withdrawal lives in the store: every process on it, instances and
// workers alike, stops trusting the key within a second, with no signal; the feed carries it to
// the resource servers.
for (const backend of DATABASES) {
  describe(`withdrawing a key on two instances on one ${backend.name} database`, () => {
    const it = (name: string, fn: () => void | Promise<void>): void => {
      test(name, { skip: backend.skip }, fn);
    };
    let env: Record<string, string>;
    let a: TestServer;
    let b: ChildServer; // a process of its own, with its workers
    let clientAuthorization: string;
    let clientSecret: string;
    const revoke = async (kid: string) => {
      const revoked = await run(['keys', 'revoke', '--kid', kid], env);
      assert.equal(revoked.code, 0, revoked.stderr);
      return revoked;
    };
    const jwksOf = async (url: string) =>
      (await bodyOf(await rawCall(url, 'GET', '/.well-known/jwks.json'), 'getJwks', 200)).keys.map((key) => key.kid);
    const introspect = (url: string, token: string) =>
      rawCall(url, 'POST', `${BASE}/introspection`, {
        headers: { authorization: clientAuthorization, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }).toString(),
      });
    const isActive = async (url: string, token: string) =>
      (await bodyOf(await introspect(url, token), 'introspectToken', 200)).active;
    const feed = async (query: string) =>
      (
        await bodyOf(
          await rawCall(a.url, 'GET', `${BASE}/revocations?${query}`, { headers: { authorization: clientAuthorization } }),
          'listRevocations',
          200,
        )
      ).data;
    /** Rotates to a new signer and has both instances reload; resolves with the retired signer's kid. */
    const rotate = async () => {
      const retired = decodePart((await a.newSession()).accessToken, 0).kid as string;
      const signer = (await fibAuth(['keys', 'rotate'], env)).split(' ')[0];
      await a.server.reloadKeys();
      process.kill(b.pid, 'SIGHUP');
      await until(async () => (await jwksOf(b.url))[0] === signer, 'B signs with the new key after SIGHUP');
      return retired;
    };

    before(async () => {
      if (backend.skip) return;
      a = await startTestServerOn(backend);
      env = { DATABASE_URL: a.config.databaseUrl, FIB_AUTH_SIGNING_KEY_FILE: a.config.signingKeyFile };
      // Workers are part of what is tested: each learns of a withdrawal by itself.
      b = await serveChild({ ...env, HOST: '127.0.0.1', PORT: '0', WORKERS: '2' });
      clientSecret = (await new Clients(a.server.store, Date.now).add('rs-withdrawal'))!;
      clientAuthorization = `Basic ${Buffer.from(`rs-withdrawal:${clientSecret}`).toString('base64')}`;
    });
    after(async () => {
      await b?.stop();
      await a?.stop();
    });

    it('keys revoke --kid A: within a second both instances refuse A’s tokens as an unknown kid, their JWKS omit A, and the feed lists it', async () => {
      const signedByA = await a.newSession();
      const other = await a.newSession();
      const kidA = await rotate();
      assert.equal(decodePart(signedByA.accessToken, 0).kid, kidA);
      const signedByB = await a.newSession();
      for (const url of [a.url, b.url]) {
        assert.equal(await isActive(url, signedByA.accessToken), true, 'A still verifies after the rotation');
        assert.deepEqual((await jwksOf(url)).slice(1), [kidA]);
      }
      const { cursor } = await feed('wait=0');

      const revoked = await revoke(kidA);
      const revokedAt = performance.now();
      const verificationFile = join(keyPaths(env.FIB_AUTH_SIGNING_KEY_FILE).verificationDir, `${kidA}.json`);
      // It names the store it wrote to: the tests' URLs are absolute and carry no password, so as they are.
      assert.match(
        revoked.stdout,
        new RegExp(
          `^withdrew ${kidA} in ${escape(env.DATABASE_URL)}: every instance refuses its tokens within a second, and the revocation feed lists it until \\d{4}-.+; removed ${escape(verificationFile)}\n$`,
        ),
      );
      assert.equal(revoked.stderr, '');
      assert.equal(existsSync(verificationFile), false, 'no restart can trust it again');

      // Each instance, and each worker of B, learns of it by itself (no signal was sent): a
      // second after the CLI exited, every one of them refuses A's tokens.
      const firstRefusals = await Promise.all(
        [a.url, b.url].map(async (url) => {
          await until(async () => !(await isActive(url, signedByA.accessToken)), `${url} refuses A`, 1000);
          return performance.now() - revokedAt;
        }),
      );
      console.log(`A and B first refused A ${firstRefusals.map((ms) => `${Math.round(ms)} ms`).join(', ')} after the CLI exited`);
      await sleep(1000 - (performance.now() - revokedAt));
      for (const url of [a.url, a.url, b.url, b.url]) {
        // Each request on a connection of its own: B's workers take turns answering.
        assert.equal(await isActive(url, signedByA.accessToken), false, url);
        assert.deepEqual(await jwksOf(url), [decodePart(signedByB.accessToken, 0).kid]);
        const refused = await rawCall(url, 'POST', `${BASE}/logout`, { headers: bearer(signedByA.accessToken) });
        await assertExample(refused, 'TokenKeyIdUnknown');
        await assertExample(
          await rawCall(url, 'PATCH', `${BASE}/session`, { headers: bearer(other.refreshToken) }),
          'TokenKeyIdUnknown',
        );
        await assertExample(
          await rawCall(url, 'DELETE', `${BASE}/session`, { headers: bearer(other.refreshToken) }),
          'TokenKeyIdUnknown',
        );
      }
      // The new signer's tokens are untouched.
      assert.equal(await isActive(b.url, signedByB.accessToken), true);
      await assertExample(await a.logout(signedByB.accessToken), 'LoggedOut');

      const withdrawal = { kid: kidA, reason: 'key-withdrawn' };
      const listed = (await feed(`after=${cursor}&wait=0`)).revocations;
      assert.deepEqual(
        listed.map(({ until: _until, ...entry }) => entry),
        [withdrawal, { sid: decodePart(signedByB.accessToken, 1).sid, reason: 'logout' }],
      );
      const longest = Math.max(a.config.accessTokenTtl, a.config.refreshTokenTtl);
      const expected = Date.now() / 1000 + longest + 300;
      assert.ok(Math.abs(listed[0].until - expected) < 30, `until ${listed[0].until}: the withdrawal + ${longest} s + 300 s`);
      assert.ok(
        (await feed('wait=0')).revocations.some((entry) => 'kid' in entry && entry.kid === kidA),
        'snapshots list it',
      );
    });

    it('keys revoke reaches fib-auth-resource-server through the feed: within a second it refuses the key’s tokens as an unknown kid (422)', async () => {
      // Following B, while the CLI writes through the store: the withdrawal reaches the library
      // as a feed entry, whichever instance it reads.
      const resourceServer = await startResourceServer({ serviceUrl: b.url, clientId: 'rs-withdrawal', clientSecret });
      try {
        const signedByA = await a.newSession();
        const kidA = await rotate();
        assert.equal((await resourceServer.get(signedByA.accessToken)).status, 200, 'A verifies at the resource server');
        await revoke(kidA);
        // From the CLI's exit: the withdrawal committed a moment before.
        const { reply, delayMs } = await untilRefused(resourceServer, signedByA.accessToken, performance.now(), 1000);
        console.log(`the resource server refused ${kidA}'s token ${Math.round(delayMs)} ms after keys revoke exited`);
        await assertExample(reply, 'TokenKeyIdUnknown');
      } finally {
        await resourceServer.process.stop();
      }
    });

    it('the store stays the authority: a withdrawn key put back in its folder, or a restart, does not bring it back', async () => {
      const signedByA = await a.newSession();
      const kidA = await rotate();
      const verificationFile = join(keyPaths(env.FIB_AUTH_SIGNING_KEY_FILE).verificationDir, `${kidA}.json`);
      const published = readFileSync(verificationFile);
      await revoke(kidA);
      writeFileSync(verificationFile, published, { mode: 0o644 });
      await a.restart();
      process.kill(b.pid, 'SIGHUP');
      await sleep(500);
      for (const url of [a.url, b.url]) {
        assert.equal((await jwksOf(url)).includes(kidA), false, url);
        await assertExample(
          await rawCall(url, 'POST', `${BASE}/logout`, { headers: bearer(signedByA.accessToken) }),
          'TokenKeyIdUnknown',
        );
      }
      rmSync(verificationFile);
    });

    it('keys revoke refuses the signing key and an unknown kid with one line (exit 1); a second revoke exits 0', async () => {
      const signer = decodePart((await a.newSession()).accessToken, 0).kid as string;
      const refused = await run(['keys', 'revoke', '--kid', signer], env);
      assert.equal(refused.code, 1);
      assert.equal(
        refused.stderr,
        `fib-auth: ${signer} is the signing key: make another key the signer first (fib-auth keys rotate), then revoke ${signer}\n`,
      );
      // A kid may start with a dash (base64url): it is still the value of --kid.
      for (const kid of ['no-such-kid', '-no-such-kid']) {
        const unknown = await run(['keys', 'revoke', '--kid', kid], env);
        assert.equal(unknown.code, 1, unknown.stderr);
        assert.match(
          unknown.stderr,
          new RegExp(`^fib-auth: no key ${kid} is published in \\S+, waiting in \\S+ or withdrawn in \\S+\n$`),
        );
      }
      for (const args of [
        ['keys', 'revoke'],
        ['keys', 'revoke', '--kid'],
        ['keys', 'revoke', 'KID'],
        ['keys', 'revoke', '--kid', 'a', '--now'],
      ]) {
        const usage = await run(args, env);
        assert.equal(usage.code, 2, args.join(' '));
        assert.match(usage.stderr, /^fib-auth: [^\n]+\n$/);
      }
      await assertExample(await a.logout((await a.newSession()).accessToken), 'LoggedOut');

      const kidA = await rotate();
      await revoke(kidA);
      const again = await run(['keys', 'revoke', '--kid', kidA], env);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(again.stdout, `${kidA} was withdrawn before in ${env.DATABASE_URL}\n`);
    });

    it('a withdrawn signing key: an instance signing with it logs an error, none starts or reloads with it', async () => {
      const signer = decodePart((await a.newSession()).accessToken, 0).kid as string;
      // As `keys revoke` would while an instance had not yet reloaded after a rotation.
      const now = Math.floor(Date.now() / 1000);
      assert.ok(await a.server.store.withdrawKey(signer, now, now + 86_700));
      const message = `the signing key ${signer} has been withdrawn: make another key the signer (fib-auth keys rotate) first`;
      await until(
        () =>
          Promise.resolve(
            logEntries(a).some((line) => line.level === 50 && line.msg.startsWith('the signing key was withdrawn')),
          ),
        'A logs that it signs with a withdrawn key',
        1000,
      );
      await assert.rejects(a.server.reloadKeys(), { message });
      const refused = await run(['serve'], env);
      assert.equal(refused.code, 1, refused.stderr);
      assert.equal(refused.stderr, `fib-auth: ${message}\n`);

      await rotate(); // the way out: a new signer, and both instances reload
      await assertExample(await a.logout((await a.newSession()).accessToken), 'LoggedOut');
    });

    it('a waiting next key can be withdrawn too: its private key goes, so it never signs', async () => {
      const generated = await fibAuth(['keys', 'generate'], env);
      const next = generated.match(/generated the next signing key (\S+);/)![1];
      const paths = keyPaths(env.FIB_AUTH_SIGNING_KEY_FILE);
      const withdrawn = await revoke(next);
      assert.match(
        withdrawn.stdout,
        new RegExp(`; removed ${escape(join(paths.verificationDir, `${next}.json`))}; removed ${escape(paths.next)}\n$`),
      );
      assert.equal(existsSync(paths.next), false);
      const rotated = await fibAuth(['keys', 'rotate'], env);
      assert.notEqual(rotated.split(' ')[0], next, 'rotate made a new key the signer');
    });
  });
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** Asks `check` every 10 ms until it holds, failing after `withinMs` with `what`. */
async function until(check: () => Promise<boolean>, what: string, withinMs = 10_000): Promise<void> {
  const started = performance.now();
  while (!(await check())) {
    assert.ok(performance.now() - started < withinMs, `not within ${withinMs} ms: ${what}`);
    await sleep(10);
  }
}
