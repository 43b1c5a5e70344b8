import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { packageRoot } from '../src/package-root.js';
import { serveChild, type ChildServer } from './support/child-server.js';
import { addClient, fibAuth } from './support/cli.js';
import { emptySqliteStore } from './support/databases.js';
import { signInBody } from './support/vectors.js';

const WORKFLOWS = join('openapi', 'workflows', 'fib-auth.arazzo.yaml');
/** The source description the workflows name, whose server URL respect takes from `--server`. */
const SOURCE = 'fibAuth';

/** A step or a child workflow as `redocly respect --json-output` reports it, as far as this test reads it. */
type Executed =
  | { type: 'workflow'; workflowId: string; status: string; executedSteps: Executed[] }
  | {
      type: 'step';
      stepId: string;
      response?: { statusCode: number; body: unknown };
      checks: { name: string; passed: boolean; condition?: string }[];
    };

interface RespectReport {
  status: string;
  files: Record<string, { executedWorkflows: Extract<Executed, { type: 'workflow' }>[] }>;
}

/** Every failed check with the answer it failed on, which respect's own summary leaves out. */
function failedChecks(executed: Executed[], path: string): string[] {
  return executed.flatMap((entry) =>
    entry.type === 'workflow'
      ? failedChecks(entry.executedSteps, `${path}${entry.workflowId}/`)
      : entry.checks
          .filter(({ passed }) => !passed)
          .map(
            ({ name, condition }) =>
              `${path}${entry.stepId}: ${name}${condition ? ` ${condition}` : ''} failed on ${entry.response?.statusCode} ${JSON.stringify(entry.response?.body)}`,
          ),
  );
}

/** Runs the package's `redocly respect` (the pinned @redocly/cli) and resolves with its exit code and output. */
async function respect(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(join(packageRoot, 'node_modules', '.bin', 'redocly'), ['respect', ...args], {
    cwd: packageRoot,
    env: { ...process.env, REDOCLY_TELEMETRY: 'off' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, output };
}

describe('the Arazzo workflows of openapi/workflows/, run by Redocly respect against the real server', () => {
  let dir: string;
  let server: ChildServer;
  let inputs: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fib-auth-workflows-'));
    const env = {
      PATH: process.env.PATH,
      DATABASE_URL: emptySqliteStore(join(dir, 'fib-auth.sqlite')),
      FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem'),
      HOST: '127.0.0.1',
      PORT: '0',
    };
    const user = signInBody('workflows@example.test', generateKeyPairSync('ed25519').privateKey);
    // The CLI and the server share the new, empty SQLite file from the start (docs/design.md §7).
    const [{ clientId, clientSecret }] = await Promise.all([
      addClient(env, 'workflows'),
      fibAuth(['users', 'add', '--email', user.email, '--auth-public-key', user.authPublicKeyHex], env),
      serveChild(env).then((started) => (server = started)),
    ]);
    inputs = JSON.stringify({ user, client: { id: clientId, secret: clientSecret } });
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every workflow runs, and each of its steps passes its status, content-type, schema and success criteria checks', async () => {
    const reportFile = join(dir, 'respect.json');
    const started = performance.now();
    const { code, output } = await respect([
      WORKFLOWS,
      '--server',
      `${SOURCE}=${server.url}`,
      '--input',
      inputs,
      '--json-output',
      reportFile,
    ]);
    console.log(`redocly respect took ${Math.round(performance.now() - started)} ms`);
    const report = existsSync(reportFile) ? (JSON.parse(readFileSync(reportFile, 'utf8')) as RespectReport) : undefined;
    const executed = report?.files[WORKFLOWS]?.executedWorkflows ?? [];
    assert.equal(code, 0, `redocly respect exited ${code}:\n${output}\n${failedChecks(executed, '').join('\n')}`);

    assert.equal(report?.status, 'success', output);
    const ran = Object.fromEntries(executed.map(({ workflowId, status }) => [workflowId, status]));
    assert.deepEqual(
      ran,
      {
        signIn: 'success',
        logoutTwice: 'success',
        refreshTokenReuse: 'success',
        introspectionAfterLogout: 'success',
        endSessionWithRefreshToken: 'success',
      },
      output,
    );
  });
});
