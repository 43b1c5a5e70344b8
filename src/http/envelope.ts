import type { components } from '../../generated/openapi.js';
import { AuthFailure, type FailureKind } from '../domain/failures.js';

export interface Envelope<Data = Record<string, never>> {
  status: components['schemas']['Status'];
  data: Data;
}

const REASON_PHRASES: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** The HTTP status of each domain failure (DESIGN §3, §4). */
export const FAILURE_STATUS: Record<FailureKind, number> = {
  'credentials-unreadable': 401,
  'token-untrusted': 422,
  'token-unacceptable': 401,
  'user-not-found': 404,
  'session-over': 401,
  'sign-in-rejected': 422,
};

/** The challenge sent with every 401 about a bearer token (RFC 6750 §3). */
export const BEARER_CHALLENGE = 'Bearer error="invalid_token"';

export function envelope<Data extends object>(code: number, message: string, data: Data): Envelope<Data> {
  return { status: { code, name: REASON_PHRASES[code], message }, data };
}

/** A request refused by the HTTP layer before any domain code runs. */
export class RequestRefused extends Error {
  constructor(
    readonly status: 400 | 404 | 405 | 413 | 415,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'RequestRefused';
  }
}

export interface ErrorResponse {
  body: Envelope;
  headers: Record<string, string>;
  /** The error to log: set only for failures that are the server's own (500). */
  internal?: unknown;
}

/** Every error becomes the envelope here, and only here. */
export function errorResponse(error: unknown, requestId: string): ErrorResponse {
  if (error instanceof AuthFailure) {
    const status = FAILURE_STATUS[error.kind];
    const headers: Record<string, string> = status === 401 ? { 'WWW-Authenticate': BEARER_CHALLENGE } : {};
    return { body: envelope(status, error.message, {}), headers };
  }
  if (error instanceof RequestRefused) {
    return { body: envelope(error.status, error.message, {}), headers: error.headers };
  }
  return {
    body: envelope(500, `Internal server error; report request id ${requestId}.`, {}),
    headers: {},
    internal: error,
  };
}
