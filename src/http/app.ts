import { randomUUID } from 'node:crypto';
import Koa, { type Context as KoaContext, type Next } from 'koa';
import getRawBody from 'raw-body';
import type { OpenAPIBackend } from 'openapi-backend';
import type { Logger } from '../logger.js';
import { errorResponse, RequestRefused, type Envelope } from './envelope.js';

const MAX_BODY_BYTES = 16 * 1024;

/** Gives every response its request id and safety headers, turns every error into the envelope, and logs one line. */
function envelopeAndLog(logger: Logger) {
  return async (ctx: KoaContext, next: Next) => {
    const started = performance.now();
    const requestId = randomUUID();
    ctx.set({ 'X-Request-Id': requestId, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
    try {
      await next();
    } catch (error) {
      const { body, headers, internal } = errorResponse(error, requestId);
      if (internal) logger.error({ requestId, err: internal }, 'request failed');
      ctx.set(headers);
      ctx.status = body.status.code;
      ctx.body = body;
    }
    // Every body is the JSON envelope. The contract's media type is exactly application/json:
    // RFC 8259 defines no charset parameter, and strict clients (Dredd) compare the whole value.
    ctx.set('Content-Type', 'application/json');
    logger.info(
      { requestId, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round((performance.now() - started) * 10) / 10 },
      'request',
    );
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

/** Hands each request to the contract's router; a handler's envelope becomes the response. */
function dispatch(api: OpenAPIBackend) {
  return async (ctx: KoaContext) => {
    const request = { method: ctx.method, path: ctx.path, query: ctx.querystring, headers: ctx.headers as Record<string, string | string[]>, body: undefined as unknown };
    if (api.matchOperation(request)?.requestBody) request.body = await readJsonBody(ctx);
    const response: Envelope<object> = await api.handleRequest(request, ctx);
    ctx.status = response.status.code;
    ctx.body = response;
  };
}

export function createApp(api: OpenAPIBackend, logger: Logger): Koa {
  const app = new Koa();
  app.use(envelopeAndLog(logger));
  app.use(dispatch(api));
  // Errors after the response started (a client that went away) have no one to answer.
  app.on('error', (err) => logger.warn({ err }, 'response stream failed'));
  return app;
}
