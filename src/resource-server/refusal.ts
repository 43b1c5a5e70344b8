import { AuthFailure, type MessageId } from '../domain/failures.js';
import { FAILURE_STATUS } from '../http/envelope.js';

/** Why `verify` refused a request, with the status the resource server answers it with. */
export class VerificationError extends Error {
  constructor(
    readonly status: 401 | 422 | 503,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'VerificationError';
  }
}

/** The refusals of the library's own, when it cannot tell whether a token is still good. */
export const unverifiable = {
  feedNotYetCurrent: () =>
    new VerificationError(503, 'The revocation feed has not been confirmed current yet; the token cannot be checked.'),
  feedStale: (seconds: number, cause: unknown) =>
    new VerificationError(
      503,
      `The revocation feed has not been confirmed current for ${seconds} seconds; the token cannot be checked.`,
      { cause },
    ),
  keysUnavailable: (cause: unknown) =>
    new VerificationError(503, "The service's signing keys could not be fetched; the token cannot be checked.", { cause }),
  closed: () => new VerificationError(503, 'The verifier has been closed; the token cannot be checked.'),
};

/** The service's refusal of a token as the service itself words it, with the same status. */
export function refusalOf(error: unknown): unknown {
  if (!(error instanceof AuthFailure)) return error;
  return new VerificationError(FAILURE_STATUS[error.kind] as 401 | 422, error.message);
}

/** What the service says of a token whose session the feed reports ended, by the entry's reason. */
const REVOKED_MESSAGE: Record<string, MessageId> = {
  logout: 'accessTokenLoggedOut',
  refresh: 'accessTokenRetired',
  'refresh-reuse': 'sessionRevokedAfterReuse',
  'user-removed': 'sessionEnded',
};

export function revokedRefusal(reason: string): VerificationError {
  // A reason added to the feed after this library was built still revokes the token.
  return refusalOf(new AuthFailure('session-over', REVOKED_MESSAGE[reason] ?? 'sessionEnded')) as VerificationError;
}
