import { readFileSync } from 'node:fs';

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
