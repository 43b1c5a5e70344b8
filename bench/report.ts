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
import type { SharedSignalsResults } from './shared-signals.js';

export interface GrowthPoint {
  sessions: number;
  logouts: number;
  p50Ms: number;
  p99Ms: number;
  rps: number;
  bytesPerSession: number;
  fillSeconds: number;
  /** The server's resident memory at most during the size's rounds; absent from older results. */
  rssMiB?: number;
}

export interface Results {
  date: string;
  /** One-minute load averages: above 0 when something else ran on the machine. */
  machine: { cores: number; cpu: string; node: string; loadAverageAtStart: number; loadAverageAtEnd?: number };
  settings: {
    secondsPerRun: number;
    runs: number;
    serverLogLevel: string;
    tokenCharacters: number;
    users: number;
    /** WORKERS as the bench passed it to the server; absent when unset (the server's default). */
    workers?: string;
    /** The most processes the server's tree had during its runs (its primary and workers); absent from older results. */
    serverProcesses?: number;
  };
  ceiling: CeilingSample[];
  /** By concurrency, the runs of each target; `peer` (oidc-provider's revocation) is absent from older results. */
  logout: Record<number, { koa: LoadResult[]; prism: LoadResult[]; peer?: LoadResult[]; server: LoadResult[] }>;
  signIn: LoadResult[];
  refresh: LoadResult[];
  rss: { atRestMiB: number; underLoadMiB: number };
  growth: { sqlite: GrowthPoint[]; postgres: GrowthPoint[] | { skipped: string } };
  /** Absent from the results of runs before the resource-server library. */
  resourceServer?: ResourceServerResults;
  /**
   * Logout against oidc-provider's revocation on its PostgreSQL adapter, both on the same
   * PostgreSQL, in interleaved runs at one concurrency; absent from older results.
   */
  postgresPeer?: { concurrency: number; server: LoadResult[]; peer: LoadResult[] } | { skipped: string };
  /** SET delivery and its cost to logout (issue 22); absent from older results. */
  sharedSignals?: SharedSignalsResults;
  benchSeconds: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const ratio = (value: number) => Math.round(value * 100) / 100;
/** A value missing from an older results file shows as a dash. */
const shown = (value: string | number | undefined) => (value === undefined || Number.isNaN(value) ? '—' : value);

/** Medians over a target's runs. */
function runsOf(runs: LoadResult[]) {
  return {
    rps: median(runs.map((x) => x.rps)),
    p50Ms: median(runs.map((x) => x.latencyMs.p50)),
    p99Ms: median(runs.map((x) => x.latencyMs.p99)),
    cores: median(runs.map((x) => x.server!.cores)),
    /** CPU time of the target's process tree (every thread) per request. */
    cpuMicroseconds: median(runs.map((x) => Math.round((x.server!.cores * 1e6) / x.rps))),
    loadGeneratorCores: median(runs.map((x) => x.loadGeneratorCores)),
  };
}

export type RunsSummary = ReturnType<typeof runsOf>;

export interface LogoutSummary {
  concurrency: number;
  koa: number;
  /** Bare Koa's CPU per request (its process), µs; undefined in results without it. */
  koaCpuMicroseconds: number | undefined;
  /**
   * The stack's floor: every core doing nothing but one node:crypto verification and bare
   * Koa's work per logout, in logouts/s.
   */
  floor: number | undefined;
  vsFloor: number | undefined;
  prism: number;
  server: RunsSummary;
  /** oidc-provider's revocation; absent from older results. */
  peer?: RunsSummary;
  /** Server logouts per second ÷ the single-core node:crypto verify rate. */
  vsVerify: number;
  vsKoa: number;
  vsPrism: number;
  vsPeer?: number;
}

export interface Target {
  goal: string;
  value: string;
  /** Undefined when this run did not measure it, or for a figure reported here and judged elsewhere. */
  met?: boolean;
}

/** Medians over the runs, and the ratios the issue asks for. */
export function summarize(r: Results) {
  const nodeCrypto = median(r.ceiling.map((c) => c.nodeCryptoPerSecond));
  const jose = median(r.ceiling.map((c) => c.josePerSecond));
  const joseCores = median(r.ceiling.map((c) => c.joseCores));
  const logout: LogoutSummary[] = Object.entries(r.logout).map(([concurrency, runs]) => {
    const server = runsOf(runs.server);
    const peer = runs.peer?.length ? runsOf(runs.peer) : undefined;
    const koa = median(runs.koa.map((x) => x.rps));
    const prism = median(runs.prism.map((x) => x.rps));
    const koaCpuMicroseconds = runs.koa.every((x) => x.server) ? runsOf(runs.koa).cpuMicroseconds : undefined;
    const floor = koaCpuMicroseconds && Math.round((r.machine.cores * 1e6) / (1e6 / nodeCrypto + koaCpuMicroseconds));
    return {
      concurrency: Number(concurrency),
      koa,
      koaCpuMicroseconds,
      floor,
      vsFloor: floor && ratio(server.rps / floor),
      prism,
      server,
      peer,
      vsVerify: ratio(server.rps / nodeCrypto),
      vsKoa: ratio(server.rps / koa),
      vsPrism: ratio(server.rps / prism),
      vsPeer: peer && ratio(server.rps / peer.rps),
    };
  });
  const busiest = logout[logout.length - 1];
  const single = logout.find((l) => l.concurrency === 1);
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
    introspection: runsOf(r.resourceServer.introspection),
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
  const signIn = runsOf(r.signIn);
  const refresh = runsOf(r.refresh);
  const c = busiest.concurrency;
  const postgresPeer =
    r.postgresPeer && 'server' in r.postgresPeer
      ? (({ concurrency, server, peer }) => {
          const [ours, theirs] = [runsOf(server), runsOf(peer)];
          return { concurrency, server: ours, peer: theirs, vsPeer: ratio(ours.rps / theirs.rps) };
        })(r.postgresPeer)
      : undefined;
  const inMemoryPeer = busiest.peer;
  const ssf = r.sharedSignals && sharedSignalsSummary(r.sharedSignals);
  const sharedSignalsTargets: Target[] = ssf
    ? (['poll', 'push'] as const).map((method) => ({
        goal: `(issue 22) a logout's SET reaches a ${method} receiver under ${ssf.paced.ratePerSecond} logouts/s: p99 ≤ 1 s`,
        value: `${ssf.paced.delivery[method].p99Ms} ms`,
        met: ssf.paced.delivery[method].p99Ms <= 1000,
      }))
    : [];
  // Issue 25's targets, beside issue 14's above.
  const tailTargets: Target[] = [
    {
      goal: `(issue 25) SQLite, c=${c}: p99 ≤ 15 ms and ≤ 2 × p50`,
      value: `${busiest.server.p99Ms} ms, × ${ratio(busiest.server.p99Ms / busiest.server.p50Ms)}`,
      met: busiest.server.p99Ms <= 15 && busiest.server.p99Ms <= 2 * busiest.server.p50Ms,
    },
    {
      goal: `(issue 25) SQLite, c=${c}: logout ≥ 0.85 × oidc-provider on its in-memory adapter`,
      value: busiest.vsPeer === undefined ? '— (no peer in this run)' : `× ${busiest.vsPeer}`,
      met: inMemoryPeer && busiest.server.rps / inMemoryPeer.rps >= 0.85,
    },
    {
      goal: `(issue 25) SQLite, c=${c}: logout ≥ 0.6 × the floor (cores ÷ one verify + bare Koa per request)`,
      value: busiest.vsFloor === undefined ? '— (no floor in these results)' : `× ${busiest.vsFloor}`,
      met: busiest.vsFloor === undefined ? undefined : busiest.vsFloor >= 0.6,
    },
    {
      goal: `(issue 25) PostgreSQL, c=${postgresPeer?.concurrency ?? c}: logout ≥ 1.5 × oidc-provider on its PostgreSQL adapter`,
      value: postgresPeer
        ? `× ${postgresPeer.vsPeer}`
        : `— (${r.postgresPeer && 'skipped' in r.postgresPeer ? `skipped: ${r.postgresPeer.skipped}` : 'not in these results'})`,
      met: postgresPeer && postgresPeer.vsPeer >= 1.5,
    },
  ];
  const targets: Target[] = [
    {
      goal: `logout at c=${c} ≥ 1.2 × oidc-provider's revocation`,
      value: busiest.vsPeer === undefined ? '— (no peer in this run)' : `× ${busiest.vsPeer}`,
      met: busiest.peer && busiest.server.rps / busiest.peer.rps >= 1.2,
    },
    { goal: `p99 at c=${c} ≤ 10 ms`, value: `${busiest.server.p99Ms} ms`, met: busiest.server.p99Ms <= 10 },
    ...(single ? [{ goal: 'p99 at c=1 ≤ 2 ms', value: `${single.server.p99Ms} ms`, met: single.server.p99Ms <= 2 }] : []),
    {
      goal: `logout at c=${c} ≥ 0.6 × one core's node:crypto Ed25519 verify of the same token`,
      value: `× ${busiest.vsVerify}`,
      met: busiest.server.rps / nodeCrypto >= 0.6,
    },
    ...growthTargets,
    ...(['sign-in', 'refresh'] as const).map((name) => {
      const of = name === 'sign-in' ? signIn : refresh;
      return {
        goal: `${name} at c=${c}, req/s (p50 / p99 ms): reported; "not slower than before" is judged by \`npm run bench:compare\``,
        value: `${of.rps} (${of.p50Ms} / ${of.p99Ms})`,
      };
    }),
    ...resourceServerTargets,
    ...sharedSignalsTargets,
    ...tailTargets,
  ];
  return {
    ceiling: { nodeCrypto, jose, joseCores },
    logout,
    postgresPeer,
    signIn,
    refresh,
    resourceServer: rs,
    targets,
  };
}

export type Summary = ReturnType<typeof summarize>;

const row = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;

export function markdownTable(r: Results): string {
  const s = summarize(r);
  const columns = s.logout.map((l) => `c=${l.concurrency}`);
  const line = (label: string, value: (l: LogoutSummary) => string | number | undefined) =>
    row([label, ...s.logout.map((l) => shown(value(l)))]);
  const growthRows = (['sqlite', 'postgres'] as const).flatMap((backend) => {
    const points = r.growth[backend];
    const name = backend === 'sqlite' ? 'SQLite' : 'PostgreSQL';
    if (!Array.isArray(points)) return [row([name, `skipped: ${points.skipped}`, '', '', '', '', ''])];
    return points.map((p) =>
      row([name, p.sessions.toLocaleString('en'), p.p50Ms, p.p99Ms, p.rps, p.bytesPerSession, shown(p.rssMiB)]),
    );
  });
  const operation = (name: string, of: RunsSummary) => row([name, of.rps, of.p50Ms, of.p99Ms, of.cores, of.cpuMicroseconds]);
  const workers = r.settings.workers === undefined ? "WORKERS unset (the server's default)" : `WORKERS=${r.settings.workers}`;
  return [
    `Run of ${r.date.slice(0, 16).replace('T', ' ')} UTC: ${r.machine.cores} cores (${r.machine.cpu}), Node ${r.machine.node}, ` +
      `load average ${r.machine.loadAverageAtStart.toFixed(1)} at the start and ${r.machine.loadAverageAtEnd?.toFixed(1)} at the end, ` +
      `${r.settings.runs} runs of ${r.settings.secondsPerRun} s per cell (medians), server LOG_LEVEL=${r.settings.serverLogLevel}, ` +
      `${workers}, server processes at most: ${shown(r.settings.serverProcesses)}, ` +
      `tokens of ${r.settings.tokenCharacters} characters; \`npm run bench\` took ${r.benchSeconds} s.`,
    '',
    `Ed25519 verification of the same token, per core: node:crypto \`verify\` ${s.ceiling.nodeCrypto}/s (${Math.round(1e6 / s.ceiling.nodeCrypto)} µs); ` +
      `jose \`jwtVerify\` (WebCrypto key) ${s.ceiling.jose}/s on ${s.ceiling.joseCores} cores.`,
    '',
    row(['logout', ...columns]),
    row(['---', ...columns.map(() => '---:')]),
    line('bare koa, req/s', (l) => l.koa),
    line('bare koa CPU per request, µs', (l) => l.koaCpuMicroseconds),
    line(`floor: ${r.machine.cores} cores ÷ (one verify + bare koa), logouts/s`, (l) => l.floor),
    line('Prism mock, req/s', (l) => l.prism),
    line('oidc-provider revocation (in-memory adapter), req/s', (l) => l.peer?.rps),
    line('oidc-provider p50 / p99, ms', (l) => l.peer && `${l.peer.p50Ms} / ${l.peer.p99Ms}`),
    line('oidc-provider CPU, cores', (l) => l.peer?.cores),
    line('oidc-provider CPU per revocation, µs', (l) => l.peer?.cpuMicroseconds),
    line('**fib-auth, logouts/s**', (l) => `**${l.server.rps}**`),
    line('fib-auth p50 / p99, ms', (l) => `${l.server.p50Ms} / ${l.server.p99Ms}`),
    line('fib-auth CPU, cores', (l) => l.server.cores),
    line('fib-auth CPU per logout, µs', (l) => l.server.cpuMicroseconds),
    line('load generator CPU, cores', (l) => l.server.loadGeneratorCores),
    line('**fib-auth ÷ oidc-provider (in memory)**', (l) => (l.vsPeer === undefined ? undefined : `**${l.vsPeer}**`)),
    line('**fib-auth ÷ floor**', (l) => (l.vsFloor === undefined ? undefined : `**${l.vsFloor}**`)),
    line(
      'fib-auth CPU per logout beyond one verify + bare koa, µs',
      (l) => l.koaCpuMicroseconds && Math.round(l.server.cpuMicroseconds - 1e6 / s.ceiling.nodeCrypto - l.koaCpuMicroseconds),
    ),
    line("fib-auth ÷ one core's node:crypto verify", (l) => l.vsVerify),
    line('fib-auth ÷ bare koa', (l) => l.vsKoa),
    line('fib-auth ÷ Prism', (l) => l.vsPrism),
    '',
    ...(s.postgresPeer
      ? [
          row([`on PostgreSQL, c=${s.postgresPeer.concurrency}`, 'req/s', 'p50 ms', 'p99 ms', 'cores', 'CPU µs per request']),
          row(['---', '---:', '---:', '---:', '---:', '---:']),
          operation('oidc-provider revocation (PostgreSQL adapter)', s.postgresPeer.peer),
          operation('**fib-auth logout**', s.postgresPeer.server),
          row(['**fib-auth ÷ oidc-provider**', `**${s.postgresPeer.vsPeer}**`, '', '', '', '']),
          '',
        ]
      : r.postgresPeer && 'skipped' in r.postgresPeer
        ? [`oidc-provider on PostgreSQL: skipped (${r.postgresPeer.skipped}).`, '']
        : []),
    row(['other operations at c=50', 'req/s', 'p50 ms', 'p99 ms', 'cores', 'CPU µs per request']),
    row(['---', '---:', '---:', '---:', '---:', '---:']),
    operation('sign-in', s.signIn),
    operation('refresh', s.refresh),
    '',
    row(['growth (logout at c=10)', 'sessions', 'p50 ms', 'p99 ms', 'logouts/s', 'bytes/session', 'server RSS MiB']),
    row(['---', '---:', '---:', '---:', '---:', '---:', '---:']),
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
    ...(r.sharedSignals ? [sharedSignalsTable(r.sharedSignals), ''] : []),
    `Server memory (RSS, all its processes): ${r.rss.atRestMiB} MiB at rest after start, ${r.rss.underLoadMiB} MiB at most under load.`,
    '',
    row(['target', 'measured', 'met']),
    row(['---', '---:', ':-:']),
    ...s.targets.map((t) => row([t.goal, t.value, t.met === undefined ? '—' : t.met ? 'yes' : '**no**'])),
  ].join('\n');
}

/** The medians and ratio of the Shared Signals runs. */
function sharedSignalsSummary(ssf: SharedSignalsResults) {
  const withoutStreams = median(ssf.throughput.without.map((run) => run.rps));
  const withStreams = median(ssf.throughput.with.map((run) => run.rps));
  return {
    withoutStreams,
    withStreams,
    ratio: Math.round((withStreams / withoutStreams) * 1000) / 1000,
    paced: { ...ssf.paced, achieved: median(ssf.paced.runs.map((run) => run.rps)) },
  };
}

/** The Shared Signals table: `npm run bench` prints it with the rest, `npm run bench:ssf` alone. */
export function sharedSignalsTable(ssf: SharedSignalsResults): string {
  const s = sharedSignalsSummary(ssf);
  const { poll, push } = s.paced.delivery;
  const { secondsPerRun, runs, concurrency } = ssf.settings;
  return [
    `Shared Signals (one server process, SQLite; load average ${ssf.loadAverage.atStart.toFixed(1)} at the start of this part and ` +
      `${ssf.loadAverage.atEnd.toFixed(1)} at its end; ${runs} runs of ${secondsPerRun} s each):`,
    '',
    row(['Shared Signals', 'value']),
    row(['---', '---:']),
    row([`logouts/s, closed loop at c=${concurrency}, without streams (median)`, s.withoutStreams]),
    row([`logouts/s, closed loop at c=${concurrency}, with one poll and one push stream open (median)`, s.withStreams]),
    row(['with ÷ without streams', s.ratio]),
    row([
      `paced load, logouts/s: target (${s.paced.rateBasis}) / achieved (median)`,
      `${s.paced.ratePerSecond} / ${s.paced.achieved}`,
    ]),
    row([
      `logout's 200 → SET arrives by poll under the paced load: p50 / p99, ms (${poll.sets} SETs)`,
      `${poll.p50Ms} / ${poll.p99Ms}`,
    ]),
    row([
      `logout's 200 → SET arrives by push under the paced load: p50 / p99, ms (${push.sets} SETs)`,
      `${push.p50Ms} / ${push.p99Ms}`,
    ]),
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
        .filter((name) => /^\d{4}-\d{2}-\d{2}\.json$/.test(name)) // not `npm run bench:ssf`'s ssf-<date>.json
        .sort()
        .at(-1)!,
    );
  writeReport(JSON.parse(readFileSync(file, 'utf8')) as Results);
  console.log(`redrew bench/chart.svg and the table in BENCHMARKS.md from ${file}`);
}
