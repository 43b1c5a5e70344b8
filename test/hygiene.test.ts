import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli } from './support/cli.js';
import {
  BASE,
  bearer,
  bodyOf,
  envelopeOf,
  signInAlice,
  startTestServer,
  type Session,
  type TestServer,
} from './support/harness.js';
import { startServerWithStoreHooks } from './support/store-hooks.js';
import { forge, decodePart, otherKey, serverKey, accessClaims } from './support/tokens.js';
import { ALICE, ALICE_SIGN_IN, BOB_SIGNATURE } from './support/vectors.js';

// Cache-Control (no-store; public, max-age=60 for the key set and the metadata) and
// X-Content-Type-Options: nosniff are asserted on every reply that any test receives, by the
// harness (test/support/harness.ts), including the answers of the HTTP parser below; they are
// not tested again here.

describe('no secret in any log line', () => {
  let keyDir: string;
  before(() => {
    keyDir = mkdtempSync(join(tmpdir(), 'fib-auth-key-'));
  });
  after(() => rmSync(keyDir, { recursive: true, force: true }));

  for (const level of ['trace', 'debug', 'info']) {
    test(`at LOG_LEVEL=${level}`, async () => {
      // A key file only its owner can read (0400) is accepted, as 0600 is.
      const keyFile = join(keyDir, `${level}.pem`);
      writeFileSync(keyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o400 });
      const { t, hooks } = await startServerWithStoreHooks({ LOG_LEVEL: level, FIB_AUTH_SIGNING_KEY_FILE: keyFile });
      try {
        const secrets = await everyKindOfRequest(t, () => hooks.failNext('endSession'));
        assert.ok(t.logs.length >= 12, `${t.logs.length} lines logged`);
        assert.ok(
          t.logs.some((line) => line.includes('"level":50')),
          'the 500 was logged',
        );
        // Not even a piece: every 16 characters of a secret, starting every 4, so that any 19 in a row are caught.
        const pieces = secrets.flatMap((secret) =>
          Array.from({ length: Math.floor((secret.length - 16) / 4) + 1 }, (_, i) =>
            secret.slice(4 * i, 4 * i + 16).toLowerCase(),
          ),
        );
        for (const line of t.logs.map((text) => text.toLowerCase())) {
          const piece = pieces.find((p) => line.includes(p));
          assert.equal(piece, undefined, `a piece of a secret (${piece}) in: ${line}`);
        }
      } finally {
        await t.stop();
      }
    });
  }

  /** Sends one of every kind of request, each carrying secrets; returns every secret sent or received. */
  async function everyKindOfRequest(t: TestServer, failNextLogout: () => void): Promise<string[]> {
    const first: Session = await signInAlice(t);
    const next: Session = (await bodyOf(await t.refresh(first.refreshToken), 'refreshTokens', 200)).data;
    const forged = forge(decodePart(first.accessToken, 0), accessClaims(ALICE.email), otherKey());
    await t.refresh(first.refreshToken); // reuse
    await t.logout(forged);
    await t.signIn({ ...ALICE_SIGN_IN, signature: BOB_SIGNATURE });
    failNextLogout();
    assert.equal((await t.logout(next.accessToken)).status, 500);
    await t.call('POST', `${BASE}/logout`, { headers: { ...bearer(next.accessToken), 'x-padding': 'p'.repeat(17 * 1024) } }); // 431
    await t.send(
      `POST ${BASE}/logout HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${next.accessToken}\x01\r\nConnection: close\r\n\r\n`,
    ); // 400
    await t.call('POST', `${BASE}/session`, { body: { ...ALICE_SIGN_IN, email: `${'a'.repeat(17 * 1024)}` } }); // 413
    await t.logout(next.accessToken);

    const key = serverKey(t);
    const pem = key.export({ type: 'pkcs8', format: 'pem' }) as string;
    const d = key.export({ format: 'jwk' }).d!;
    const tokens = [first.accessToken, first.refreshToken, next.accessToken, next.refreshToken, forged];
    return [
      ...tokens,
      ...tokens.flatMap((token) => token.split('.').slice(1)), // payloads and signatures
      ALICE.signature,
      BOB_SIGNATURE,
      ...pem.split('\n').filter((line) => line && !line.startsWith('-----')),
      d,
      Buffer.from(d, 'base64url').toString('hex'),
    ];
  }
});

// One server for the tests below, started by the harness: it creates its own key file.
let t: TestServer;
before(async () => {
  t = await startTestServer({ LOG_LEVEL: 'warn' });
});
after(() => t.stop());

describe('the signing key file', () => {
  test('is created with mode 0600', () => {
    assert.equal(statSync(t.config.signingKeyFile).mode & 0o777, 0o600);
  });

  test('that other users can read or change is refused: serve exits 1 naming the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fib-auth-key-'));
    try {
      const keyFile = join(dir, 'signing-key.pem');
      writeFileSync(keyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
      for (const mode of [0o644, 0o620]) {
        chmodSync(keyFile, mode);
        const result = await runCli(['serve'], {
          DATABASE_URL: `sqlite:${join(dir, 'db.sqlite')}`,
          FIB_AUTH_SIGNING_KEY_FILE: keyFile,
          HOST: '127.0.0.1',
          PORT: '0',
        });
        const octal = mode.toString(8).padStart(4, '0');
        assert.equal(result.code, 1, result.stderr);
        assert.equal(
          result.stderr,
          `fib-auth: the signing key file ${keyFile} has mode ${octal}: other users can read or change it; chmod 600 it\n`,
        );
        assert.doesNotMatch(result.stdout, /listening/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the SQLite database', () => {
  /** The modes of the database file and of its -wal and -shm files. */
  const modes = (path: string) => ['', '-wal', '-shm'].map((suffix) => statSync(path + suffix).mode & 0o777);

  // Under the usual umask 022, files are created readable by everyone unless created otherwise.
  const withUmask022 = async (work: () => Promise<void>) => {
    const previous = process.umask(0o022);
    try {
      await work();
    } finally {
      process.umask(previous);
    }
  };

  test('and its -wal and -shm files are created 0600: they hold emails, keys and session ids', () =>
    withUmask022(async () => {
      const fresh = await startTestServer();
      try {
        assert.deepEqual(modes(fresh.config.databaseUrl.slice('sqlite:'.length)), [0o600, 0o600, 0o600]);
      } finally {
        await fresh.stop();
      }
    }));

  test('that other users can read is made 0600 at start, and the server says so', () =>
    withUmask022(async () => {
      const dir = mkdtempSync(join(tmpdir(), 'fib-auth-db-'));
      const path = join(dir, 'old.sqlite');
      try {
        writeFileSync(path, '', { mode: 0o644 }); // as servers before this rule created it
        const old = await startTestServer({ DATABASE_URL: `sqlite:${path}` });
        try {
          assert.deepEqual(modes(path), [0o600, 0o600, 0o600]);
          const warned = old.logs.map((line) => JSON.parse(line) as { msg: string; file?: string; mode?: string });
          assert.deepEqual(
            warned.filter((line) => line.file === path).map(({ msg, mode }) => ({ msg, mode })),
            [{ msg: 'other users could read or change the database file; now only its owner can', mode: '0644' }],
          );
        } finally {
          await old.stop();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }));
});

describe('limits on the request', () => {
  const headerOverflow = {
    code: 431,
    name: 'Request Header Fields Too Large',
    message: 'The request line and headers are larger than 16384 bytes.',
  };

  test('headers over 16 KiB: 431 in the envelope, whichever header or path is too long', async () => {
    const { accessToken } = await t.newSession();
    const replies = [
      await t.call('POST', `${BASE}/logout`, { headers: { ...bearer(accessToken), 'x-padding': 'p'.repeat(17 * 1024) } }),
      await t.call('POST', `${BASE}/logout`, { headers: bearer(`${accessToken}${'A'.repeat(17 * 1024)}`) }),
      await t.call('POST', `${BASE}/logout?${'q'.repeat(17 * 1024)}`, { headers: bearer(accessToken) }),
      await t.call('POST', `${BASE}/session`, {
        body: ALICE_SIGN_IN,
        headers: Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`x-h${i}`, 'v'.repeat(40)])),
      }),
    ];
    for (const reply of replies) assert.deepEqual(envelopeOf(reply).status, headerOverflow);
    // None of them reached logout: the token still works.
    assert.equal((await t.logout(accessToken)).status, 200);
  });

  test('a chunked body over 16 KiB: 413, though no length was declared', async () => {
    const chunk = 'x'.repeat(17 * 1024);
    const reply = await t.send(
      `POST ${BASE}/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
        `${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`,
    );
    assert.deepEqual(envelopeOf(reply).status, {
      code: 413,
      name: 'Payload Too Large',
      message: 'The request body is larger than 16384 bytes.',
    });
  });
});
