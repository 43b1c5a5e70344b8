import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import Koa, { type Context as KoaContext, type Next } from 'koa';
import getRawBody from 'raw-body';
import type { OpenAPIBackend, Request as RoutedRequest } from 'openapi-backend';
import { requestLineLogger, type Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { currentPhases, phaseTimingRequested, timeRequest, type Phase } from '../request-phases.js';
import { allowedMethods } from './api.js';
import { envelope, type Envelope } from '../contract/envelope.js';
import { MAX_BODY_BYTES, refusalOf, type Outcome, type HttpFailureReason } from '../contract/failures.js';
import { NoContent, PlainReply } from './plain-reply.js';
import { HttpFailure, refusal } from './refusals.js';
import type { RateLimits } from './rate-limits.js';

/** Headers of every response, whoever answers it. */
export const responseHeaders = (requestId: string) => ({
  'X-Request-Id': requestId,
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
});

interface State {
  requestId: string;
  /** The contract operation the request addresses, once routed. */
  operationId?: string;
  /** The request as the router reads it, its body read in the operation's media type. */
  routed?: RoutedRequest;
  /** The body's value, decoded once: the rate limits read a sign-in's email from it. */
  body?: unknown;
  /** Why the request was refused, as the error layer classified it. */
  outcome?: Outcome;
}
type AppContext = KoaContext & { state: State };

/** Gives every response its request id and safety headers. */
function identify() {
  return (ctx: AppContext, next: Next) => {
    ctx.state.requestId = randomUUID();
    ctx.set(responseHeaders(ctx.state.requestId));
    return next();
  };
}

/** Records every answered request in the log and the metrics, once it is answered. */
function observe(logger: Logger, metrics: Metrics) {
  const lines = requestLineLogger(logger);
  return async (ctx: AppContext, next: Next) => {
    const started = performance.now();
    await next();
    const seconds = (performance.now() - started) / 1000;
    const operation = ctx.state.operationId ?? 'none';
    metrics.observe(operation, ctx.status, seconds, ctx.state.outcome);
    const { requestId } = ctx.state;
    const ms = Math.round(seconds * 1e4) / 10;
    lines.info({ requestId, method: ctx.method, path: ctx.path, operation, status: ctx.status, ms }, 'request');
  };
}

/**
 * JSON bodies go out as exactly application/json: RFC 8259 defines no charset parameter, and
 * strict clients (Dredd) compare the whole value.
 */
function exactJsonType() {
  return async (ctx: AppContext, next: Next) => {
    await next();
    if (typeof ctx.body === 'object' && ctx.body !== null) ctx.set('Content-Type', 'application/json');
  };
}

/**
 * The operations that are OAuth endpoints: a failure with an RFC 6749 §5.2 error code is
 * answered in that form (`{"error": ...}`), as OAuth clients expect; the FIB operations keep
 * the envelope (docs/design.md §11).
 */
const OAUTH_OPERATIONS = new Set(['introspectToken']);

/** The one error layer: every error becomes the envelope (or OAuth error) its failure's table row describes. */
function answerErrors(logger: Logger) {
  return async (ctx: AppContext, next: Next) => {
    try {
      await next();
    } catch (error) {
      const { status, message, outcome, headers, internal, oauthError } = refusal(error, ctx.state.requestId);
      if (internal) logger.error({ requestId: ctx.state.requestId, err: internal }, 'request failed');
      ctx.state.outcome = outcome;
      ctx.set(headers);
      ctx.status = status;
      ctx.body =
        oauthError && OAUTH_OPERATIONS.has(ctx.state.operationId ?? '')
          ? { error: oauthError, error_description: message }
          : envelope(status, message, {});
    }
  };
}

/**
 * CORS for the origins on the allow-list only: they may send `Authorization`, and read the
 * request id. Other origins get no CORS headers, so browsers keep them out.
 */
function cors(allowedOrigins: ReadonlySet<string>, api: OpenAPIBackend) {
  return (ctx: KoaContext, next: Next) => {
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

const FORM = 'application/x-www-form-urlencoded';

/**
 * A form's fields; a field sent twice stays a list, which the schema (one string each) refuses,
 * as RFC 7662 §2.1 wants.
 */
function formFields(text: string): Record<string, string | string[]> {
  const fields: Record<string, string | string[]> = {};
  for (const [name, value] of new URLSearchParams(text)) {
    const earlier = fields[name];
    fields[name] = earlier === undefined ? value : [earlier, value].flat();
  }
  return fields;
}

/**
 * An operation's body, in the one media type it accepts: 413 over 16 KiB, 415 in another type,
 * 400 for JSON that does not parse. JSON goes to the router as text: it parses whatever is not
 * an object once more, and would decode a body that is a JSON string a second time.
 */
async function readBody(ctx: KoaContext, mediaType: string): Promise<{ forRouter: string | object; value: unknown } | undefined> {
  let text: string;
  try {
    text = await getRawBody(ctx.req, { limit: MAX_BODY_BYTES, length: ctx.request.length, encoding: 'utf8' });
  } catch (error) {
    const { type } = error as { type?: string };
    if (type === 'entity.too.large') throw new HttpFailure('bodyTooLarge');
    // The connection closed before the body arrived: the client went away, or REQUEST_TIMEOUT
    // passed and the body's 408 was already sent (answerUnparsedRequest). Nobody is left to answer.
    if (type === 'request.aborted') throw new HttpFailure('requestTimeout');
    throw error;
  }
  if (text === '') return undefined; // no body; validation answers that one is required
  if (!ctx.request.is(mediaType)) throw new HttpFailure('mediaTypeUnsupported', mediaType);
  if (mediaType === FORM) {
    const fields = formFields(text);
    return { forRouter: fields, value: fields };
  }
  try {
    return { forRouter: text, value: JSON.parse(text) as unknown };
  } catch {
    throw new HttpFailure('bodyNotJson');
  }
}

/** Finds the contract operation a request addresses and reads its body, if it takes one. */
function route(api: OpenAPIBackend) {
  return async (ctx: AppContext, next: Next) => {
    const routed: RoutedRequest = {
      method: ctx.method,
      path: ctx.path,
      query: ctx.querystring,
      headers: ctx.headers as Record<string, string | string[]>,
    };
    const operation = api.matchOperation(routed);
    ctx.state.operationId = operation?.operationId;
    const [mediaType] = Object.keys((operation?.requestBody as { content?: object } | undefined)?.content ?? {});
    const body = mediaType ? await readBody(ctx, mediaType) : undefined;
    routed.body = body?.forRouter;
    ctx.state.body = body?.value;
    ctx.state.routed = routed;
    await next();
  };
}

/** The email a sign-in body names, lower-cased as emails are matched. */
function emailOf(body: unknown): string | undefined {
  const email = body !== null && typeof body === 'object' ? (body as { email?: unknown }).email : undefined;
  return typeof email === 'string' ? email.toLowerCase() : undefined;
}

/**
 * docs/design.md §12.3: a request over a limit is answered 429 before its handler runs, so it
 * costs no signature verification and stores nothing; its answer counts where a limit counts it.
 */
function limitRequests(limits: RateLimits) {
  return async (ctx: AppContext, next: Next) => {
    const { operationId } = ctx.state;
    if (!limits.appliesTo(operationId)) {
      await next();
      return;
    }
    const answered = limits.admit({
      operationId,
      address: limits.clientAddress(ctx.req),
      email: operationId === 'authorizeUser' ? emailOf(ctx.state.body) : undefined,
    });
    try {
      await next();
    } catch (error) {
      answered(refusal(error, ctx.state.requestId));
      throw error;
    }
    answered({ status: ctx.status });
  };
}

/** Hands each request to the contract's router and writes what its handler returns. */
function dispatch(api: OpenAPIBackend) {
  return async (ctx: AppContext) => {
    const response = (await api.handleRequest(ctx.state.routed!, ctx)) as Envelope<object> | PlainReply<unknown> | NoContent;
    if (response instanceof NoContent) {
      ctx.status = 204;
    } else if (response instanceof PlainReply) {
      ctx.status = response.status;
      ctx.type = response.contentType;
      ctx.set(response.headers);
      ctx.body = response.body;
    } else {
      ctx.status = response.status.code;
      ctx.body = response;
    }
  };
}

/**
 * The middleware of phase timing (src/request-phases.ts), installed only when it is on: the
 * request's timeline, published once the response finished, with 'log' marked after the
 * middleware below it (the request log) returned.
 */
function timePhases() {
  return (ctx: AppContext, next: Next) =>
    timeRequest(async (phases, done) => {
      ctx.res.once('finish', () => {
        phases.mark('answer');
        phases.operation = ctx.state.operationId;
        phases.status = ctx.status;
        done();
      });
      await next();
      phases.mark('log');
    });
}

/** Marks `phase` when the request reaches this middleware (`on: 'way in'`) or when the ones below it returned. */
function markPhase(phase: Phase, on: 'way in' | 'way out') {
  return async (_ctx: AppContext, next: Next) => {
    if (on === 'way in') currentPhases()?.mark(phase);
    await next();
    if (on === 'way out') currentPhases()?.mark(phase);
  };
}

export interface AppOptions {
  logger: Logger;
  metrics: Metrics;
  corsOrigins: ReadonlySet<string>;
  limits: RateLimits;
}

export function createApp(api: OpenAPIBackend, { logger, metrics, corsOrigins, limits }: AppOptions): Koa {
  const app = new Koa();
  const timed = phaseTimingRequested();
  if (timed) app.use(timePhases());
  app.use(identify());
  app.use(observe(logger, metrics));
  if (timed) app.use(markPhase('handler', 'way out'));
  app.use(exactJsonType());
  app.use(answerErrors(logger));
  app.use(cors(corsOrigins, api));
  app.use(route(api));
  if (timed) app.use(markPhase('route', 'way in'));
  app.use(limitRequests(limits));
  app.use(dispatch(api));
  // Errors after the response started (a client that went away) have no one to answer.
  app.on('error', (err) => logger.warn({ err }, 'response stream failed'));
  return app;
}

/** The failure of a request Node's parser refuses, by the parser's error code. */
const PARSER_REFUSALS: Record<string, HttpFailureReason> = {
  HPE_HEADER_OVERFLOW: 'headersTooLarge',
  ERR_HTTP_REQUEST_TIMEOUT: 'requestTimeout',
};

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
    const { status, message } = refusalOf(PARSER_REFUSALS[error.code ?? ''] ?? 'requestUnparsable');
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
