import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { lifetimesOf, storeOptions, type Config } from './config.js';
import { Authentication } from './domain/authentication.js';
import { Clients } from './domain/clients.js';
import { epochSeconds, systemClock, type Clock } from './domain/clock.js';
import { KeyRing } from './domain/key-ring.js';
import { RevocationFeed } from './domain/revocation-feed.js';
import { SharedSignals } from './domain/shared-signals.js';
import { Tokens, type TokenIdentity } from './domain/tokens.js';
import { createApi } from './http/api.js';
import { answerUnparsedRequest, createApp } from './http/app.js';
import { LongPolls } from './http/long-polls.js';
import { addressKey, RateLimits, type LimitPeers } from './http/rate-limits.js';
import { keyFileSource } from './key-files.js';
import type { Logger } from './logger.js';
import { startManagementServer, urlOf } from './management.js';
import { countLiveSessions, Metrics } from './metrics.js';
import type { Registry } from 'prom-client';
import { purgeExpiredEntries } from './store/maintenance.js';
import { openStore } from './store/open.js';
import { markAround, phaseTimingRequested } from './request-phases.js';
import { PushDelivery } from './push-delivery.js';
import { watchSecurityEventQueues } from './ssf-queues.js';
import type { Store } from './domain/store.js';

/**
 * How often Node looks for requests past the headers or request timeout (its default is 30 s,
 * longer than the timeouts themselves): a slow client is answered within this of its deadline.
 */
const TIMEOUT_CHECK_INTERVAL_MS = 500;

export interface RunningServer {
  url: string;
  port: number;
  /** Where the metrics are served; undefined in a worker of a cluster, whose primary serves them. */
  managementUrl: string | undefined;
  store: Store;
  /** Re-reads the signing and verification keys after a rotation (the CLI does it on SIGHUP). */
  reloadKeys(): Promise<void>;
  /** Stops accepting connections, lets requests in flight finish, then closes the store. */
  close(): Promise<void>;
}

/** What a worker of a cluster shares with the other workers, through its primary (src/cluster/worker.ts). */
export interface ClusterLinks {
  /** Makes this worker's registry one of those the primary sums. */
  shareMetrics: (registry: Registry) => void;
  limitPeers: LimitPeers;
}

export interface ServerParts {
  /** Replaces the store `config.databaseUrl` names: tests pass one that fails on purpose. */
  store?: Store;
  /** The one clock every part reads; tests pass one they move. */
  clock?: Clock;
  /**
   * Set in a worker of a cluster, whose primary purges the store, counts the live sessions, serves
   * the metrics and relays what the limits count.
   */
  cluster?: ClusterLinks;
}

/**
 * How often each process reads the withdrawn keys (docs/design.md §5): a key withdrawn by
 * `fib-auth keys revoke` stops verifying on every instance and worker within this (plus one
 * read), without a signal. The read is one query of a table that holds a row per withdrawal.
 */
const WITHDRAWALS_READ_INTERVAL_MS = 250;

/**
 * Reads the withdrawn keys into the key ring every WITHDRAWALS_READ_INTERVAL_MS, until the
 * returned function is called. While the store does not answer, the ring keeps what it knew:
 * withdrawals only ever add to it.
 */
function followKeyWithdrawals(store: Store, keys: KeyRing, logger: Logger): () => void {
  let stopped = false;
  let failing = false;
  const read = async () => {
    try {
      const fresh = keys.withdraw(await store.withdrawnKeys());
      for (const kid of fresh) {
        if (kid === keys.signer.kid) {
          logger.error(
            { kid },
            'the signing key was withdrawn: every token signed now is refused; reload the rotated keys (SIGHUP)',
          );
        } else {
          logger.info({ kid }, 'a key was withdrawn: its tokens are refused');
        }
      }
      if (failing) logger.info('reading the withdrawn keys works again');
      failing = false;
    } catch (err) {
      if (!failing && !stopped) logger.error({ err }, 'reading the withdrawn keys failed; trying again');
      failing = true;
    }
    schedule();
  };
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    if (!stopped) timer = setTimeout(() => void read(), WITHDRAWALS_READ_INTERVAL_MS).unref();
  };
  schedule();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/**
 * Closes a new connection at once when its client address (an IPv6 /64, as the limits on
 * refused requests count it) already holds `cap` (docs/design.md §9): one client's slow or
 * idle connections cannot take every connection of MAX_CONNECTIONS.
 */
function capConnectionsPerAddress(server: Server, cap: number): void {
  const open = new Map<string, number>();
  server.on('connection', (socket) => {
    const key = addressKey(socket.remoteAddress ?? '');
    const count = open.get(key) ?? 0;
    if (count >= cap) return void socket.destroy();
    open.set(key, count + 1);
    socket.once('close', () => {
      const left = open.get(key)! - 1;
      if (left === 0) open.delete(key);
      else open.set(key, left);
    });
  });
}

/** The issuer when ISSUER is unset: for development on one machine (docs/design.md §8). */
export const defaultIssuer = (port: number) => `http://localhost:${port}`;

/**
 * The API's port cannot be had: one line naming the variables. A worker of a cluster hears only
 * `bind EADDRINUSE 127.0.0.1:8080` from Node, and a single process a longer line saying the same.
 */
function cannotListen(error: NodeJS.ErrnoException, host: string, port: number): Error {
  const why = error.code === 'EADDRINUSE' ? 'the address is already in use' : error.message;
  return new Error(`the API listener (HOST, PORT) cannot listen on ${host}:${port}: ${why}`, { cause: error });
}

export async function startServer(config: Config, logger: Logger, parts: ServerParts = {}): Promise<RunningServer> {
  const clock = parts.clock ?? systemClock;
  const keySource = keyFileSource(config.signingKeyFile, () =>
    logger.info({ file: config.signingKeyFile }, 'created a new signing key'),
  );
  const store = parts.store ?? (await openStore(storeOptions(config, logger)));
  // Withdrawn keys are refused from the first request on; the ring reads them again and again.
  const keys = await KeyRing.load(keySource, clock, await store.withdrawnKeys());
  const stopFollowingWithdrawals = followKeyWithdrawals(store, keys, logger);
  const metrics = new Metrics();
  parts.cluster?.shareMetrics(metrics.registry);
  // The server's caps are shared out among a cluster's workers, as Node hands each of them a
  // share of the connections.
  const share = (cap: number) => Math.ceil(cap / (parts.cluster ? config.workers : 1));
  const lifetimes = lifetimesOf(config);
  // Without ISSUER the issuer is the port listened on, known once listening, before any request.
  const identity: TokenIdentity = { issuer: config.issuer ?? '', audience: config.audience };
  const tokens = new Tokens(keys, lifetimes, () => identity, clock, metrics.verified);
  // Phase timing, when on (src/request-phases.ts): a handler that verifies a token does it first.
  if (phaseTimingRequested()) markAround(tokens, 'verify', 'validate', 'verify');
  const feed = new RevocationFeed(store);
  const signals = new SharedSignals(store, keys, clock, () => identity.issuer, logger, metrics.securityEventDelivered);
  const pushes = new PushDelivery(store, signals, logger, metrics.securityEventDelivered);
  const auth = new Authentication(store, tokens, clock, config.signInChallenge, lifetimes, metrics.verified);
  const api = await createApi({
    auth,
    store,
    keys,
    identity: () => identity,
    feed,
    clients: new Clients(store, clock),
    longPolls: new LongPolls(share(config.maxLongPollsPerClient)),
    signals,
  });
  const limits = new RateLimits(
    {
      refusedPerAddress: { limit: config.rateLimitRefusedPerAddress, windowSeconds: config.rateLimitRefusedPerAddressWindow },
      failedSignInsPerEmail: {
        limit: config.rateLimitFailedSignInsPerEmail,
        windowSeconds: config.rateLimitFailedSignInsPerEmailWindow,
      },
      challengesPerAddress: {
        limit: config.rateLimitChallengesPerAddress,
        windowSeconds: config.rateLimitChallengesPerAddressWindow,
      },
      trustProxy: config.trustProxy,
    },
    clock,
    parts.cluster?.limitPeers,
  );
  const app = createApp(api, { logger, metrics, corsOrigins: config.corsOrigins, limits });

  // Slow clients (docs/design.md §9): a request must arrive within these, or it is answered 408
  // (answerUnparsedRequest); past the connection caps new connections are closed at once.
  const handle = app.callback(); // Koa answers its errors itself: its promise does not reject
  const server = createServer(
    {
      headersTimeout: config.headersTimeout * 1000,
      requestTimeout: config.requestTimeout * 1000,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
    },
    (req, res) => void handle(req, res),
  );
  server.maxConnections = share(config.maxConnections);
  // Behind proxies every connection comes from a proxy: capping them per client is the proxy's job.
  if (config.trustProxy === 0) capConnectionsPerAddress(server, share(config.maxConnectionsPerAddress));
  server.on('clientError', answerUnparsedRequest(logger));
  server.listen(config.port, config.host);
  // Responses still being worked on when closing starts close their connection after them:
  // otherwise draining waits for each keep-alive connection to time out.
  const unanswered = new Set<ServerResponse>();
  let closing = false;
  server.on('request', (_req, res: ServerResponse) => {
    if (closing) res.setHeader('Connection', 'close');
    unanswered.add(res);
    res.once('close', () => unanswered.delete(res));
  });
  await new Promise<void>((resolve, reject) =>
    server.once('listening', resolve).once('error', (error) => reject(cannotListen(error, config.host, config.port))),
  );
  const { port } = server.address() as AddressInfo;
  identity.issuer ||= defaultIssuer(port);

  // A cluster's primary does these for the whole server (src/cluster/primary.ts).
  const stopPurging = parts.cluster ? () => {} : await purgeExpiredEntries(store, clock, logger);
  const stopCounting = parts.cluster
    ? () => {}
    : await countLiveSessions(metrics.registry, () => store.countLiveSessions(epochSeconds(clock)), logger);
  const stopWatchingQueues = parts.cluster ? () => {} : await watchSecurityEventQueues(metrics.registry, store, logger);
  const management = parts.cluster ? undefined : await startManagementServer(config, logger, () => metrics.registry.metrics());
  // Every process that serves pushes too: each leases the SETs it pushes (docs/design.md §15).
  pushes.start();

  logger.info(
    { port, host: config.host, managementPort: management?.port, keyId: keys.signer.kid },
    parts.cluster ? 'worker listening' : 'fib-auth listening',
  );
  return {
    url: urlOf(config.host, port),
    port,
    managementUrl: management?.url,
    store,
    async reloadKeys() {
      await keys.reload();
      logger.info({ keyId: keys.signer.kid, verifying: keys.jwks().map((k) => k.kid) }, 'reloaded the keys');
    },
    async close() {
      stopPurging();
      stopCounting();
      stopWatchingQueues();
      stopFollowingWithdrawals();
      feed.close(); // long polls answer now instead of holding the drain
      signals.close();
      closing = true;
      for (const res of unanswered) if (!res.headersSent) res.setHeader('Connection', 'close');
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await management?.close();
      await pushes.stop(); // the SETs in flight are given back to the queue first
      await store.close();
    },
  };
}
