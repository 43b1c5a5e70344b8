import { randomUUID } from 'node:crypto';
import Koa, { type Context as KoaContext, type Next } from 'koa';
import getRawBody from 'raw-body';
import type { OpenAPIBackend } from 'openapi-backend';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { allowedMethods } from './api.js';
import { errorResponse, RequestRefused, type Envelope } from './envelope.js';
import { PlainReply } from './handlers.js';

const MAX_BODY_BYTES = 16 * 1024;

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
    ctx.set({ 'X-Request-Id': requestId, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
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

/** The JSON body of an operation that has one: 413 over 16 KiB, 415 unless JSON, 400 unless it parses. */
async function readJsonBody(ctx: KoaContext): Promise<unknown> {
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
    return JSON.parse(text);
  } catch {
    throw new RequestRefused(400, 'The request body is not valid JSON.');
  }
}

/** Hands each request to the contract's router and writes what its handler returns. */
function dispatch(api: OpenAPIBackend) {
  return async (ctx: KoaContext & { state: State }) => {
    const request = { method: ctx.method, path: ctx.path, query: ctx.querystring, headers: ctx.headers as Record<string, string | string[]>, body: undefined as unknown };
    const operation = api.matchOperation(request);
    ctx.state.operationId = operation?.operationId;
    if (operation?.requestBody) request.body = await readJsonBody(ctx);
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
