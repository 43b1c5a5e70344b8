import { refusalOf } from '../../../src/contract/failures.js';
import { AuthFailure, type FailureReason } from '../../../src/domain/failures.js';
import { VerificationError } from './errors.js';

/** The refusals of the library's own, when it cannot tell whether a token is still good. */
export const unverifiable = {
  feedNotYetCurrent: () =>
    new VerificationError(503, 'The revocation feed has not been confirmed current yet; the token cannot be checked.'),
  feedStale: (seconds: number, cause: unknown) =>
    new VerificationError(
      503,
      `The revocation feed has not been confirmed current for ${seconds} seconds; the token cannot be checked.`,
      undefined,
      { cause },
    ),
  keysUnavailable: (cause: unknown) =>
    new VerificationError(503, "The service's signing keys could not be fetched; the token cannot be checked.", undefined, {
      cause,
    }),
  metadataUnavailable: (cause: unknown) =>
    new VerificationError(
      503,
      "The service's metadata (its issuer and audience) has not been fetched yet; the token cannot be checked.",
      undefined,
      { cause },
    ),
  closed: () => new VerificationError(503, 'The verifier has been closed; the token cannot be checked.'),
};

/**
 * The library's own refusal of an authentic token that would stay valid longer than this
 * resource server accepts (`maxTokenAgeSeconds`), with the challenge the service gives an
 * expired one.
 */
export const tokenLivesTooLong = (maxSeconds: number) =>
  new VerificationError(
    401,
    `The access token is valid for longer than the ${maxSeconds} seconds this service accepts.`,
    refusalOf('accessTokenExpired').challenge,
  );

/** The service's answer to a refused token, in its words: status, sentence and challenge from its failure table. */
function refusalFor(reason: FailureReason): VerificationError {
  const { status, message, challenge } = refusalOf(reason);
  return new VerificationError(status as 401 | 422, message, challenge);
}

/** A domain failure as the service would answer it; anything else unchanged. */
export function verificationErrorOf(error: unknown): unknown {
  return error instanceof AuthFailure ? refusalFor(error.reason) : error;
}

/** What the service says of a token whose session the feed reports ended, by the entry's reason. */
const REVOKED_BY: Record<string, FailureReason> = {
  logout: 'accessTokenLoggedOut',
  refresh: 'accessTokenRetired',
  'refresh-reuse': 'sessionRevokedAfterReuse',
  'user-removed': 'sessionEnded',
};

export function revokedRefusal(reason: string): VerificationError {
  // A reason added to the feed after this library was built still revokes the token.
  return refusalFor(REVOKED_BY[reason] ?? 'sessionEnded');
}
