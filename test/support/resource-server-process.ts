/**
 * Another FIB API service, as its team would write it: a Koa app that uses the package only
 * through `fib-auth-resource-server` (resolved by Node through the package's `exports`, so it
 * runs what `npm run build` compiled). One route answers the claims of the token it accepted.
 *
 * Environment: FIB_AUTH_URL, CLIENT_ID, CLIENT_SECRET, MAX_STALENESS_SECONDS and PORT (both optional;
 * a free port by default), and GC_INTERVAL_MS: when set (with node --expose-gc), a full garbage
 * collection runs that often, to show what the library holds only weakly.
 * Prints "listening on PORT", then "verifier ready" once the verifier is.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { createVerifier, type VerifiedState } from 'fib-auth-resource-server';

const { FIB_AUTH_URL, CLIENT_ID, CLIENT_SECRET, MAX_STALENESS_SECONDS, PORT, GC_INTERVAL_MS } = process.env;
if (GC_INTERVAL_MS) setInterval(() => globalThis.gc!(), Number(GC_INTERVAL_MS)).unref();
const verifier = createVerifier({
  url: FIB_AUTH_URL!,
  clientId: CLIENT_ID!,
  clientSecret: CLIENT_SECRET!,
  maxStalenessSeconds: MAX_STALENESS_SECONDS ? Number(MAX_STALENESS_SECONDS) : undefined,
});

const app = new Koa<VerifiedState>();
app.use(verifier.koa());
app.use((ctx) => {
  ctx.body = { claims: ctx.state.claims };
});
const server = app.listen(Number(PORT ?? 0), '127.0.0.1');
await once(server, 'listening');
console.log(`listening on ${(server.address() as AddressInfo).port}`);
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void verifier.close();
});
await verifier.ready();
console.log('verifier ready');
