import type { GrowthPoint, Results, Summary } from './report.js';

/** A hand-drawn SVG, so the chart needs no service and no library. */

interface Series {
  name: string;
  color: string;
  values: number[];
}

const PANEL_HEIGHT = 300;
const TOP = 50;
const BOTTOM = 60;

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const text = (x: number, y: number, content: string, attributes = '') =>
  `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attributes}>${escape(content)}</text>`;
const format = (value: number) => (value >= 1000 ? `${(value / 1000).toFixed(1)}k` : String(value));

/** One panel of grouped bars; `marks` draws one short line per group (the ceiling). */
function barPanel(
  left: number,
  width: number,
  title: string,
  unit: string,
  groups: string[],
  series: Series[],
  marks?: Series,
): string {
  const plotHeight = PANEL_HEIGHT - TOP - BOTTOM;
  const max = Math.max(...series.flatMap((s) => s.values), ...(marks?.values ?? [])) * 1.15 || 1;
  const y = (value: number) => TOP + plotHeight - (value / max) * plotHeight;
  const groupWidth = width / groups.length;
  const barWidth = (groupWidth * 0.8) / series.length;
  const parts = [
    text(left + width / 2, 22, title, 'text-anchor="middle" font-weight="bold"'),
    text(left - 8, TOP - 8, unit, 'text-anchor="start" fill="#555"'),
    `<line x1="${left}" y1="${y(0)}" x2="${left + width}" y2="${y(0)}" stroke="#333"/>`,
  ];
  groups.forEach((group, g) => {
    const groupLeft = left + g * groupWidth + groupWidth * 0.1;
    series.forEach((s, i) => {
      const value = s.values[g];
      const x = groupLeft + i * barWidth;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y(value).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(y(0) - y(value)).toFixed(1)}" fill="${s.color}"/>`,
      );
      parts.push(text(x + barWidth / 2 - 1, y(value) - 4, format(value), 'text-anchor="middle" font-size="10"'));
    });
    if (marks) {
      const markY = y(marks.values[g]);
      parts.push(
        `<line x1="${groupLeft}" y1="${markY}" x2="${groupLeft + barWidth * series.length}" y2="${markY}" stroke="${marks.color}" stroke-width="2" stroke-dasharray="5,3"/>`,
      );
    }
    parts.push(text(groupLeft + (barWidth * series.length) / 2, y(0) + 16, group, 'text-anchor="middle"'));
  });
  let legendX = left;
  for (const s of [...series, ...(marks ? [marks] : [])]) {
    parts.push(`<rect x="${legendX}" y="${PANEL_HEIGHT - 24}" width="10" height="10" fill="${s.color}"/>`);
    parts.push(text(legendX + 14, PANEL_HEIGHT - 15, s.name, 'font-size="11"'));
    legendX += 26 + s.name.length * 5.8; // about the width of 11 px sans-serif
  }
  return parts.join('\n');
}

export function renderChart(r: Results, { logout, ceiling }: Summary): string {
  const throughput = barPanel(
    60,
    440,
    'Logout throughput by concurrency',
    'requests/s',
    logout.map((l) => `c=${l.concurrency}`),
    [
      { name: 'bare koa', color: '#9e9e9e', values: logout.map((l) => l.koa) },
      { name: 'Prism mock', color: '#f4a261', values: logout.map((l) => l.prism) },
      // Older results have no peer: its bars are drawn at 0.
      { name: 'oidc-provider', color: '#7b2cbf', values: logout.map((l) => l.peer?.rps ?? 0) },
      { name: 'fib-auth', color: '#1d6fb8', values: logout.map((l) => l.server.rps) },
    ],
    { name: "1 core's verify", color: '#c1121f', values: logout.map(() => ceiling.nodeCrypto) },
  );
  const backends = (['sqlite', 'postgres'] as const).filter((b) => Array.isArray(r.growth[b]));
  const points = (b: 'sqlite' | 'postgres') => r.growth[b] as GrowthPoint[];
  const sizes = points('sqlite').map((p) => p.sessions.toExponential(0).replace('e+', 'e'));
  const colors = { sqlite: ['#2a9d8f', '#8ad1c7'], postgres: ['#6a4c93', '#b8a4d6'] };
  const label = { sqlite: 'SQLite', postgres: 'PostgreSQL' };
  const growth = barPanel(
    580,
    340,
    'Logout latency at c=10 by stored sessions',
    'ms',
    sizes,
    backends.flatMap((b) => [
      { name: `${label[b]} p50`, color: colors[b][0], values: points(b).map((p) => p.p50Ms) },
      { name: `${label[b]} p99`, color: colors[b][1], values: points(b).map((p) => p.p99Ms) },
    ]),
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="${PANEL_HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    throughput,
    growth,
    text(990, PANEL_HEIGHT - 2, `npm run bench, ${r.date.slice(0, 10)}`, 'text-anchor="end" font-size="9" fill="#777"'),
    '</svg>',
    '',
  ].join('\n');
}
