import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../src/package-root.js';
import { startTestServer } from './support/harness.js';

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
