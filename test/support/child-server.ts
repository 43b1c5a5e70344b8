import { TEST_ISSUER } from './api.js';
import { CLI } from './cli.js';
import { startProcess, type StartedProcess } from './processes.js';

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
 * it listens. It serves from one process (WORKERS=1) unless `env` sets WORKERS: a worker per core
 * would compile the contract once more per core, and only the suites about workers need them.
 * Its management listener takes a free port unless `env` names one, so that servers of tests
 * running side by side do not meet on the default port. It names TEST_ISSUER as its issuer
 * unless `env` sets ISSUER.
 */
export async function serveChild(env: NodeJS.ProcessEnv): Promise<ChildServer> {
  const child = await startProcess(process.execPath, [CLI, 'serve'], {
    env: { WORKERS: '1', MANAGEMENT_PORT: '0', ISSUER: TEST_ISSUER, ...env },
    ready: LISTENING,
  });
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
