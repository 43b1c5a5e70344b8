import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import type { Config } from './config.js';
import { responseHeaders } from './http/app.js';
import { envelope } from './contract/envelope.js';
import { refusalOf, type HttpFailureReason } from './contract/failures.js';
import type { Logger } from './logger.js';

/**
 * Connections the management listener keeps at most: a few Prometheus servers scrape it, and
 * what floods it must not take the memory the API needs.
 */
const MAX_MANAGEMENT_CONNECTIONS = 64;
const METRICS_PATH = '/metrics';
const METRICS_METHODS = ['GET', 'HEAD'];

export interface ManagementServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export type ManagementConfig = Pick<Config, 'managementPort' | 'managementHost' | 'headersTimeout' | 'requestTimeout'>;

/** `http://host:port` for a listener on `host`, an address a client on this machine can reach. */
export function urlOf(host: string, port: number): string {
  const reachable = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}

/**
 * The management listener (docs/design.md §8): the Prometheus metrics on a port of their own,
 * on the loopback address by default, as Keycloak's management interface does, so that the API's
 * port never exposes them and a scrape never queues behind the API's requests. `metricsText`
 * gives the whole server's metrics: the process's own, or, in a cluster's primary, every
 * worker's summed.
 */
export async function startManagementServer(
  config: ManagementConfig,
  logger: Logger,
  metricsText: () => Promise<string>,
): Promise<ManagementServer> {
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const requestId = randomUUID();
    const answer = (status: number, type: string, body: string, headers: Record<string, string> = {}) =>
      void res.writeHead(status, { ...responseHeaders(requestId), ...headers, 'Content-Type': type }).end(body);
    const refuse = (reason: HttpFailureReason, detail = '', headers: Record<string, string> = {}) => {
      const { status, message } = refusalOf(reason, detail);
      answer(status, 'application/json', JSON.stringify(envelope(status, message, {})), headers);
    };
    if (new URL(req.url ?? '/', 'http://management').pathname !== METRICS_PATH) refuse('noOperation');
    else if (!METRICS_METHODS.includes(req.method ?? '')) {
      refuse('methodNotAllowed', req.method, { Allow: METRICS_METHODS.join(', ') });
    } else {
      try {
        answer(200, Registry.PROMETHEUS_CONTENT_TYPE, await metricsText());
      } catch (err) {
        logger.error({ requestId, err }, 'collecting the metrics failed');
        refuse('internal', requestId);
      }
    }
  };
  const server = createServer(
    { headersTimeout: config.headersTimeout * 1000, requestTimeout: config.requestTimeout * 1000 },
    (req, res) => void handle(req, res),
  );
  server.maxConnections = MAX_MANAGEMENT_CONNECTIONS;
  server.listen(config.managementPort, config.managementHost);
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject)).catch((error: Error) => {
    // 9000 is a popular port (php-fpm's, for one): name the variables that move it.
    throw new Error(`the management listener (MANAGEMENT_HOST, MANAGEMENT_PORT) cannot listen: ${error.message}`);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: urlOf(config.managementHost, port),
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // a scrape in flight is retried at the next interval
      }),
  };
}
