import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/package-root.js';
import { startProcess, type StartedProcess } from './processes.js';

/** The package's bin in the checkout at `root`, as built by `npm run build` (which `npm test` runs first). */
export function binOf(root = packageRoot): string {
  const { bin } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  return join(root, bin['fib-auth']);
}

export const CLI = binOf();

export interface ChildServer {
  url: string;
  /** Where its metrics are served. */
  managementUrl: string;
  pid: number;
  /** Every line the server wrote so far. */
  readonly lines: string[];
  stop: StartedProcess['stop'];
}

/** The log line the server writes once it listens, whole, with its port. */
const LISTENING = /^(\{.*"msg":"fib-auth listening".*\})\n/m;

/**
 * Runs `fib-auth serve` as a child process with exactly the environment `env`, and resolves once
 * it listens. Its management listener takes a free port unless `env` names one, so that servers
 * of tests running side by side do not meet on the default port.
 */
export async function serveChild(env: NodeJS.ProcessEnv): Promise<ChildServer> {
  const child = await startProcess(process.execPath, [CLI, 'serve'], { env: { MANAGEMENT_PORT: '0', ...env }, ready: LISTENING });
  const { port, managementPort } = JSON.parse(child.readyMatch![1]) as { port: number; managementPort: number };
  return {
    url: `http://127.0.0.1:${port}`,
    managementUrl: `http://127.0.0.1:${managementPort}`,
    pid: child.pid,
    get lines() {
      return child.output().split('\n');
    },
    stop: child.stop,
  };
}
