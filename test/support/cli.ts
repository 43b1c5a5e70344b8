import assert from 'node:assert/strict';
import { execFile, type ExecFileException } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../src/package-root.js';

/** The package's bin in the checkout at `root`, as built by `npm run build` (which `npm test` runs first). */
export function binOf(root = packageRoot): string {
  const { bin } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  return join(root, bin['fib-auth']);
}

export const CLI = binOf();

export interface CliResult {
  /** The exit code; null when a signal ended the command. */
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `fib-auth ARGS` in the package folder (or `cwd`) with exactly the environment `env`, and
 * resolves with its exit code and output, whatever the code. It runs beside this process, so a
 * server started in this process keeps answering meanwhile. A command still running after 30 s
 * (a `serve` that should have refused to start) is killed: its code is null.
 */
export async function runCli(args: string[], env: NodeJS.ProcessEnv, cwd = packageRoot): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], {
      cwd,
      env,
      encoding: 'utf8',
      timeout: 30_000,
      killSignal: 'SIGKILL',
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as ExecFileException & Omit<CliResult, 'code'>;
    if (typeof code === 'string') throw error; // it did not start, or wrote too much
    return { code: code ?? null, stdout, stderr };
  }
}

/** Runs `fib-auth ARGS` (see runCli), asserts that it exits 0, and resolves with its standard output. */
export async function fibAuth(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const { code, stdout, stderr } = await runCli(args, env);
  assert.equal(code, 0, `fib-auth ${args.join(' ')} exited ${code}: ${stderr}`);
  return stdout;
}

/** Creates a resource-server client with the CLI; its secret is the last line of standard output. */
export async function addClient(env: NodeJS.ProcessEnv, id = `rs-${randomUUID().slice(0, 8)}`) {
  const lines = (await fibAuth(['clients', 'add', '--id', id], env)).trimEnd().split('\n');
  return { clientId: id, clientSecret: lines[lines.length - 1] };
}
