import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { packageRoot } from '../../src/package-root.js';

/** The package's bin as built by `npm run build`, which `npm test` runs first. */
export const CLI = join(packageRoot, JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).bin['fib-auth']);

export interface ChildServer {
  url: string;
  pid: number;
  /** Every line the server wrote on standard output. */
  lines: string[];
  /** Sends the signal (SIGTERM by default); resolves with the exit code, null when the signal killed it. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs `fib-auth serve` as a child process and resolves once it listens. */
export async function serveChild(env: NodeJS.ProcessEnv): Promise<ChildServer> {
  const child = spawn(process.execPath, [CLI, 'serve'], { cwd: packageRoot, env, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${lines.join('\n')}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      const entry = JSON.parse(line);
      if (entry.msg === 'fib-auth listening') resolve(entry.port);
    });
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { url: `http://127.0.0.1:${port}`, pid: child.pid!, lines, stop: (signal = 'SIGTERM') => (child.kill(signal), exited) };
}
