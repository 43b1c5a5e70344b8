import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { packageRoot } from '../../src/package-root.js';

export interface StartedProcess {
  pid: number;
  /** Everything the process wrote so far, stdout and stderr interleaved (stderr alone when `quiet`). */
  output(): string;
  /** The match of `ready` in the output, when `ready` is a pattern. */
  readyMatch: RegExpMatchArray | undefined;
  /**
   * Sends `signal` (SIGTERM by default) to the process group, and SIGKILL if it still runs 5 s
   * later; resolves with the exit code, null when a signal ended it.
   */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

export interface StartOptions {
  /** The whole environment of the process: this one's by default. */
  env?: NodeJS.ProcessEnv;
  /** Ready once the output matches this pattern, or once this URL answers HTTP at all. */
  ready: RegExp | URL;
  timeoutMs?: number;
  /** Standard output goes nowhere: a server under load writes a log line per request that nobody reads. */
  quiet?: boolean;
}

/** The process and every process it started, and theirs: a cluster's primary and its workers. */
export function processTree(pid: number): number[] {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((task) =>
    readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
  );
  return [pid, ...children.flatMap(processTree)];
}

/** A port that was free a moment ago, for a process that takes its port as an argument. */
export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Starts a command in the package folder, in its own process group so that stopping it also
 * stops what it started (npm starts a shell, which starts Prism), and resolves once it is
 * ready. The group is killed when this process exits, whatever happens.
 */
export async function startProcess(
  command: string,
  args: string[],
  { env = process.env, ready, timeoutMs = 60_000, quiet = false }: StartOptions,
): Promise<StartedProcess> {
  const child = spawn(command, args, {
    cwd: packageRoot,
    env,
    detached: true,
    stdio: ['ignore', quiet ? 'ignore' : 'pipe', 'pipe'],
  });
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
  };
  const killOnExit = () => killGroup('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));

  let output = '';
  let readyMatch: RegExpMatchArray | undefined;
  await new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!error) return resolve();
      killGroup('SIGKILL');
      reject(error);
    };
    const fail = (why: string) => settle(new Error(`${command} ${args.join(' ')} ${why}:\n${output}`));
    const timer = setTimeout(() => fail(`did not get ready within ${timeoutMs} ms`), timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      readyMatch ??= ready instanceof RegExp ? (output.match(ready) ?? undefined) : undefined;
      if (readyMatch) settle();
    };
    child.stdout?.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', (error) => fail(`failed: ${error.message}`));
    void exited.then((code) => fail(`exited with code ${code}`));
    if (ready instanceof URL) {
      void (async () => {
        while (!settled) {
          try {
            await fetch(ready, { signal: AbortSignal.timeout(1000) });
            return settle();
          } catch {
            await sleep(100);
          }
        }
      })();
    }
  });

  return {
    pid: child.pid!,
    output: () => output,
    readyMatch,
    async stop(signal = 'SIGTERM') {
      killGroup(signal);
      const forced = setTimeout(() => killGroup('SIGKILL'), 5_000);
      const code = await exited;
      clearTimeout(forced);
      process.removeListener('exit', killOnExit);
      return code;
    },
  };
}
