// Builds the API reference: one self-contained HTML file that requests nothing from the network
// when it is opened. Usage: node scripts/docs.mjs [output file], by default dist/docs/index.html.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const DEFAULT_OUTPUT = join('dist', 'docs', 'index.html');
const output = process.argv[2] ?? DEFAULT_OUTPUT;

mkdirSync(dirname(output), { recursive: true });
execFileSync(
  join('node_modules', '.bin', 'redocly'),
  ['build-docs', 'generated/openapi.yaml', '--output', output, '--inlineBundle'],
  {
    stdio: ['ignore', 'ignore', 'inherit'],
  },
);

// --inlineBundle embeds Redoc's scripts, but its "API docs by Redocly" footer still loads the
// logo from Redocly's CDN. Draw the name instead, so the page works offline.
const LOGOS = ['https://cdn.redoc.ly/redoc/logo-mini-full.svg', 'https://cdn.redoc.ly/redoc/logo-mini.svg'];
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="16"><text x="0" y="13" font-family="sans-serif" font-size="13">Redocly</text></svg>`;
const inlineLogo = `data:image/svg+xml,${encodeURIComponent(svg)}`;
let html = readFileSync(output, 'utf8');
for (const logo of LOGOS) html = html.replaceAll(logo, inlineLogo);
writeFileSync(output, html);
console.log(`wrote ${output} (${Math.round(html.length / 1024)} KiB)`);
