/**
 * Dredd against the real server, from the bundled contract.
 *
 * Dredd makes one transaction per response status and reads only the first named example of
 * each. So that every named example (each 401, 422 and 400 cause) is a transaction of its own,
 * Dredd gets one description per example: the operation with that one response and that one
 * example, titled with the example's name. Dredd names the transaction
 * `EXAMPLE > PATH > SUMMARY > STATUS > MEDIA TYPE`.
 *
 * Dredd checks a response only against the example's shape; the hooks give it the response's
 * schema, so types and constraints are checked, and then compare the body with the example.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { packageRoot } from '../src/package-root.js';
import { startServerWithStoreHooks, type StoreHooks } from '../test/support/store-hooks.js';
import { isEnvelope, resolvedContract, type ResolvedContract, type TestServer } from '../test/support/harness.js';
import { CONTRACT_SERVER_ENV, freshAddress, NO_CONTENT, scenarios, type Scenario } from './scenarios.js';

/** What the hooks read and change of a Dredd transaction. */
interface Transaction {
  name: string;
  id: string;
  origin: object;
  /** Where Dredd sends the request, with fullPath. */
  host: string;
  port: string | number;
  fullPath: string;
  fail?: string;
  request: { uri: string; headers: Record<string, string | string[]>; body?: string };
  expected: { body?: string; bodySchema?: string };
  real?: { body: string; headers: Record<string, string | undefined> };
}

interface Hooks {
  beforeEach(hook: (transaction: Transaction, done: () => void) => void): void;
  afterEach(hook: (transaction: Transaction) => void): void;
}

/** A test as Dredd's reporter events carry it. */
interface ReportedTest {
  origin: object;
  title: string;
  message?: string;
}

interface DreddOptions {
  endpoint: string;
  apiDescriptions: string[];
  hookfiles: string[];
  custom: { registerHooks: (hooks: Hooks) => void };
  emitter: EventEmitter;
  color: boolean;
  loglevel: string;
}

const require = createRequire(import.meta.url);
// Dredd ships no types: these are the parts of its API used here.
const Dredd = require('dredd') as new (options: DreddOptions) => {
  run(callback: (error: Error | null, stats: ContractReport['stats']) => void): void;
};

const HOOK_FILE = join(packageRoot, 'contract-tests', 'hooks.cjs');

/** One transaction Dredd will run, and how to make its response happen. */
interface Planned {
  status: number;
  example: string;
  value: unknown;
  /** As JSON text, which Dredd also prints when a transaction fails. */
  schema: string;
  scenario: Scenario;
  /** Where the request goes instead of the server, for a transaction sent again (AgainThrough). */
  through?: string;
}

export interface TransactionResult {
  name: string;
  status: number;
  example: string;
  /** The URL the request went to instead of the server's, for a transaction sent again through it. */
  through: string | undefined;
  result: 'pass' | 'fail' | 'skip' | 'error';
  message: string;
}

/** Examples whose transactions run a second time in the same run, their requests sent to `through` instead. */
export interface AgainThrough {
  examples: string[];
  through: string;
}

export interface ContractReport {
  stats: { tests: number; passes: number; failures: number; errors: number; skipped: number; duration: number };
  transactions: TransactionResult[];
}

/**
 * Splits the contract into one Dredd description per named example, and plans each transaction
 * by its name; the examples of `again` get a second description, titled `EXAMPLE again through
 * URL`. Throws unless every example has a scenario and every scenario an example.
 */
function plan(contract: ResolvedContract, again?: AgainThrough): { descriptions: string[]; planned: Map<string, Planned> } {
  const descriptions: string[] = [];
  const planned = new Map<string, Planned>();
  const scenarioNames = new Set(
    Object.entries(scenarios).flatMap(([op, byExample]) => Object.keys(byExample).map((ex) => `${op} ${ex}`)),
  );
  const missing: string[] = [];
  for (const [path, pathItem] of Object.entries(contract.paths)) {
    for (const [method, operation] of Object.entries(pathItem)) {
      for (const [status, response] of Object.entries(operation.responses)) {
        // A response without a body (204) is one transaction, planned as the example NO_CONTENT.
        const [[mediaType, media]] = response.content
          ? Object.entries(response.content)
          : [[undefined, { schema: {}, examples: { [NO_CONTENT]: { value: undefined } } }]];
        for (const [example, { value }] of Object.entries(media.examples)) {
          const single = mediaType
            ? { ...response, content: { [mediaType]: { ...media, examples: { [example]: media.examples[example] } } } }
            : response;
          const scenario = scenarios[operation.operationId]?.[example];
          scenarioNames.delete(`${operation.operationId} ${example}`);
          if (!scenario) missing.push(`${operation.operationId} ${status} ${example}`);
          const runs = again?.examples.includes(example) ? [undefined, again.through] : [undefined];
          for (const through of runs) {
            const title = through ? `${example} again through ${through}` : example;
            descriptions.push(
              JSON.stringify({
                openapi: contract.openapi,
                info: { title, version: contract.info.version },
                paths: { [path]: { [method]: { ...operation, responses: { [status]: single } } } },
                components: { securitySchemes: contract.components.securitySchemes },
              }),
            );
            if (!scenario) continue;
            planned.set([title, path, operation.summary, status, ...(mediaType ? [mediaType] : [])].join(' > '), {
              status: Number(status),
              example,
              value,
              schema: JSON.stringify(asJsonSchema(media.schema)),
              scenario,
              through,
            });
          }
        }
      }
    }
  }
  if (missing.length > 0) throw new Error(`no scenario makes these documented responses happen: ${missing.join(', ')}`);
  if (scenarioNames.size > 0)
    throw new Error(`scenarios for examples the contract does not have: ${[...scenarioNames].join(', ')}`);
  return { descriptions, planned };
}

/** The ranges of OpenAPI's integer formats, which JSON Schema (and so Dredd's validator) does not know. */
const INTEGER_RANGES: Record<string, { minimum: number; maximum: number }> = {
  int32: { minimum: -(2 ** 31), maximum: 2 ** 31 - 1 },
  // A JSON number is exact only to 2^53; the service sends none larger.
  int64: { minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER },
};

/** An OpenAPI 3.0 schema as the JSON Schema Dredd's validator reads: the range says what the format did. */
function asJsonSchema(schema: object): object {
  return JSON.parse(JSON.stringify(schema), (_key, value: unknown) => {
    if (typeof value !== 'object' || value === null || !('format' in value) || typeof value.format !== 'string') return value;
    const range = INTEGER_RANGES[value.format];
    if (!range) return value;
    const { format: _format, ...rest } = value;
    return { ...range, ...rest };
  }) as object;
}

/**
 * Why a real body is not the example's: status exact (a 500 quotes its own request id), data
 * exact unless it carries tokens. Bodies outside the envelope (metrics, the key set) change
 * with every run: their schema alone is checked.
 */
function exampleMismatch(expected: Planned, realBody: string, requestId: string | undefined): string | undefined {
  const { value } = expected;
  if (!isEnvelope(value)) return undefined;
  const body = JSON.parse(realBody) as unknown;
  const status = { ...value.status };
  if (expected.status === 500) status.message = status.message.replace(/[0-9a-f-]{36}/, String(requestId));
  const dataIsFixed = isDeepStrictEqual(value.data, {});
  if (
    !isEnvelope(body) ||
    !isDeepStrictEqual(body.status, status) ||
    (dataIsFixed && !isDeepStrictEqual(body.data, value.data))
  ) {
    return `the body is not the example ${expected.example}: expected ${JSON.stringify({ ...value, status })}, got ${realBody}`;
  }
  return undefined;
}

/**
 * Runs Dredd against the server `t` while the hooks prepare each transaction on it, whose store
 * `store` can be made to fail; the transactions of `again` run a second time, through another
 * URL. Throws when the run itself is broken: a transaction without a scenario, a scenario
 * without a transaction, hooks that did not load.
 */
export async function verifyContract(t: TestServer, store: StoreHooks, again?: AgainThrough): Promise<ContractReport> {
  const { descriptions, planned } = plan(await resolvedContract(), again);

  const results = new Map<string, TransactionResult>();
  const nameOfOrigin = new WeakMap<object, string>();
  let hooksRegistered = false;

  function registerHooks(hooks: Hooks): void {
    hooksRegistered = true;
    hooks.beforeEach((transaction, done) => {
      nameOfOrigin.set(transaction.origin, transaction.name);
      const expected = planned.get(transaction.name);
      if (!expected) {
        // A name this plan does not know would otherwise run unprepared: fail it, loudly.
        transaction.fail = 'no scenario prepares this transaction';
        return done();
      }
      // Dredd reports `METHOD (STATUS) PATH`; add the example so each line names its cause.
      transaction.id = `${transaction.id} ${expected.example}${expected.through ? ` again through ${expected.through}` : ''}`;
      if (expected.through) ({ hostname: transaction.host, port: transaction.port } = new URL(expected.through));
      // A text example (the metrics) is one sample of a body that changes: Dredd would compare it
      // byte for byte and cannot apply a schema to text, so status and headers are checked, and
      // test/operations.test.ts reads the metrics themselves.
      if (typeof expected.value === 'string') delete transaction.expected.body;
      else if (expected.value !== undefined) transaction.expected.bodySchema = expected.schema; // none for a 204
      expected
        .scenario({ t, store })
        .then(
          (change) => {
            if (change.query !== undefined || change.path !== undefined) {
              // Dredd already filled the path and query from the parameters' examples and defaults: replace them.
              const [path, query] = transaction.request.uri.split('?');
              const uri = `${change.path ?? path}${change.query === undefined ? (query === undefined ? '' : `?${query}`) : `?${change.query}`}`;
              transaction.request.uri = uri;
              transaction.fullPath = uri;
            }
            // Each transaction comes from an address of its own, unless its scenario chose one.
            Object.assign(transaction.request.headers, { 'X-Forwarded-For': freshAddress() }, change.headers);
            if (change.body !== undefined) transaction.request.body = change.body;
            store.failing = change.storeFails === true;
          },
          (error: Error) => {
            transaction.fail = `preparing ${expected.example} failed: ${error.message}`;
          },
        )
        .finally(done);
    });
    hooks.afterEach((transaction) => {
      store.failing = false;
      const expected = planned.get(transaction.name);
      if (!expected || !transaction.real || transaction.fail) return;
      const mismatch = exampleMismatch(expected, transaction.real.body, transaction.real.headers['x-request-id']);
      if (mismatch) transaction.fail = mismatch;
    });
  }

  const emitter = new EventEmitter();
  const record = (result: TransactionResult['result']) => (test: ReportedTest) => {
    const name = nameOfOrigin.get(test.origin) ?? test.title;
    const expected = planned.get(name);
    results.set(name, {
      name,
      status: expected?.status ?? 0,
      example: expected?.example ?? '',
      through: expected?.through,
      result,
      message: test.message ?? '',
    });
  };
  emitter.on('test pass', record('pass'));
  emitter.on('test fail', record('fail'));
  emitter.on('test skip', record('skip'));
  emitter.on('test error', (_error: unknown, test: ReportedTest) => record('error')(test));

  const dredd = new Dredd({
    endpoint: t.url,
    apiDescriptions: descriptions,
    hookfiles: [HOOK_FILE],
    custom: { registerHooks },
    emitter,
    color: process.stdout.isTTY === true,
    // Dredd's description parser warns about every OpenAPI keyword it does not model (schema
    // keywords, tags, summaries), once per description. The hooks hand it the full schema
    // instead, so those warnings say nothing about this check; errors still show.
    loglevel: 'error',
  });
  const stats = await new Promise<ContractReport['stats']>((resolve, reject) =>
    dredd.run((error, runStats) => (error ? reject(error) : resolve(runStats))),
  );

  if (!hooksRegistered) throw new Error(`Dredd did not load the hooks from ${HOOK_FILE}`);
  const unreported = [...planned.keys()].filter((name) => !results.has(name));
  if (unreported.length > 0) throw new Error(`Dredd did not run these planned transactions: ${unreported.join('; ')}`);
  return { stats, transactions: [...results.values()] };
}

export interface ContractServer {
  t: TestServer;
  store: StoreHooks;
}

/**
 * The real server on a temporary SQLite file, with a store that fails on demand for the 500s,
 * configured as the scenarios need it (CONTRACT_SERVER_ENV). What the scenarios send through
 * the harness (sessions, challenges) comes from an address of its own each time too.
 */
export async function startContractServer(): Promise<ContractServer> {
  const { t, hooks } = await startServerWithStoreHooks(CONTRACT_SERVER_ENV);
  const call = t.call.bind(t);
  t.call = (method, path, options = {}) =>
    call(method, path, { ...options, headers: { 'X-Forwarded-For': freshAddress(), ...options.headers } });
  return { t, store: hooks };
}

export function summarize({ stats, transactions }: ContractReport): string {
  const byStatus = new Map<number, number>();
  for (const { status } of transactions) byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  const counts = [...byStatus].sort(([a], [b]) => a - b).map(([status, count]) => `${status}: ${count}`);
  return `Dredd ran ${transactions.length} transactions (${counts.join(', ')}): ${stats.passes} passed, ${stats.failures} failed, ${stats.errors} errors, ${stats.skipped} skipped`;
}
