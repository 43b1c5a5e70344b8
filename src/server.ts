import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.js';
import { Authentication } from './domain/authentication.js';
import { keyRingOf, loadOrCreateKeyFile, signingKeyFrom } from './domain/keys.js';
import { Tokens } from './domain/tokens.js';
import { createApi } from './http/api.js';
import { answerUnparsedRequest, createApp } from './http/app.js';
import type { Logger } from './logger.js';
import { openStore } from './store/open.js';
import type { Store } from './store/store.js';

/** Expired sessions are deleted this often, so storage stays bounded by live sessions. */
const PURGE_INTERVAL_MS = 60_000;

export interface RunningServer {
  url: string;
  port: number;
  store: Store;
  /** Stops accepting connections, lets requests in flight finish, then closes the store. */
  close(): Promise<void>;
}

/** `store` replaces the one `config.databaseUrl` names: tests pass one that fails on purpose. */
export async function startServer(config: Config, logger: Logger, store?: Store): Promise<RunningServer> {
  const keyFile = loadOrCreateKeyFile(config.signingKeyFile);
  if (keyFile.created) logger.info({ file: config.signingKeyFile }, 'created a new signing key');
  const keys = keyRingOf(await signingKeyFrom(keyFile.key));

  store ??= await openStore(config.databaseUrl);
  const tokens = new Tokens(keys, { accessTtl: config.accessTokenTtl, refreshTtl: config.refreshTokenTtl });
  const app = createApp(await createApi(new Authentication(store, tokens)), logger);

  const server = app.listen(config.port, config.host);
  server.on('clientError', answerUnparsedRequest(logger));
  // Responses still being worked on when closing starts close their connection after them:
  // otherwise draining waits for each keep-alive connection to time out.
  const unanswered = new Set<ServerResponse>();
  let closing = false;
  server.on('request', (_req, res: ServerResponse) => {
    if (closing) res.setHeader('Connection', 'close');
    unanswered.add(res);
    res.once('close', () => unanswered.delete(res));
  });
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  const { port } = server.address() as AddressInfo;

  const purge = () =>
    store.purgeExpiredSessions(Math.floor(Date.now() / 1000)).then(
      (count) => count > 0 && logger.info({ count }, 'purged expired sessions'),
      (err: unknown) => logger.error({ err }, 'purging expired sessions failed'),
    );
  const purgeTimer = setInterval(purge, PURGE_INTERVAL_MS).unref();
  await purge();

  logger.info({ port, host: config.host, keyId: keys.signer.kid }, 'fib-auth listening');
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    store,
    async close() {
      clearInterval(purgeTimer);
      closing = true;
      for (const res of unanswered) if (!res.headersSent) res.setHeader('Connection', 'close');
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await store.close();
    },
  };
}
