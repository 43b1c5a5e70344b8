import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** Linux counts process CPU time in clock ticks of 1/100 s (`getconf CLK_TCK`). */
const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system, every thread) the process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND; // utime, stime
}

/** Resident memory of the process, in MiB. */
export function rssMiB(pid: number): number {
  const kib = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Math.round(Number(kib) / 1024);
}

export interface ProcessUsage {
  /** CPU seconds per wall-clock second: 1 is one core busy all the time. */
  cores: number;
  rssMaxMiB: number;
}

/** Samples a process's memory every 100 ms and its CPU time over the whole interval. */
export class ProcessSampler {
  private readonly startedAt = performance.now();
  private readonly cpuAtStart: number;
  private rssMax: number;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    this.cpuAtStart = cpuSeconds(pid);
    this.rssMax = rssMiB(pid);
    this.timer = setInterval(() => (this.rssMax = Math.max(this.rssMax, rssMiB(pid))), 100);
  }

  stop(): ProcessUsage {
    clearInterval(this.timer);
    const wall = (performance.now() - this.startedAt) / 1000;
    const cores = (cpuSeconds(this.pid) - this.cpuAtStart) / wall;
    return { cores: Math.round(cores * 100) / 100, rssMaxMiB: Math.max(this.rssMax, rssMiB(this.pid)) };
  }
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface Service {
  name: string;
  origin: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts a server process in a process group of its own, waits until it answers HTTP on
 * `port`, and stops the whole group (SIGTERM, then SIGKILL after 5 s). Its standard output
 * goes nowhere: logs are written, as in production, but nobody reads them.
 */
export async function startService(
  name: string,
  command: string,
  args: string[],
  port: number,
  env: NodeJS.ProcessEnv = {},
): Promise<Service> {
  const child: ChildProcess = spawn(command, args, {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const origin = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}: ${stderr.trim()}`);
    if (Date.now() > deadline) throw new Error(`${name} did not answer on ${origin} within 60 s: ${stderr.trim()}`);
    try {
      await fetch(origin, { signal: AbortSignal.timeout(1000) });
      break;
    } catch {
      await sleep(100);
    }
  }
  const pid = child.pid!;
  return {
    name,
    origin,
    pid,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      process.kill(-pid, 'SIGTERM');
      const killer = setTimeout(() => process.kill(-pid, 'SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    },
  };
}
