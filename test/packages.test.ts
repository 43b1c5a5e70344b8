/**
 * The packages as a consumer gets them: each is packed with `npm pack`, its tarball installed into
 * an empty project (from npm's cache where it can), imported as an ES module, and the README's
 * examples compiled with tsc against what was installed, then run. The build is npm test's own
 * (`npm run build` runs before the tests): packing does not build again.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { packageRoot } from '../src/package-root.js';

const run = promisify(execFile);
const MB = 1024 * 1024;
const work = mkdtempSync(join(tmpdir(), 'fib-auth-packages-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Manifest {
  name: string;
  version: string;
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}
const manifest = (dir: string) => JSON.parse(readFileSync(join(packageRoot, dir, 'package.json'), 'utf8')) as Manifest;
const WORKSPACES = ['.', 'packages/client', 'packages/resource-server'];

interface Packed {
  filename: string;
  files: { path: string }[];
}
/** `npm pack` of a workspace (or of the service, `.`): the tarball's path and the files in it. */
async function pack(workspace: string): Promise<{ tarball: string; files: string[] }> {
  const where = workspace === '.' ? [] : ['--workspace', workspace];
  const { stdout } = await run('npm', ['pack', ...where, '--ignore-scripts', '--json', '--pack-destination', work], {
    cwd: packageRoot,
  });
  const [packed] = JSON.parse(stdout) as Packed[];
  return { tarball: join(work, packed.filename), files: packed.files.map(({ path }) => path) };
}

/** An empty ES module project, with `packages` installed into it; how long the install took. */
async function install(name: string, packages: string[]): Promise<{ dir: string; seconds: number }> {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
  return { dir, seconds: await installInto(dir, packages) };
}
async function installInto(dir: string, packages: string[]): Promise<number> {
  const started = performance.now();
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', ...packages], { cwd: dir });
  return (performance.now() - started) / 1000;
}

/** Every file under `dir` (symbolic links not followed), relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((path) => lstatSync(join(dir, path)).isFile());
}
const bytesUnder = (dir: string) => filesUnder(dir).reduce((sum, path) => sum + lstatSync(join(dir, path)).size, 0);
/** A native module's traces: a compiled addon, or the recipe to compile one. */
const nativeFiles = (dir: string) => filesUnder(dir).filter((path) => path.endsWith('.node') || path.endsWith('binding.gyp'));

/** The packages a declaration file imports by name (`node:` built-ins included). */
function packagesImportedBy(declarations: string[]): Set<string> {
  const names = new Set<string>();
  for (const file of declarations) {
    for (const [, specifier] of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
      if (specifier.startsWith('.')) continue;
      names.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]);
    }
  }
  return names;
}
function declarationsOf(dir: string): string[] {
  return filesUnder(dir)
    .filter((path) => path.endsWith('.d.ts'))
    .map((path) => join(dir, path));
}

/** The fenced block after `<!-- marker -->` in the README. */
function readmeExample(marker: string): string {
  const readme = readFileSync(join(packageRoot, 'README.md'), 'utf8');
  const example = readme.split(`<!-- ${marker} -->`)[1]?.match(/```ts\n([\s\S]*?)```/)?.[1];
  assert.ok(example, `README.md has no ts block after <!-- ${marker} -->`);
  return example;
}

const TSC = join(packageRoot, 'node_modules', '.bin', 'tsc');
/**
 * Compiles `files` in `dir` as a consumer would. With `skipLibCheck: false` every declaration
 * file reached is checked too, so an import in the package's declarations that does not
 * resolve fails.
 */
async function compile(
  dir: string,
  files: string[],
  options: { types: string[]; lib: string[]; skipLibCheck: boolean },
): Promise<void> {
  const config = {
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      outDir: 'out',
      ...options,
    },
    files,
  };
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(config));
  await run(TSC, ['-p', 'tsconfig.json', '--pretty', 'false'], { cwd: dir }).catch((error: { stdout?: string }) => {
    assert.fail(`tsc in ${dir}:\n${error.stdout}`);
  });
}

test('the packages move together: one version, and each depends on the others at exactly it', () => {
  const manifests = WORKSPACES.map(manifest);
  const [{ version }] = manifests;
  const names = new Set(manifests.map(({ name }) => name));
  for (const { name, version: own, dependencies, peerDependencies, devDependencies } of manifests) {
    assert.equal(own, version, `${name} is at ${own}, fib-auth at ${version}`);
    for (const [dependency, range] of Object.entries({ ...dependencies, ...peerDependencies, ...devDependencies })) {
      if (names.has(dependency)) assert.equal(range, version, `${name} depends on ${dependency}@${range}`);
    }
  }
  const lock = JSON.parse(readFileSync(join(packageRoot, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string }>;
  };
  for (const workspace of WORKSPACES) {
    assert.equal(lock.packages[workspace === '.' ? '' : workspace].version, version, `package-lock.json: ${workspace}`);
  }
});

describe('fib-auth-client from its tarball', () => {
  let dir = '';
  let declarations: string[] = [];
  before(async () => {
    const { tarball, files } = await pack('packages/client');
    // What runs, its declarations, and package.json: no source, test or generator.
    assert.deepEqual(
      files.filter(
        (path) => !/^dist\/(src|generated)\/[\w-]+\.(js|d\.ts)$/.test(path) && !/^(package\.json|README\.md)$/.test(path),
      ),
      [],
    );
    const installed = await install('client', [tarball]);
    dir = installed.dir;
    const bytes = bytesUnder(join(dir, 'node_modules'));
    console.log(`fib-auth-client installed: ${(bytes / MB).toFixed(2)} MB in ${installed.seconds.toFixed(1)} s`);
    assert.ok(bytes < 5 * MB, `${bytes} bytes installed`);
    assert.deepEqual(nativeFiles(join(dir, 'node_modules')), []);
    declarations = declarationsOf(join(dir, 'node_modules', 'fib-auth-client'));
  });

  test('imports as an ES module; ./msw names the optional peer it lacks', async () => {
    const script = `
      const client = await import('fib-auth-client');
      const error = await import('fib-auth-client/msw').then(() => undefined, (error) => error);
      console.log(JSON.stringify({ exports: Object.keys(client).sort(), msw: error?.code, message: error?.message }));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: dir });
    const seen = JSON.parse(stdout) as { exports: string[]; msw: string; message: string };
    assert.deepEqual(seen.exports, [
      'AUTH_ERROR_CODES',
      'AuthClientError',
      'createAuthClient',
      'indexedDbStorage',
      'memoryStorage',
    ]);
    assert.equal(seen.msw, 'ERR_MODULE_NOT_FOUND');
    assert.match(seen.message, /Cannot find package 'msw'/);
  });

  test('its declarations import only its dependency and its optional peers, nothing of Node', () => {
    const { dependencies, peerDependencies } = manifest('packages/client');
    const declared = Object.keys({ ...dependencies, ...peerDependencies });
    assert.deepEqual(
      [...packagesImportedBy(declarations)].filter((name) => !declared.includes(name)),
      [],
    );
  });

  test("the README's client example compiles for a browser: DOM types, no Node types", async () => {
    writeFileSync(join(dir, 'client-example.ts'), readmeExample('client-example'));
    await compile(dir, ['client-example.ts'], { types: [], lib: ['ES2022', 'DOM'], skipLibCheck: false });
  });

  test("with msw and openapi-msw, the README's MSW example compiles and passes under node:test", async () => {
    const seconds = await installInto(dir, ['msw@2', 'openapi-msw@2', '@types/node@20']);
    console.log(`msw, openapi-msw and @types/node installed beside it in ${seconds.toFixed(1)} s`);
    writeFileSync(join(dir, 'msw-example.test.ts'), readmeExample('msw-example'));
    // The client's declarations were checked above; msw's and Node's are not this test's.
    await compile(dir, ['msw-example.test.ts'], { types: ['node'], lib: ['ES2022', 'DOM'], skipLibCheck: true });
    // Without NODE_TEST_CONTEXT, which would make it report to this runner instead of printing TAP.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const { stdout } = await run(process.execPath, ['--test', '--test-reporter=tap', join('out', 'msw-example.test.js')], {
      cwd: dir,
      env,
    });
    assert.match(stdout, /^# pass [1-9]/m);
    assert.match(stdout, /^# fail 0$/m);
  });
});

describe('fib-auth-resource-server from its tarball', () => {
  let dir = '';
  let declarations: string[] = [];
  before(async () => {
    const { tarball, files } = await pack('packages/resource-server');
    // One bundled module and its declarations.
    assert.deepEqual(
      files.filter((path) => !/^(dist\/index\.js|dist\/types\/.+\.d\.ts|package\.json|README\.md)$/.test(path)),
      [],
    );
    const installed = await install('resource-server', [tarball]);
    dir = installed.dir;
    const bytes = bytesUnder(join(dir, 'node_modules'));
    console.log(`fib-auth-resource-server installed: ${(bytes / MB).toFixed(2)} MB in ${installed.seconds.toFixed(1)} s`);
    assert.ok(bytes < 5 * MB, `${bytes} bytes installed`);
    assert.deepEqual(nativeFiles(join(dir, 'node_modules')), []);
    declarations = declarationsOf(join(dir, 'node_modules', 'fib-auth-resource-server'));
  });

  test('imports as an ES module, and its errors carry their codes', async () => {
    const script = `
      const { createVerifier, VerifierOptionsError } = await import('fib-auth-resource-server');
      try { createVerifier({}); } catch (error) {
        console.log(JSON.stringify({ options: error instanceof VerifierOptionsError, code: error.code }));
      }`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: dir });
    assert.deepEqual(JSON.parse(stdout), { options: true, code: 'ERR_FIB_AUTH_OPTIONS_INVALID' });
  });

  test("its declarations import only jose and Node's built-ins (hence @types/node), not koa", () => {
    assert.deepEqual([...packagesImportedBy(declarations)].sort(), ['jose', 'node:crypto']);
  });

  test('a consumer compiles with @types/node, every declaration checked, without koa or @types/koa', async () => {
    await installInto(dir, ['@types/node@20']);
    writeFileSync(
      join(dir, 'consumer.ts'),
      `import { createVerifier, VerificationError, type AccessClaims, type VerifierEvent } from 'fib-auth-resource-server';

const verifier = createVerifier({
  url: 'http://127.0.0.1:8080',
  clientId: 'orders-service',
  clientSecret: 'secret',
  onEvent: (event: VerifierEvent) => console.error(event.type, event.message),
});
export async function claimsOf(authorization: string): Promise<AccessClaims | number> {
  try {
    return await verifier.verify(authorization);
  } catch (error) {
    if (error instanceof VerificationError && error.code === 'ERR_FIB_AUTH_TOKEN_REFUSED') return error.status;
    throw error;
  }
}
export const middleware = verifier.koa();
`,
    );
    await compile(dir, ['consumer.ts'], { types: ['node'], lib: ['ES2022'], skipLibCheck: false });
  });
});

test('the service packs what runs: no source, test, benchmark or docs page, and no install-time script', async () => {
  const { files } = await pack('.');
  assert.deepEqual(
    files.filter((path) => !/^(dist\/src\/.+\.c?js|generated\/openapi\.yaml|package\.json|README\.md)$/.test(path)),
    [],
  );
  assert.ok(files.includes('dist/src/fib-auth.cjs'), 'the bin');
  // A consumer's npm asks for each of these to be allowed (allowScripts).
  const scripts = Object.keys(manifest('.').scripts ?? {});
  assert.deepEqual(
    scripts.filter((name) => ['preinstall', 'install', 'postinstall', 'prepare'].includes(name)),
    [],
  );
  console.log(`fib-auth packs ${files.length} files`);
});
