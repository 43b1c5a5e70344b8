// Fails when the prose of the repository names a file that does not exist: the Markdown
// documents, and the comments of the code. Imports are tsc's business; a comment or a design
// record that points at a deleted file is this check's.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';

const DOCUMENTS = ['README.md', 'SECURITY.md', 'BENCHMARKS.md', 'docs/design.md', 'openapi/info-description.md'];
const CODE_DIRS = ['src', 'test', 'bench', 'contract-tests', 'scripts'];
const CODE_EXTENSIONS = new Set(['.ts', '.cts', '.mts', '.mjs', '.cjs', '.js']);
const ROOTS = ['src', 'test', 'bench', 'contract-tests', 'scripts', 'openapi', 'generated', 'docs', 'dist'];
const REFERENCE = new RegExp(
  `(?<![\\w./-])(?:${ROOTS.join('|')})/[\\w./-]*\\w\\.(?:ts|cts|mts|mjs|cjs|js|yaml|md|json|svg|html)\\b`,
  'g',
);

/** Pages that `npm run docs` writes; everything else under dist/ is compiled from a source file. */
const BUILT_PAGES = 'dist/docs/';

/**
 * Whether the file a reference names exists, or is compiled from one that does: a compiled
 * name (\.js) stands for its source (\.ts). A name in capitals (results/DATE.json) is a placeholder.
 */
function exists(path) {
  if (/\b[A-Z]{2,}\b/.test(path) || path.startsWith(BUILT_PAGES)) return true;
  if (path.startsWith('dist/')) return exists(path.slice('dist/'.length).replace(/\.d\.ts$/, '.ts'));
  const compiledFrom = { '.js': ['.ts'], '.cjs': ['.cts'], '.mjs': ['.mts'] }[extname(path)] ?? [];
  return [path, ...compiledFrom.map((ext) => path.slice(0, -extname(path).length) + ext)].some((p) => existsSync(p));
}

function codeFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : codeFiles(path);
    return CODE_EXTENSIONS.has(extname(entry.name)) ? [path] : [];
  });
}

/** The comment lines of a source file: what a reader takes for the code's own account of itself. */
function commentLines(text) {
  return text.split('\n').map((line) => {
    const trimmed = line.trim();
    if (trimmed.startsWith('*') || trimmed.startsWith('/*')) return line;
    const at = line.indexOf('// ');
    return at >= 0 ? line.slice(at) : '';
  });
}

const missing = [];
const scan = (file, lines) =>
  lines.forEach((line, index) => {
    for (const [path] of line.matchAll(REFERENCE)) if (!exists(path)) missing.push(`${file}:${index + 1}: ${path}`);
  });
for (const file of DOCUMENTS) scan(file, readFileSync(file, 'utf8').split('\n'));
for (const file of CODE_DIRS.flatMap(codeFiles)) scan(file, commentLines(readFileSync(file, 'utf8')));

if (missing.length > 0) {
  console.error(`These references name files that do not exist:\n${missing.join('\n')}`);
  process.exit(1);
}
