import { refusalOf, type Failure, type HttpFailureReason } from '../contract/failures.js';
import { AuthFailure } from '../domain/failures.js';

/** A failure of the HTTP layer's own; `detail` fills the message where the table's takes one. */
export class HttpFailure extends Error {
  constructor(
    readonly reason: HttpFailureReason,
    readonly detail = '',
    readonly headers: Record<string, string> = {},
  ) {
    super(reason);
    this.name = 'HttpFailure';
  }
}

export interface Refusal extends Omit<Failure, 'challenge'> {
  headers: Record<string, string>;
  /** The error to log: set only for failures that are the server's own (500). */
  internal?: unknown;
}

/** Every error becomes a refusal here, and only here. */
export function refusal(error: unknown, requestId: string): Refusal {
  if (error instanceof AuthFailure || error instanceof HttpFailure) {
    const { challenge, ...answer } = refusalOf(error.reason, error instanceof HttpFailure ? error.detail : '');
    const headers = error instanceof HttpFailure ? { ...error.headers } : {};
    return { ...answer, headers: challenge ? { ...headers, 'WWW-Authenticate': challenge } : headers };
  }
  return { ...refusalOf('internal', requestId), headers: {}, internal: error };
}
