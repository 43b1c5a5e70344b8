/**
 * The errors `fib-auth-resource-server` throws. Each has a stable `code`, as jose's errors do:
 * test `error.code`, not the message, which may be reworded.
 */
export class FibAuthError extends Error {
  static readonly code: string = 'ERR_FIB_AUTH';
  readonly code: string = (this.constructor as typeof FibAuthError).code;
}

/** `createVerifier` was given an option it cannot work with; thrown at once, synchronously. */
export class VerifierOptionsError extends FibAuthError {
  static override readonly code = 'ERR_FIB_AUTH_OPTIONS_INVALID';
  override name = 'VerifierOptionsError';
}

/**
 * The revocation feed refused the client in a way trying again will not fix: 401 (wrong
 * clientId or clientSecret, or a removed client), 403, 404 (`url` names no fib-auth) or 400.
 */
export class FeedRefusedError extends FibAuthError {
  static override readonly code = 'ERR_FIB_AUTH_FEED_REFUSED';
  override name = 'FeedRefusedError';

  constructor(
    message: string,
    /** The feed's HTTP status. */
    readonly status: number,
  ) {
    super(message);
  }
}

/** `ready()` did not resolve within `readyTimeoutSeconds`; `cause` is the last failure, if any. */
export class ReadyTimeoutError extends FibAuthError {
  static override readonly code = 'ERR_FIB_AUTH_READY_TIMEOUT';
  override name = 'ReadyTimeoutError';
}

/** `close()` was called before the verifier was ready. */
export class VerifierClosedError extends FibAuthError {
  static override readonly code = 'ERR_FIB_AUTH_CLOSED';
  override name = 'VerifierClosedError';
}

/** Why `verify` refused a request, with the status the resource server answers it with. */
export class VerificationError extends FibAuthError {
  static override readonly code = 'ERR_FIB_AUTH_TOKEN_REFUSED';
  override name = 'VerificationError';

  constructor(
    readonly status: 401 | 422 | 503,
    message: string,
    /** The `WWW-Authenticate` value to answer a 401 with, as the service does. */
    readonly challenge?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
