import { Pool } from 'undici';
import { ProcessSampler, type ProcessUsage } from './process-usage.js';

export interface LoadRequest {
  method: 'GET' | 'POST' | 'PATCH';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface LoadOptions {
  concurrency: number;
  seconds: number;
  /** Reuse the requests from the start when they run out (sign-in); otherwise the run ends with them. */
  cycle?: boolean;
  /** The process answering, whose CPU and memory are sampled during the run. */
  pid?: number;
}

export interface LoadResult {
  concurrency: number;
  requests: number;
  seconds: number;
  rps: number;
  /** Answers by HTTP status, and `error` for requests that got none. */
  statuses: Record<string, number>;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  server?: ProcessUsage;
  /** CPU cores this process (the load generator) used meanwhile. */
  loadGeneratorCores: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * Closed-loop load: `concurrency` keep-alive connections, each with one worker that sends the
 * next unused request as soon as its previous answer arrived. Every request is used once
 * (a logout token can succeed only once), so the run ends after `seconds` or with the requests.
 */
export async function load(origin: string, requests: readonly LoadRequest[], options: LoadOptions): Promise<LoadResult> {
  const pool = new Pool(origin, { connections: options.concurrency, pipelining: 1 });
  const latencies = new Float64Array(options.cycle ? 1 << 22 : requests.length);
  const statuses: Record<string, number> = {};
  let next = 0;
  let done = 0;
  const sampler = options.pid === undefined ? undefined : new ProcessSampler(options.pid);
  const cpuAtStart = process.cpuUsage();
  const started = performance.now();
  const deadline = started + options.seconds * 1000;

  async function worker() {
    while (performance.now() < deadline && (options.cycle ? done < latencies.length : next < requests.length)) {
      const request = requests[next++ % requests.length];
      const sent = performance.now();
      let status: string;
      try {
        const answer = await pool.request({ origin, ...request });
        await answer.body.dump();
        status = String(answer.statusCode);
      } catch {
        status = 'error';
      }
      latencies[done++] = performance.now() - sent;
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  }

  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  const server = sampler?.stop();
  const cpu = process.cpuUsage(cpuAtStart);
  await pool.close();
  const sorted = latencies.subarray(0, done).sort();
  return {
    concurrency: options.concurrency,
    requests: done,
    seconds: round(seconds),
    rps: Math.round(done / seconds),
    statuses,
    latencyMs: {
      p50: round(percentile(sorted, 50)),
      p90: round(percentile(sorted, 90)),
      p99: round(percentile(sorted, 99)),
      max: round(sorted[done - 1] ?? NaN),
    },
    server,
    loadGeneratorCores: round((cpu.user + cpu.system) / 1e6 / seconds),
  };
}
