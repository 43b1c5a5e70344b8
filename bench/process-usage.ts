import { readdirSync, readFileSync } from 'node:fs';

/** Linux counts process CPU time in clock ticks of 1/100 s (`getconf CLK_TCK`). */
const TICKS_PER_SECOND = 100;

/** The file's text, or undefined once the process (or thread) it describes has exited. */
function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * The process and all its descendants, as the kernel lists each thread's children; read anew
 * each time, since a server's workers may start, or be restarted, at any moment.
 */
export function processTree(pid: number): number[] {
  const tree: number[] = [];
  const pending = [pid];
  while (pending.length > 0) {
    const next = pending.pop()!;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${next}/task`);
    } catch {
      continue; // exited
    }
    tree.push(next);
    for (const task of tasks) {
      const children = readProc(`/proc/${next}/task/${task}/children`)?.trim();
      if (children) pending.push(...children.split(' ').map(Number));
    }
  }
  return tree;
}

/** CPU seconds (user + system, every thread) the process has used so far; undefined once it exited. */
function cpuSeconds(pid: number): number | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND; // utime, stime
}

/** Resident memory of one process in KiB, 0 once it exited. */
const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readProc(`/proc/${pid}/status`) ?? '')?.[1] ?? 0);

/** Resident memory of the process and its descendants, in MiB. */
export function rssMiB(pid: number): number {
  return Math.round(processTree(pid).reduce((kib, member) => kib + rssKiB(member), 0) / 1024);
}

export interface ProcessUsage {
  /** CPU seconds per wall-clock second of the process tree: 1 is one core busy all the time. */
  cores: number;
  /** The most resident memory the tree held at once. */
  rssMaxMiB: number;
  /** The most processes the tree had at once (a server's primary and its workers). Absent from older results. */
  processes?: number;
}

/**
 * Samples a process tree every 100 ms: its members, their memory (summed), and their CPU
 * time over the whole interval (summed; a member first seen during the interval started
 * during it, so all of its CPU time counts; one that exited counts up to its last sample).
 */
export class ProcessSampler {
  private readonly startedAt = performance.now();
  /** CPU seconds of each member when the interval started (0 for those started later), and at the latest sample. */
  private readonly cpu = new Map<number, { atStart: number; latest: number }>();
  private rssMax = 0;
  private processesMax = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    for (const member of processTree(pid)) {
      const seconds = cpuSeconds(member);
      if (seconds !== undefined) this.cpu.set(member, { atStart: seconds, latest: seconds });
    }
    this.sample();
    this.timer = setInterval(() => this.sample(), 100);
  }

  private sample(): void {
    const tree = processTree(this.pid);
    let kib = 0;
    for (const member of tree) {
      const seconds = cpuSeconds(member);
      if (seconds === undefined) continue;
      const known = this.cpu.get(member);
      if (known) known.latest = seconds;
      else this.cpu.set(member, { atStart: 0, latest: seconds });
      kib += rssKiB(member);
    }
    this.rssMax = Math.max(this.rssMax, Math.round(kib / 1024));
    this.processesMax = Math.max(this.processesMax, tree.length);
  }

  stop(): ProcessUsage {
    clearInterval(this.timer);
    this.sample();
    const wall = (performance.now() - this.startedAt) / 1000;
    let used = 0;
    for (const { atStart, latest } of this.cpu.values()) used += latest - atStart;
    return { cores: Math.round((used / wall) * 100) / 100, rssMaxMiB: this.rssMax, processes: this.processesMax };
  }
}
