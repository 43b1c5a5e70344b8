import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../src/package-root.js';
import { serveChild } from './support/child-server.js';
import { BASE, bearer, envelopeOf, rawCall, startTestServer } from './support/harness.js';
import { freePort, startProcess } from './support/processes.js';
import { addClient } from './support/cli.js';
import { registerUsers, untilRefused } from './support/resource-servers.js';

test('the README walkthrough works as printed', async () => {
  const readme = readFileSync(join(packageRoot, 'README.md'), 'utf8');
  const script = readme.split('<!-- walkthrough -->')[1].match(/```sh\n([\s\S]*?)```/)![1];
  const expected = script
    .split('\n')
    .filter((line) => line.startsWith('# {'))
    .map((line) => line.slice(2));
  assert.equal(expected.length, 2);

  const t = await startTestServer();
  try {
    // The walkthrough talks to the default port; point it at this test's server instead.
    // Asynchronously: the server answering it runs in this process.
    const { stdout } = await promisify(execFile)(
      'bash',
      ['-euo', 'pipefail', '-c', script.replace('127.0.0.1:8080', new URL(t.url).host)],
      {
        cwd: packageRoot,
        env: { ...process.env, DATABASE_URL: t.config.databaseUrl },
        timeout: 60_000,
      },
    );
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
  const readme = readFileSync(join(packageRoot, 'README.md'), 'utf8');
  const example = readme.split('<!-- resource-server-example -->')[1].match(/```js\n([\s\S]*?)```/)![1];
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
