/**
 * `node --import tsx bench/openapi-backend-patches.ts`: what each patch of
 * src/http/openapi-backend-patches.ts saves, against openapi-backend as it ships, measured in
 * one run, variants alternating (docs/design.md §10 keeps the numbers). Start-up: building and
 * initialising the router, as every worker does. Per request: `handleRequest` on the requests
 * of the hot paths, shaped as src/http/app.ts hands them over, with handlers that do nothing,
 * so that the router's own cost is what is timed.
 */
import { OpenAPIBackend, type Request } from 'openapi-backend';
import { contractFormats } from '../src/http/api.js';
import { keepOperationList, validateRequestsOnly } from '../src/http/openapi-backend-patches.js';
import { bundledSpecPath } from '../src/package-root.js';

type Patch = 'validateRequestsOnly' | 'keepOperationList';
const PATCHES: readonly Patch[] = ['validateRequestsOnly', 'keepOperationList'];

async function router(patches: readonly Patch[]): Promise<OpenAPIBackend> {
  const requestsOnly = patches.includes('validateRequestsOnly');
  const api = new OpenAPIBackend({
    definition: bundledSpecPath,
    strict: true,
    ...(requestsOnly ? { validate: false } : { customizeAjv: contractFormats }),
  });
  const nothing = () => ({});
  api.register({ notFound: nothing, methodNotAllowed: nothing, validationFail: nothing, unauthorizedHandler: nothing });
  for (const scheme of ['clientCredentials', 'accessToken', 'refreshToken']) api.registerSecurityHandler(scheme, () => true);
  await api.init();
  for (const { operationId } of api.router.getOperations()) api.register(operationId!, nothing);
  if (requestsOnly) validateRequestsOnly(api, contractFormats);
  if (patches.includes('keepOperationList')) keepOperationList(api);
  return api;
}

const BASE = '/auth/api/v1/authentication-management';
const bearer = `Bearer ${'a'.repeat(40)}.${'b'.repeat(120)}.${'c'.repeat(86)}`;
/** The requests of sign-in, logout, refresh, introspection and the feed, as app.ts routes them. */
const requests = (): Request[] => [
  {
    method: 'POST',
    path: `${BASE}/session`,
    query: '',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'alice@wonderland.space', signature: 'ab'.repeat(64), authPublicKeyHex: 'cd'.repeat(32) }),
  },
  { method: 'POST', path: `${BASE}/logout`, query: '', headers: { authorization: bearer } },
  { method: 'DELETE', path: `${BASE}/session`, query: '', headers: { authorization: bearer } },
  {
    method: 'POST',
    path: `${BASE}/introspection`,
    query: '',
    headers: { authorization: 'Basic cnM6c2VjcmV0', 'content-type': 'application/x-www-form-urlencoded' },
    body: { token: 'x'.repeat(200) },
  },
  { method: 'GET', path: `${BASE}/revocations`, query: 'limit=100', headers: { authorization: 'Basic cnM6c2VjcmV0' } },
];

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const fmt = (n: number, digits = 1) => n.toFixed(digits);

/** Start-up: each sample builds a router from the bundled contract, as a worker starting does. */
async function startUp(rounds: number): Promise<void> {
  const variants: Record<string, Patch[]> = {
    shipped: [...PATCHES],
    'without validateRequestsOnly': PATCHES.filter((p) => p !== 'validateRequestsOnly'),
  };
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
  for (const patches of Object.values(variants)) await router(patches); // warm-up
  for (let round = 0; round < rounds; round++) {
    for (const [name, patches] of Object.entries(variants)) {
      const started = process.cpuUsage();
      await router(patches);
      const { user, system } = process.cpuUsage(started);
      samples[name].push((user + system) / 1000);
    }
  }
  const base = median(samples.shipped);
  console.log(`start-up (construct + init), CPU, median of ${rounds}:`);
  for (const [name, values] of Object.entries(samples))
    console.log(`  ${name}: ${fmt(median(values))} ms (${fmt(median(values) / base, 2)} × shipped)`);
}

/** Per request: `handleRequest` over the mix above, in batches, variants alternating. */
async function perRequest(rounds: number, batch: number): Promise<void> {
  const variants: Record<string, Patch[]> = {
    shipped: [...PATCHES],
    'without keepOperationList': PATCHES.filter((p) => p !== 'keepOperationList'),
    'without validateRequestsOnly': PATCHES.filter((p) => p !== 'validateRequestsOnly'),
    'no patch': [],
  };
  const apis = Object.fromEntries(
    await Promise.all(Object.entries(variants).map(async ([name, patches]) => [name, await router(patches)] as const)),
  );
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
  // CPU time, not wall time: the machine is shared, and a batch preempted midway would count the wait.
  const run = async (api: OpenAPIBackend) => {
    const started = process.cpuUsage();
    for (let i = 0; i < batch; i++) for (const request of requests()) await api.handleRequest(request);
    const { user, system } = process.cpuUsage(started);
    return (user + system) / (batch * requests().length);
  };
  for (const api of Object.values(apis)) await run(api); // warm-up: JIT, lazily compiled validators
  for (let round = 0; round < rounds; round++) {
    for (const [name, api] of Object.entries(apis)) samples[name].push(await run(api));
  }
  const base = median(samples.shipped);
  console.log(
    `per request (handleRequest, ${requests().length} kinds), median of ${rounds} batches of ${batch * requests().length}:`,
  );
  for (const [name, values] of Object.entries(samples))
    console.log(`  ${name}: ${fmt(median(values))} µs (${fmt(median(values) / base, 2)} × shipped)`);
}

await startUp(Number(process.env.STARTUP_ROUNDS ?? 15));
await perRequest(Number(process.env.REQUEST_ROUNDS ?? 31), Number(process.env.REQUEST_BATCH ?? 200));
