/**
 * The table and the chart of one run's results. `node --import tsx bench/report.ts FILE`
 * redraws them from a results file (the newest in bench/results/ when FILE is omitted).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../src/package-root.js';
import type { CeilingSample } from './ceiling.js';
import { renderChart } from './chart.js';
import type { LoadResult } from './load.js';
import type { ResourceServerResults } from './resource-server.js';

export interface GrowthPoint {
  sessions: number;
  logouts: number;
  p50Ms: number;
  p99Ms: number;
  rps: number;
  bytesPerSession: number;
  fillSeconds: number;
}

export interface Results {
  date: string;
  /** One-minute load averages: above 0 when something else ran on the machine. */
  machine: { cores: number; cpu: string; node: string; loadAverageAtStart: number; loadAverageAtEnd?: number };
  settings: { secondsPerRun: number; runs: number; serverLogLevel: string; tokenCharacters: number; users: number };
  ceiling: CeilingSample[];
  /** By concurrency, the runs of each target. */
  logout: Record<number, { koa: LoadResult[]; prism: LoadResult[]; server: LoadResult[] }>;
  signIn: LoadResult[];
  refresh: LoadResult[];
  rss: { atRestMiB: number; underLoadMiB: number };
  growth: { sqlite: GrowthPoint[]; postgres: GrowthPoint[] | { skipped: string } };
  /** Absent from the results of runs before the resource-server library. */
  resourceServer?: ResourceServerResults;
  benchSeconds: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const ratio = (value: number) => Math.round(value * 100) / 100;

export interface LogoutSummary {
  concurrency: number;
  koa: number;
  prism: number;
  server: number;
  p50Ms: number;
  p99Ms: number;
  cores: number;
  /** CPU time of the server (every thread) per logout. */
  cpuMicroseconds: number;
  loadGeneratorCores: number;
  /** Server logouts per second ÷ (single-core verification ceiling × cores the server used). */
  vsCeiling: number;
  vsKoa: number;
  vsPrism: number;
}

export interface Target {
  goal: string;
  value: string;
  met: boolean;
}

/** Medians over the runs, and the ratios the issue asks for. */
export function summarize(r: Results) {
  const nodeCrypto = median(r.ceiling.map((c) => c.nodeCryptoPerSecond));
  const jose = median(r.ceiling.map((c) => c.josePerSecond));
  const joseCores = median(r.ceiling.map((c) => c.joseCores));
  // The fastest verifier measured, per core: the bar the server is held to.
  const perCore = Math.max(nodeCrypto, jose / joseCores);
  const logout: LogoutSummary[] = Object.entries(r.logout).map(([concurrency, runs]) => {
    const server = median(runs.server.map((x) => x.rps));
    const cores = median(runs.server.map((x) => x.server!.cores));
    const koa = median(runs.koa.map((x) => x.rps));
    const prism = median(runs.prism.map((x) => x.rps));
    return {
      concurrency: Number(concurrency),
      koa,
      prism,
      server,
      p50Ms: median(runs.server.map((x) => x.latencyMs.p50)),
      p99Ms: median(runs.server.map((x) => x.latencyMs.p99)),
      cores,
      cpuMicroseconds: median(runs.server.map((x) => Math.round((x.server!.cores * 1e6) / x.rps))),
      loadGeneratorCores: median(runs.server.map((x) => x.loadGeneratorCores)),
      vsCeiling: ratio(server / (perCore * cores)),
      vsKoa: ratio(server / koa),
      vsPrism: ratio(server / prism),
    };
  });
  const of = (runs: LoadResult[]) => ({
    rps: median(runs.map((x) => x.rps)),
    p50Ms: median(runs.map((x) => x.latencyMs.p50)),
    p99Ms: median(runs.map((x) => x.latencyMs.p99)),
    cores: median(runs.map((x) => x.server!.cores)),
  });
  const busiest = logout[logout.length - 1];
  const growthTargets = (['sqlite', 'postgres'] as const).flatMap((backend) => {
    const points = r.growth[backend];
    if (!Array.isArray(points) || points.length === 0) return [];
    const growth = points[points.length - 1].p50Ms / points[0].p50Ms;
    return [
      {
        goal: `${backend === 'sqlite' ? 'SQLite' : 'PostgreSQL'}: median at ${points[points.length - 1].sessions.toExponential(0)} sessions ≤ 1.2 × at ${points[0].sessions.toExponential(0)}`,
        value: `× ${ratio(growth)}`,
        met: growth <= 1.2,
      },
    ];
  });
  const rs = r.resourceServer && {
    propagation: {
      probes: r.resourceServer.propagation.reduce((sum, run) => sum + run.probes, 0),
      p50Ms: median(r.resourceServer.propagation.map((run) => run.p50Ms)),
      p99Ms: median(r.resourceServer.propagation.map((run) => run.p99Ms)),
      maxMs: Math.max(...r.resourceServer.propagation.map((run) => run.maxMs)),
      loadRps: median(r.resourceServer.propagation.map((run) => run.load.rps)),
    },
    verify: {
      library: median(r.resourceServer.verify.map((v) => v.libraryPerSecond)),
      jose: median(r.resourceServer.verify.map((v) => v.josePerSecond)),
      ratio: ratio(median(r.resourceServer.verify.map((v) => v.libraryPerSecond / v.josePerSecond))),
    },
    introspection: of(r.resourceServer.introspection),
  };
  const resourceServerTargets: Target[] = rs
    ? [
        {
          goal: 'library `verify` ≥ 0.8 × jose `jwtVerify`',
          value: `× ${rs.verify.ratio}`,
          met: rs.verify.ratio >= 0.8,
        },
        {
          goal: 'logout reaches a resource server under load: p99 ≤ 1 s',
          value: `${rs.propagation.p99Ms} ms`,
          met: rs.propagation.p99Ms <= 1000,
        },
      ]
    : [];
  const targets: Target[] = [
    {
      goal: `logout at c=${busiest.concurrency} ≥ 0.8 × ceiling × cores used`,
      value: `× ${busiest.vsCeiling}`,
      met: busiest.vsCeiling >= 0.8,
    },
    { goal: `logout at c=${busiest.concurrency} ≥ 5 × Prism`, value: `× ${busiest.vsPrism}`, met: busiest.vsPrism >= 5 },
    { goal: `p99 at c=${busiest.concurrency} < 10 ms`, value: `${busiest.p99Ms} ms`, met: busiest.p99Ms < 10 },
    ...growthTargets,
    ...resourceServerTargets,
  ];
  return {
    ceiling: { nodeCrypto, jose, joseCores, perCore: Math.round(perCore) },
    logout,
    signIn: of(r.signIn),
    refresh: of(r.refresh),
    resourceServer: rs,
    targets,
  };
}

export type Summary = ReturnType<typeof summarize>;

const row = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;

export function markdownTable(r: Results): string {
  const s = summarize(r);
  const columns = s.logout.map((l) => `c=${l.concurrency}`);
  const line = (label: string, value: (l: LogoutSummary) => string | number) => row([label, ...s.logout.map(value)]);
  const growthRows = (['sqlite', 'postgres'] as const).flatMap((backend) => {
    const points = r.growth[backend];
    const name = backend === 'sqlite' ? 'SQLite' : 'PostgreSQL';
    if (!Array.isArray(points)) return [row([name, `skipped: ${points.skipped}`, '', '', '', ''])];
    return points.map((p) => row([name, p.sessions.toLocaleString('en'), p.p50Ms, p.p99Ms, p.rps, p.bytesPerSession]));
  });
  return [
    `Run of ${r.date.slice(0, 16).replace('T', ' ')} UTC: ${r.machine.cores} cores (${r.machine.cpu}), Node ${r.machine.node}, ` +
      `load average ${r.machine.loadAverageAtStart.toFixed(1)} at the start and ${r.machine.loadAverageAtEnd?.toFixed(1)} at the end, ` +
      `${r.settings.runs} runs of ${r.settings.secondsPerRun} s per cell (medians), server LOG_LEVEL=${r.settings.serverLogLevel}, ` +
      `tokens of ${r.settings.tokenCharacters} characters; \`npm run bench\` took ${r.benchSeconds} s.`,
    '',
    `Ceiling, per core: node:crypto \`verify\` ${s.ceiling.nodeCrypto}/s; jose \`jwtVerify\` (WebCrypto key) ${s.ceiling.jose}/s on ${s.ceiling.joseCores} cores. ` +
      `The ratio below uses the faster per core, ${s.ceiling.perCore}/s (${Math.round(1e6 / s.ceiling.perCore)} µs per verification).`,
    '',
    row(['logout', ...columns]),
    row(['---', ...columns.map(() => '---:')]),
    line('bare koa, req/s', (l) => l.koa),
    line('Prism mock, req/s', (l) => l.prism),
    line('**fib-auth, logouts/s**', (l) => `**${l.server}**`),
    line('fib-auth p50 / p99, ms', (l) => `${l.p50Ms} / ${l.p99Ms}`),
    line('fib-auth CPU, cores', (l) => l.cores),
    line('fib-auth CPU per logout, µs', (l) => l.cpuMicroseconds),
    line('load generator CPU, cores', (l) => l.loadGeneratorCores),
    line('fib-auth ÷ (ceiling × cores)', (l) => l.vsCeiling),
    line('fib-auth ÷ bare koa', (l) => l.vsKoa),
    line('fib-auth ÷ Prism', (l) => l.vsPrism),
    '',
    row(['other operations at c=50', 'req/s', 'p50 ms', 'p99 ms', 'cores']),
    row(['---', '---:', '---:', '---:', '---:']),
    row(['sign-in', s.signIn.rps, s.signIn.p50Ms, s.signIn.p99Ms, s.signIn.cores]),
    row(['refresh', s.refresh.rps, s.refresh.p50Ms, s.refresh.p99Ms, s.refresh.cores]),
    '',
    row(['growth (logout at c=10)', 'sessions', 'p50 ms', 'p99 ms', 'logouts/s', 'bytes/session']),
    row(['---', '---:', '---:', '---:', '---:', '---:']),
    ...growthRows,
    '',
    ...(s.resourceServer
      ? [
          row(['resource servers', 'value']),
          row(['---', '---:']),
          row([
            `logout → resource server refuses, under ${s.resourceServer.propagation.loadRps} other logouts/s: p50 / p99 / max, ms (${s.resourceServer.propagation.probes} probes)`,
            `${s.resourceServer.propagation.p50Ms} / ${s.resourceServer.propagation.p99Ms} / ${s.resourceServer.propagation.maxMs}`,
          ]),
          row(['library `verify`, per second', s.resourceServer.verify.library]),
          row(['jose `jwtVerify` of the same token, per second', s.resourceServer.verify.jose]),
          row(['library ÷ jose', s.resourceServer.verify.ratio]),
          row([
            'introspection at c=50, req/s (p50 / p99 ms)',
            `${s.resourceServer.introspection.rps} (${s.resourceServer.introspection.p50Ms} / ${s.resourceServer.introspection.p99Ms})`,
          ]),
          '',
        ]
      : []),
    `Server memory (RSS): ${r.rss.atRestMiB} MiB at rest after start, ${r.rss.underLoadMiB} MiB at most under load.`,
    '',
    row(['target', 'measured', 'met']),
    row(['---', '---:', ':-:']),
    ...s.targets.map((t) => row([t.goal, t.value, t.met ? 'yes' : '**no**'])),
  ].join('\n');
}

export function printReport(r: Results): void {
  console.log(`\n${markdownTable(r)}\n`);
}

const TABLE_START = '<!-- bench:table:start -->';
const TABLE_END = '<!-- bench:table:end -->';

/** Writes bench/chart.svg and replaces the table in BENCHMARKS.md. */
export function writeReport(r: Results): void {
  writeFileSync(join(packageRoot, 'bench/chart.svg'), renderChart(r, summarize(r)));
  const path = join(packageRoot, 'BENCHMARKS.md');
  const text = readFileSync(path, 'utf8');
  const start = text.indexOf(TABLE_START);
  const end = text.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error(`BENCHMARKS.md needs the markers ${TABLE_START} and ${TABLE_END}`);
  writeFileSync(path, `${text.slice(0, start + TABLE_START.length)}\n${markdownTable(r)}\n${text.slice(end)}`);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dir = join(packageRoot, 'bench/results');
  const file =
    process.argv[2] ??
    join(
      dir,
      readdirSync(dir)
        .filter((name) => name.endsWith('.json'))
        .sort()
        .at(-1)!,
    );
  writeReport(JSON.parse(readFileSync(file, 'utf8')) as Results);
  console.log(`redrew bench/chart.svg and the table in BENCHMARKS.md from ${file}`);
}
