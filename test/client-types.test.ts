import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../src/package-root.js';

const FIXTURES = join('test', 'client-types');

test('tsc refuses each misuse of fib-auth-client and fib-auth-client/msw with the expected error, and accepts their intended use', () => {
  // The fixtures import the package by its name, so they compile against the declarations that `npm run build` emitted.
  const tsc = spawnSync(
    join(packageRoot, 'node_modules', '.bin', 'tsc'),
    ['-p', join(FIXTURES, 'tsconfig.json'), '--pretty', 'false'],
    {
      cwd: packageRoot,
      encoding: 'utf8',
    },
  );
  const errors = [...tsc.stdout.matchAll(/^(\S+)\((\d+),\d+\): error (TS\d+):/gm)].map(
    ([, file, line, code]) => `${file}:${line} ${code}`,
  );
  const misuse = join(FIXTURES, 'misuse.ts');
  const expected = readFileSync(join(packageRoot, misuse), 'utf8')
    .split('\n')
    .flatMap((text, index) => [...text.matchAll(/\/\/ (TS\d+)$/g)].map(([, code]) => `${misuse}:${index + 1} ${code}`));
  assert.ok(expected.length >= 12, `${expected.length} misuses marked`);
  assert.equal(tsc.status, 2, tsc.stdout + tsc.stderr);
  assert.deepEqual(errors, expected, tsc.stdout);
});
