import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { packageRoot } from '../../src/package-root.js';

export interface StartedProcess {
  /** Everything the process wrote so far, stdout and stderr interleaved. */
  output(): string;
  /** The match of `ready` in the output. */
  readyMatch: RegExpMatchArray;
  stop(): Promise<void>;
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
 * stops what it started (npm starts a shell, which starts Prism), and resolves once its output
 * matches `ready`. The group is killed when this process exits, whatever happens.
 */
export async function startProcess(
  command: string,
  args: string[],
  { env = {}, ready, timeoutMs = 60_000 }: { env?: NodeJS.ProcessEnv; ready: RegExp; timeoutMs?: number },
): Promise<StartedProcess> {
  const child = spawn(command, args, {
    cwd: packageRoot,
    env: { ...process.env, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
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
  const exited = once(child, 'exit');

  let output = '';
  const readyMatch = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => fail(`did not get ready within ${timeoutMs} ms`), timeoutMs);
    const fail = (why: string) => {
      clearTimeout(timer);
      killGroup('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} ${why}:\n${output}`));
    };
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const match = output.match(ready);
      if (match) {
        clearTimeout(timer);
        resolve(match);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => fail(`exited with code ${code}`));
  });

  return {
    output: () => output,
    readyMatch,
    async stop() {
      killGroup('SIGTERM');
      const forced = setTimeout(() => killGroup('SIGKILL'), 5_000);
      await exited;
      clearTimeout(forced);
      process.removeListener('exit', killOnExit);
    },
  };
}
