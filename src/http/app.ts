import { randomUUID } from 'node:crypto';
import { maxHeaderSize, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import Koa, { type Context as KoaContext, type Next } from 'koa';
import getRawBody from 'raw-body';
import type { OpenAPIBackend } from 'openapi-backend';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { allowedMethods } from './api.js';
import { envelope, errorResponse, RequestRefused, type Envelope } from './envelope.js';
import { PlainReply } from './handlers.js';

const MAX_BODY_BYTES = 16 * 1024;

/** Headers of every response, whoever answers it. */
const responseHeaders = (requestId: string) => ({
  'X-Request-Id': requestId,
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
});

interface State {
  /** The contract operation the request addresses, once routed. */
  operationId?: string;
}

/**
 * The outermost layer: gives every response its request id and safety headers, turns every
 * error into the envelope, and records the request in the log and the metrics.
 */
function envelopeAndLog(logger: Logger, metrics: Metrics) {
  return async (ctx: KoaContext & { state: State }, next: Next) => {
    const started = performance.now();
    const requestId = randomUUID();
    ctx.set(responseHeaders(requestId));
    let failure: unknown;
    try {
      await next();
    } catch (error) {
      failure = error;
      const { body, headers, internal } = errorResponse(error, requestId);
      if (internal) logger.error({ requestId, err: internal }, 'request failed');
      ctx.set(headers);
      ctx.status = body.status.code;
      ctx.body = body;
    }
    // JSON bodies go out as exactly application/json: RFC 8259 defines no charset parameter,
    // and strict clients (Dredd) compare the whole value.
    if (typeof ctx.body === 'object' && ctx.body !== null) ctx.set('Content-Type', 'application/json');
    const seconds = (performance.now() - started) / 1000;
    const operation = ctx.state.operationId ?? 'none';
    metrics.observe(operation, ctx.status, seconds, failure);
    logger.info(
      { requestId, method: ctx.method, path: ctx.path, operation, status: ctx.status, ms: Math.round(seconds * 1e4) / 10 },
      'request',
    );
  };
}

/**
 * CORS for the origins on the allow-list only: they may send `Authorization`, and read the
 * request id. Other origins get no CORS headers, so browsers keep them out.
 */
function cors(allowedOrigins: ReadonlySet<string>, api: OpenAPIBackend) {
  return async (ctx: KoaContext, next: Next) => {
    const origin = ctx.get('Origin');
    if (!allowedOrigins.has(origin)) return next();
    ctx.vary('Origin');
    ctx.set({ 'Access-Control-Allow-Origin': origin, 'Access-Control-Expose-Headers': 'X-Request-Id, WWW-Authenticate' });
    const methods = allowedMethods(api, ctx.path);
    if (ctx.method !== 'OPTIONS' || !ctx.get('Access-Control-Request-Method') || methods.length === 0) return next();
    ctx.set({
      'Access-Control-Allow-Methods': methods.join(', '),
      'Access-Control-Allow-Headers': 'Authorization, Content-Type',
      'Access-Control-Max-Age': '600',
    });
    ctx.status = 204;
  };
}

/**
 * The JSON text of an operation's body: 413 over 16 KiB, 415 unless JSON, 400 unless it parses.
 * The router parses what it is given once more whenever that is not an object, so it gets the
 * text: handing it the value would decode a body that is a JSON string a second time.
 */
async function readJsonText(ctx: KoaContext): Promise<string | undefined> {
  let text: string;
  try {
    text = await getRawBody(ctx.req, { limit: MAX_BODY_BYTES, length: ctx.request.length, encoding: 'utf8' });
  } catch (error) {
    if ((error as { type?: string }).type === 'entity.too.large') {
      throw new RequestRefused(413, `The request body is larger than ${MAX_BODY_BYTES} bytes.`);
    }
    throw error;
  }
  if (text === '') return undefined; // no body; validation answers that one is required
  if (!ctx.request.is('application/json')) throw new RequestRefused(415, 'The request body must be sent as application/json.');
  try {
    JSON.parse(text);
  } catch {
    throw new RequestRefused(400, 'The request body is not valid JSON.');
  }
  return text;
}

/** Hands each request to the contract's router and writes what its handler returns. */
function dispatch(api: OpenAPIBackend) {
  return async (ctx: KoaContext & { state: State }) => {
    const request = {
      method: ctx.method,
      path: ctx.path,
      query: ctx.querystring,
      headers: ctx.headers as Record<string, string | string[]>,
      body: undefined as unknown,
    };
    const operation = api.matchOperation(request);
    ctx.state.operationId = operation?.operationId;
    if (operation?.requestBody) request.body = await readJsonText(ctx);
    const response: Envelope<object> | PlainReply<unknown> = await api.handleRequest(request, ctx);
    if (response instanceof PlainReply) {
      ctx.status = 200;
      ctx.type = response.contentType;
      ctx.body = response.body;
    } else {
      ctx.status = response.status.code;
      ctx.body = response;
    }
  };
}

export interface AppOptions {
  logger: Logger;
  metrics: Metrics;
  corsOrigins: ReadonlySet<string>;
}

export function createApp(api: OpenAPIBackend, { logger, metrics, corsOrigins }: AppOptions): Koa {
  const app = new Koa();
  app.use(envelopeAndLog(logger, metrics));
  app.use(cors(corsOrigins, api));
  app.use(dispatch(api));
  // Errors after the response started (a client that went away) have no one to answer.
  app.on('error', (err) => logger.warn({ err }, 'response stream failed'));
  return app;
}

/**
 * How a request that Node's parser refuses is answered, by the parser's error code (the
 * contract's info.description documents these).
 */
export const UNPARSED_REQUEST_ANSWERS = {
  HPE_HEADER_OVERFLOW: [431, `The request line and headers are larger than ${maxHeaderSize} bytes.`],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'The request did not arrive in time.'],
  other: [400, 'The request is not valid HTTP/1.1.'],
} as const;

/**
 * The http server's 'clientError' listener. Node refuses a request it cannot parse (a control
 * character in a header, headers over its limit) before Koa sees it, and would answer with a
 * bare status line; this answers in the envelope with the usual headers, then closes.
 */
export function answerUnparsedRequest(logger: Logger) {
  return (error: NodeJS.ErrnoException, socket: Duplex) => {
    // As Node does: answer only when no response on this connection has started.
    const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
    if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const requestId = randomUUID();
    const [status, message] =
      error.code === 'HPE_HEADER_OVERFLOW' || error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? UNPARSED_REQUEST_ANSWERS[error.code]
        : UNPARSED_REQUEST_ANSWERS.other;
    const body = envelope(status, message, {});
    const text = JSON.stringify(body);
    const headers = {
      ...responseHeaders(requestId),
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(text),
      Connection: 'close',
    };
    const head = [
      `HTTP/1.1 ${status} ${body.status.name}`,
      ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    ];
    socket.end(`${head.join('\r\n')}\r\n\r\n${text}`, () => socket.destroy());
    // The refused bytes may hold a token: log the parser's code, never the request.
    logger.info({ requestId, status, code: error.code }, 'request refused before parsing');
  };
}
