/**
 * The resource-server side of `npm run bench`: how fast a logout reaches a resource server
 * while the service is busy logging others out, how fast `fib-auth-resource-server` verifies
 * compared with jose's `jwtVerify` alone, and how many introspections per second the service
 * answers.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { createVerifier } from 'fib-auth-resource-server';
import { importJWK, jwtVerify, type JWK } from 'jose';
import { BASE } from '../test/support/api.js';
import { addClient } from '../test/support/cli.js';
import { startResourceServer, type ResourceServer } from '../test/support/resource-servers.js';
import type { TokenMinter } from '../test/support/tokens.js';
import type { Service, SessionFactory } from './fixture.js';
import { load, round, type LoadRequest, type LoadResult } from './load.js';

export interface PropagationRun {
  /** Logouts whose delay was measured, one after the other, while the load ran. */
  probes: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The other logouts meanwhile, all answered 200. */
  load: LoadResult;
}

export interface VerifySample {
  libraryPerSecond: number;
  josePerSecond: number;
}

export interface ResourceServerResults {
  propagation: PropagationRun[];
  verify: VerifySample[];
  introspection: LoadResult[];
}

const PROPAGATION_CONCURRENCY = 10;
const VERIFY_IN_FLIGHT = 50;
const VERIFY_SLICES = 10;
const INTROSPECTION_CONCURRENCY = 50;
const PROBE_DEADLINE_MS = 10_000;
/** Between two questions to the resource server: polling flat out would take the cores the service needs. */
const PROBE_INTERVAL_MS = 2;

const percentile = (sorted: readonly number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/**
 * Logs out one probe session after another and asks the resource server with its token until
 * it refuses it, while `load` keeps the service logging out other sessions.
 */
async function propagationUnderLoad(
  server: Service,
  rs: ResourceServer,
  sessions: SessionFactory,
  seconds: number,
  loadRequests: readonly LoadRequest[],
): Promise<PropagationRun> {
  const probes = await sessions.logouts(Math.ceil(seconds * 500));
  const delays: number[] = [];
  const loadRun = load(server.origin, loadRequests, { concurrency: PROPAGATION_CONCURRENCY, seconds, pid: server.pid });
  const deadline = performance.now() + seconds * 1000;
  for (const probe of probes) {
    if (performance.now() >= deadline) break;
    const token = probe.headers!.authorization.slice('Bearer '.length);
    assert.equal((await rs.get(token)).status, 200, 'the probe token is accepted before its logout');
    const answer = await fetch(`${server.origin}${probe.path}`, { method: 'POST', headers: probe.headers });
    await answer.arrayBuffer();
    assert.equal(answer.status, 200, 'the probe logs out');
    const answered = performance.now();
    while ((await rs.get(token)).status === 200) {
      assert.ok(performance.now() - answered < PROBE_DEADLINE_MS, 'the resource server refuses a logged-out token');
      await sleep(PROBE_INTERVAL_MS);
    }
    delays.push(performance.now() - answered);
  }
  const loadResult = await loadRun;
  assert.deepEqual(loadResult.statuses, { 200: loadResult.requests }, 'every logout of the load succeeds');
  const sorted = delays.sort((a, b) => a - b);
  return {
    probes: sorted.length,
    p50Ms: round(percentile(sorted, 50)),
    p99Ms: round(percentile(sorted, 99)),
    maxMs: round(sorted[sorted.length - 1]),
    load: loadResult,
  };
}

/** Runs `verifyOne` with `inFlight` calls at a time for `seconds`; returns how many completed per second. */
async function perSecond(seconds: number, inFlight: number, verifyOne: () => Promise<unknown>): Promise<number> {
  let count = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        await verifyOne();
        count++;
      }
    }),
  );
  return Math.round(count / ((performance.now() - started) / 1000));
}

export async function measureResourceServer(options: {
  server: Service;
  databaseUrl: string;
  minter: TokenMinter;
  sessions: SessionFactory;
  seconds: number;
  reps: number;
  log: (line: string) => void;
}): Promise<ResourceServerResults> {
  const { server, databaseUrl, minter, sessions, seconds, reps, log } = options;
  const results: ResourceServerResults = { propagation: [], verify: [], introspection: [] };
  const env = { DATABASE_URL: databaseUrl };
  const rs = await startResourceServer({ serviceUrl: server.origin, ...(await addClient(env, 'bench-resource-server')) });
  try {
    const [{ session, user }] = await sessions.create(1);
    const token = minter.accessToken(session, user.accountId);
    assert.equal((await rs.get(token)).status, 200, 'the resource server accepts a live token');

    // The same token, verified by the library (as verifier.koa() does per request) and by jose alone.
    const verifier = createVerifier({ url: server.origin, ...(await addClient(env, 'bench-verify')) });
    await verifier.ready();
    const { keys } = (await (await fetch(`${server.origin}/.well-known/jwks.json`)).json()) as { keys: JWK[] };
    const key = await importJWK(
      keys.find((k) => k.kid === minter.kid)!,
      'EdDSA',
    );
    const joseOptions = {
      algorithms: ['EdDSA'],
      typ: 'at+jwt',
      requiredClaims: ['acc', 'sub', 'role', 'sid', 'iat', 'exp', 'jti'],
    };
    const authorization = `Bearer ${token}`;
    assert.equal((await verifier.verify(authorization)).sid, session.id);
    await perSecond(1, VERIFY_IN_FLIGHT, () => verifier.verify(authorization)); // warm-up
    await perSecond(1, VERIFY_IN_FLIGHT, () => jwtVerify(token, key, joseOptions));
    for (let rep = 0; rep < reps; rep++) {
      // In alternating slices, so that whatever else runs on the machine weighs on both alike.
      const sample = { libraryPerSecond: 0, josePerSecond: 0 };
      const slice = seconds / VERIFY_SLICES;
      for (let i = 0; i < VERIFY_SLICES; i++) {
        const sides = [
          async () => (sample.libraryPerSecond += await perSecond(slice, VERIFY_IN_FLIGHT, () => verifier.verify(authorization))),
          async () =>
            (sample.josePerSecond += await perSecond(slice, VERIFY_IN_FLIGHT, () => jwtVerify(token, key, joseOptions))),
        ];
        for (const side of i % 2 ? sides.reverse() : sides) await side();
      }
      sample.libraryPerSecond = Math.round(sample.libraryPerSecond / VERIFY_SLICES);
      sample.josePerSecond = Math.round(sample.josePerSecond / VERIFY_SLICES);
      results.verify.push(sample);
      log(
        `verify run ${rep + 1}: library ${sample.libraryPerSecond}/s, jose jwtVerify ${sample.josePerSecond}/s ` +
          `(× ${round(sample.libraryPerSecond / sample.josePerSecond)})`,
      );
    }
    await verifier.close();

    const introspectionClient = await addClient(env, 'bench-introspection');
    const basic = `Basic ${Buffer.from(`${introspectionClient.clientId}:${introspectionClient.clientSecret}`).toString('base64')}`;
    const introspected = (await sessions.create(1000)).map(({ session: s, user: u }) => minter.accessToken(s, u.accountId));
    const introspections: LoadRequest[] = introspected.map((t) => ({
      method: 'POST',
      path: `${BASE}/introspection`,
      headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${t}`,
    }));
    const sample = await fetch(`${server.origin}${BASE}/introspection`, introspections[0]);
    assert.deepEqual(
      { status: sample.status, active: ((await sample.json()) as { active: boolean }).active },
      { status: 200, active: true },
      'an introspection of a live token answers active',
    );

    for (let rep = 0; rep < reps; rep++) {
      const run = await propagationUnderLoad(server, rs, sessions, seconds, await sessions.logouts(Math.ceil(seconds * 8000)));
      results.propagation.push(run);
      log(
        `propagation run ${rep + 1}: ${run.probes} probes, p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms, max ${run.maxMs} ms, ` +
          `under ${run.load.rps} other logouts/s`,
      );
      const introspection = await load(server.origin, introspections, {
        concurrency: INTROSPECTION_CONCURRENCY,
        seconds,
        cycle: true,
        pid: server.pid,
      });
      assert.deepEqual(introspection.statuses, { 200: introspection.requests }, 'every introspection answers 200');
      results.introspection.push(introspection);
      log(
        `introspection run ${rep + 1}: ${introspection.rps}/s, p50 ${introspection.latencyMs.p50} ms, p99 ${introspection.latencyMs.p99} ms`,
      );
    }
  } finally {
    await rs.process.stop();
  }
  return results;
}
