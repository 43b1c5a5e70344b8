import type { components } from '../../generated/openapi.js';

/** The body of every JSON response (docs/design.md §2). */
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
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function envelope<Data extends object>(code: number, message: string, data: Data): Envelope<Data> {
  return { status: { code, name: REASON_PHRASES[code], message }, data };
}

/** A response outside the envelope: another media type, or JSON a standard defines (JWKS, SSF). */
export class PlainReply<T> {
  constructor(
    readonly body: T,
    readonly contentType: string,
    readonly status: 200 | 201 = 200,
  ) {}
}

/** A 204: done, nothing to say (SSF's stream deletion and verification). */
export class NoContent {}
