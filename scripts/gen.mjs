// Bundles the split contract and generates its TypeScript types into generated/.
// With --check, generates into a temporary folder and fails when generated/ differs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const FILES = ['openapi.yaml', 'openapi.d.ts'];
const check = process.argv.includes('--check');
const out = check ? mkdtempSync(join(tmpdir(), 'fib-auth-gen-')) : 'generated';
const run = (bin, args) => execFileSync(join('node_modules', '.bin', bin), args, { stdio: ['ignore', 'ignore', 'inherit'] });

run('redocly', ['bundle', 'openapi/openapi.yaml', '--output', join(out, FILES[0])]);
run('openapi-typescript', [join(out, FILES[0]), '--redocly', 'scripts/typegen.redocly.yaml', '--output', join(out, FILES[1])]);

if (check) {
  const stale = FILES.filter((file) => {
    try {
      return readFileSync(join('generated', file), 'utf8') !== readFileSync(join(out, file), 'utf8');
    } catch {
      return true;
    }
  });
  rmSync(out, { recursive: true, force: true });
  if (stale.length > 0) {
    console.error(`generated/ is stale (${stale.join(', ')}): run npm run gen and commit the result`);
    process.exit(1);
  }
  console.log('generated/ matches openapi/');
}
