import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { sign } from 'node:crypto';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../src/package-root.js';
import { serveChild } from './support/child-server.js';
import { BASE, bearer, envelopeOf, rawCall, startTestServer } from './support/harness.js';
import { freePort, startProcess } from './support/processes.js';
import { blake2b } from '@noble/hashes/blake2.js';
import { addClient } from './support/cli.js';
import { registerUsers, untilRefused } from './support/resource-servers.js';
import { messageDigest, parsePublicKeyHex, verifyMessageSignature } from '../src/domain/signature.js';
import { ed25519FromSeed, publicKeyHexOf, signMessage } from './support/vectors.js';

const readme = () => readFileSync(join(packageRoot, 'README.md'), 'utf8');

test('the README walkthrough works as printed, on the PORT it is given', async () => {
  const script = readme()
    .split('<!-- walkthrough -->')[1]
    .match(/```sh\n([\s\S]*?)```/)![1];
  const expected = script
    .split('\n')
    .filter((line) => line.startsWith('# {'))
    .map((line) => line.slice(2));
  assert.equal(expected.length, 2);

  const t = await startTestServer();
  try {
    // Asynchronously: the server answering it runs in this process.
    const { stdout } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', script], {
      cwd: packageRoot,
      env: { ...process.env, DATABASE_URL: t.config.databaseUrl, PORT: new URL(t.url).port },
      timeout: 60_000,
    });
    assert.deepEqual(
      stdout.split('\n').filter((line) => line.startsWith('{')),
      expected,
    );
  } finally {
    rmSync(join(packageRoot, 'session.json'), { force: true });
    await t.stop();
  }
});

test('the README resource-server example accepts a token, then refuses it once logged out', async () => {
  const example = readme()
    .split('<!-- resource-server-example -->')[1]
    .match(/```js\n([\s\S]*?)```/)![1];
  // Inside the package, so that `fib-auth-resource-server` resolves to this package's build.
  const dir = mkdtempSync(join(packageRoot, '.readme-example-'));
  const file = join(dir, 'orders-service.mjs');
  writeFileSync(file, example);
  const databaseDir = mkdtempSync(join(dir, 'var-'));
  const env = {
    PATH: process.env.PATH,
    DATABASE_URL: `sqlite:${join(databaseDir, 'fib-auth.sqlite')}`,
    FIB_AUTH_SIGNING_KEY_FILE: join(databaseDir, 'signing-key.pem'),
    HOST: '127.0.0.1',
    PORT: '0',
  };
  const service = await serveChild(env);
  try {
    const { clientId, clientSecret } = await addClient(env, 'orders-service');
    const port = await freePort();
    const orders = await startProcess(process.execPath, [file], {
      env: {
        ...process.env,
        FIB_AUTH_URL: service.url,
        FIB_AUTH_CLIENT_ID: clientId,
        FIB_AUTH_CLIENT_SECRET: clientSecret,
        PORT: String(port),
      },
      ready: /orders-service listening/,
    });
    try {
      const rs = {
        url: `http://127.0.0.1:${port}`,
        process: orders,
        get: (token: string) => rawCall(`http://127.0.0.1:${port}`, 'GET', '/', { headers: bearer(token) }),
      };
      const [user] = await registerUsers(env.DATABASE_URL, service.url, 1);
      const session = await user.signIn();
      const accepted = await rs.get(session.accessToken);
      assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
      // The README's resource server answers its own envelope: `data` is what it chose to show.
      assert.equal((envelopeOf(accepted).data as { email?: unknown }).email, user.email);
      assert.equal((await rawCall(service.url, 'POST', `${BASE}/logout`, { headers: bearer(session.accessToken) })).status, 200);
      const { reply } = await untilRefused(rs, session.accessToken, performance.now(), 5000);
      assert.equal(reply.status, 401);
      assert.equal(envelopeOf(reply).status.message, 'The access token has already been logged out.');
    } finally {
      await orders.stop();
    }
  } finally {
    await service.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The README's signing vectors: a key, then per email its digest, the bytes signed and the signature. */
function signingVectors() {
  const block = readme()
    .split('<!-- signing vectors -->')[1]
    .match(/```text\n([\s\S]*?)```/)![1];
  const [keys, ...emails] = block
    .trim()
    .split('\n\n')
    .map((paragraph) =>
      Object.fromEntries(paragraph.split('\n').map((line) => [line.slice(0, 20).trim(), line.slice(20).trim()])),
    );
  return { privateKeyHex: keys['private key (seed)'], publicKeyHex: keys['public key'], emails };
}

test("the README's signing vectors hold, and one of them catches a client that sets the wrong bit or none", () => {
  const { privateKeyHex, publicKeyHex, emails } = signingVectors();
  const privateKey = ed25519FromSeed(privateKeyHex);
  const publicKey = parsePublicKeyHex(publicKeyHex)!;
  assert.equal(publicKeyHexOf(privateKey), publicKeyHex);
  assert.deepEqual(
    emails.map((vector) => vector.email),
    ['alice@wonderland.space', 'bob@wonderland.space'],
  );
  for (const { email, 'BLAKE2b-256': digest, 'signed bytes': signed, signature } of emails) {
    assert.equal(Buffer.from(blake2b(new TextEncoder().encode(email), { dkLen: 32 })).toString('hex'), digest, email);
    assert.equal(Buffer.from(messageDigest(email)).toString('hex'), signed, email);
    assert.equal(signMessage(email, privateKey), signature, email);
    assert.ok(verifyMessageSignature(email, signature, publicKey), email);
  }
  // The wrong rules a client might read into "the last bit set": each must fail some vector.
  const wrongRules: Record<string, (digest: Buffer) => void> = {
    'no bit set': () => {},
    "the last byte's highest bit set": (digest) => void (digest[31] |= 0x80),
    "the first byte's lowest bit set": (digest) => void (digest[0] |= 0x01),
  };
  for (const [rule, apply] of Object.entries(wrongRules)) {
    const caught = emails.filter(({ 'BLAKE2b-256': digest, signature }) => {
      const bytes = Buffer.from(digest, 'hex');
      apply(bytes);
      return signature !== sign(null, bytes, privateKey).toString('hex');
    });
    assert.ok(caught.length > 0, `no vector catches a client that signs with ${rule}`);
  }
});

test("the README's contents list every section, and each of its links names a heading", () => {
  const text = readme();
  const slugOf = (heading: string) =>
    heading
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, '')
      .replace(/ /g, '-');
  const outsideCode = text.replace(/```[\s\S]*?```/g, '');
  const headings = [...outsideCode.matchAll(/^(#{2,3}) (.+)$/gm)].map(([, level, title]) => ({ level, slug: slugOf(title) }));
  const contents = text.split('## Contents\n')[1].split('\n## ')[0];
  const listed = new Set([...contents.matchAll(/\]\(#([^)]+)\)/g)].map((match) => match[1]));
  for (const { level, slug } of headings)
    if (level === '##' && slug !== 'contents') assert.ok(listed.has(slug), `Contents lacks #${slug}`);
  const anchors = new Set(headings.map(({ slug }) => slug));
  for (const [, anchor] of outsideCode.matchAll(/\]\(#([^)]+)\)/g)) assert.ok(anchors.has(anchor), `no heading for #${anchor}`);
});
