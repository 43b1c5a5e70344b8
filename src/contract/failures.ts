/**
 * The contract's vocabulary of failures (docs/design.md §10): every failure the service answers,
 * which the HTTP layer and fib-auth-resource-server both answer from, and the metrics outcomes.
 */
import { maxHeaderSize } from 'node:http';
import type { FailureReason } from '../domain/failures.js';

export const MAX_BODY_BYTES = 16 * 1024;

/** Failures of the HTTP layer itself, found before or around the domain. */
export type HttpFailureReason =
  | 'noOperation'
  | 'methodNotAllowed'
  | 'requestInvalid'
  | 'bodyTooLarge'
  | 'mediaTypeUnsupported'
  | 'bodyNotJson'
  | 'headersTooLarge'
  | 'requestTimeout'
  | 'requestUnparsable'
  | 'tooManyRefusedRequests'
  | 'tooManyFailedSignIns'
  | 'tooManyLongPolls'
  | 'tooManyChallenges'
  | 'storeUnavailable'
  | 'internal';

/** The `outcome` label of fib_auth_logout_outcomes_total (a logout's success is `logged_out`). */
export const OUTCOMES = [
  'unreadable',
  'bad_signature',
  'expired',
  'unacceptable',
  'unknown_user',
  'already_over',
  'bad_request',
  'rate_limited',
  'error',
] as const;
export type Outcome = (typeof OUTCOMES)[number];

/**
 * RFC 6750 §3.1: a request without credentials, or with another scheme than Bearer, learns
 * only which scheme to use; `invalid_token` is for a token that was sent (docs/design.md §2).
 */
const BEARER = 'Bearer';
const INVALID_TOKEN = 'Bearer error="invalid_token"';
/** RFC 7617: the challenge of the resource servers' operations (docs/design.md §11). */
const BASIC = 'Basic realm="fib-auth"';

interface FailureAnswer {
  status: 400 | 401 | 404 | 405 | 408 | 413 | 415 | 422 | 429 | 431 | 500 | 503;
  /** The envelope's sentence; a function of the refusal's detail where it names one. */
  message: string | ((detail: string) => string);
  outcome: Outcome;
  /** The `WWW-Authenticate` header of a 401. */
  challenge?: string;
  /** The RFC 6749 §5.2 error code an OAuth endpoint answers with instead of the envelope (docs/design.md §11). */
  oauthError?: 'invalid_client';
}

/**
 * Every failure the service answers, once: its status, sentence, metrics outcome and
 * challenge. The messages are the exact sentences of the contract's examples.
 */
export const FAILURES: Record<FailureReason | HttpFailureReason, FailureAnswer> = {
  // docs/design.md §3.1: the bearer token cannot be parsed
  authorizationMissing: {
    status: 401,
    message: 'The Authorization header is missing.',
    outcome: 'unreadable',
    challenge: BEARER,
  },
  authorizationRepeated: {
    status: 401,
    message: 'The request has more than one Authorization header.',
    outcome: 'unreadable',
    challenge: INVALID_TOKEN,
  },
  authorizationSchemeNotBearer: {
    status: 401,
    message: 'The Authorization scheme must be Bearer.',
    outcome: 'unreadable',
    challenge: BEARER,
  },
  authorizationCredentialCount: {
    status: 401,
    message: 'The Authorization header must hold exactly one bearer token.',
    outcome: 'unreadable',
    challenge: INVALID_TOKEN,
  },
  tokenTooLong: {
    status: 401,
    message: 'The bearer token is longer than 4096 characters.',
    outcome: 'unreadable',
    challenge: INVALID_TOKEN,
  },
  tokenNotCompactJws: {
    status: 401,
    message: 'The bearer token is not three base64url segments separated by dots.',
    outcome: 'unreadable',
    challenge: INVALID_TOKEN,
  },
  tokenPartsNotJson: {
    status: 401,
    message: "The bearer token's header or payload is not a JSON object.",
    outcome: 'unreadable',
    challenge: INVALID_TOKEN,
  },

  // §3.2: the token's signature cannot be trusted
  tokenSignatureMalformed: {
    status: 422,
    message: 'The token signature is not base64url of 64 bytes.',
    outcome: 'bad_signature',
  },
  tokenAlgorithmRejected: { status: 422, message: 'The token algorithm must be EdDSA.', outcome: 'bad_signature' },
  tokenKeyIdMissing: { status: 422, message: 'The token has no key id (kid).', outcome: 'bad_signature' },
  tokenKeyIdUnknown: { status: 422, message: "The token's key id names no key of this server.", outcome: 'bad_signature' },
  tokenSignatureInvalid: { status: 422, message: 'The token signature does not verify.', outcome: 'bad_signature' },
  tokenHeaderUnsupported: {
    status: 422,
    message: 'The token carries a header parameter this server does not accept.',
    outcome: 'bad_signature',
  },

  // §3.3: authentic, but expired, of the wrong type or lacking claims
  accessTokenExpired: {
    status: 401,
    message: 'The access token has expired; refresh the token pair, then log out with the new access token.',
    outcome: 'expired',
    challenge: INVALID_TOKEN,
  },
  refreshTokenExpired: {
    status: 401,
    message: 'The refresh token has expired; sign in again.',
    outcome: 'expired',
    challenge: INVALID_TOKEN,
  },
  notAnAccessToken: {
    status: 401,
    message: 'The bearer token is not an access token.',
    outcome: 'unacceptable',
    challenge: INVALID_TOKEN,
  },
  notARefreshToken: {
    status: 401,
    message: 'The bearer token is not a refresh token.',
    outcome: 'unacceptable',
    challenge: INVALID_TOKEN,
  },
  tokenClaimsMissing: {
    status: 401,
    message: 'The bearer token lacks a required claim or has one of the wrong type.',
    outcome: 'unacceptable',
    challenge: INVALID_TOKEN,
  },

  tokenIssuerOrAudienceOther: {
    status: 401,
    message: 'The bearer token names another issuer or audience than this service accepts.',
    outcome: 'unacceptable',
    challenge: INVALID_TOKEN,
  },

  // §3.4 and §4: no registered user
  userNotFound: { status: 404, message: 'User has not been found.', outcome: 'unknown_user' },

  // §3.5: the session is over
  accessTokenLoggedOut: {
    status: 401,
    message: 'The access token has already been logged out.',
    outcome: 'already_over',
    challenge: INVALID_TOKEN,
  },
  accessTokenRetired: {
    status: 401,
    message: 'The access token was retired by a token refresh; use the newest access token.',
    outcome: 'already_over',
    challenge: INVALID_TOKEN,
  },
  sessionLoggedOut: {
    status: 401,
    message: 'The session has been logged out; sign in again.',
    outcome: 'already_over',
    challenge: INVALID_TOKEN,
  },
  refreshTokenReused: {
    status: 401,
    message: 'The refresh token has already been used; the session is now revoked, sign in again.',
    outcome: 'already_over',
    challenge: INVALID_TOKEN,
  },
  sessionRevokedAfterReuse: {
    status: 401,
    message: 'The session was revoked because a refresh token was used twice; sign in again.',
    outcome: 'already_over',
    challenge: INVALID_TOKEN,
  },
  sessionEnded: {
    status: 401,
    message: 'The session has ended; sign in again.',
    outcome: 'already_over',
    challenge: INVALID_TOKEN,
  },

  // §4 and §12: the signature, public key or challenge does not prove the user
  signatureNotHex: { status: 422, message: 'The signature must be 128 hexadecimal characters.', outcome: 'bad_signature' },
  publicKeyInvalid: {
    status: 422,
    message: 'The authPublicKeyHex must be 64 hexadecimal characters naming a valid Ed25519 public key.',
    outcome: 'bad_signature',
  },
  signInChallengeRequired: {
    status: 422,
    message:
      'This server signs in only with a challenge: request one from /session/challenge, sign its message and send its nonce.',
    outcome: 'unacceptable',
  },
  publicKeyNotRegistered: {
    status: 422,
    message: "The public key is not the user's registered Authorization key.",
    outcome: 'bad_signature',
  },
  signInNonceUnknown: {
    status: 422,
    message: 'The nonce is not one this server issued, or it was purged; request a new challenge.',
    outcome: 'unacceptable',
  },
  signInNonceOfOtherUser: {
    status: 422,
    message: 'The nonce was issued for another email; request a challenge for this one.',
    outcome: 'unacceptable',
  },
  signInNonceUsed: {
    status: 422,
    message: 'The nonce has already been used to sign in; request a new challenge.',
    outcome: 'unacceptable',
  },
  signInNonceExpired: { status: 422, message: 'The nonce has expired; request a new challenge.', outcome: 'unacceptable' },
  signatureNotVerified: {
    status: 422,
    message: 'The signature does not verify for this email and public key.',
    outcome: 'bad_signature',
  },

  // §11: a resource server's client credentials
  clientCredentialsMissing: {
    status: 401,
    message: "The request needs a resource server's client credentials as HTTP Basic.",
    outcome: 'unreadable',
    challenge: BASIC,
    oauthError: 'invalid_client',
  },
  clientCredentialsInvalid: {
    status: 401,
    message: 'The client id and secret are not those of a registered client.',
    outcome: 'unacceptable',
    challenge: BASIC,
    oauthError: 'invalid_client',
  },

  // §15: Shared Signals' streams, of the client's own
  streamNotFound: {
    status: 404,
    message: 'This client has no stream with that stream_id.',
    outcome: 'bad_request',
  },
  streamDeliveryInvalid: {
    status: 400,
    message: 'delivery.method must be urn:ietf:rfc:8936 (poll), or urn:ietf:rfc:8935 (push) with an http or https endpoint_url.',
    outcome: 'bad_request',
  },

  // §9: the request itself
  noOperation: { status: 404, message: 'No operation exists at this path.', outcome: 'bad_request' },
  methodNotAllowed: {
    status: 405,
    message: (method) => `This path does not accept the ${method} method.`,
    outcome: 'bad_request',
  },
  requestInvalid: { status: 400, message: (sentence) => sentence, outcome: 'bad_request' },
  bodyTooLarge: { status: 413, message: `The request body is larger than ${MAX_BODY_BYTES} bytes.`, outcome: 'bad_request' },
  mediaTypeUnsupported: { status: 415, message: (type) => `The request body must be sent as ${type}.`, outcome: 'bad_request' },
  bodyNotJson: { status: 400, message: 'The request body is not valid JSON.', outcome: 'bad_request' },
  // Refused by Node's HTTP parser, before any operation is known (answerUnparsedRequest)
  headersTooLarge: {
    status: 431,
    message: `The request line and headers are larger than ${maxHeaderSize} bytes.`,
    outcome: 'bad_request',
  },
  requestTimeout: { status: 408, message: 'The request did not arrive in time.', outcome: 'bad_request' },
  requestUnparsable: { status: 400, message: 'The request is not valid HTTP/1.1.', outcome: 'bad_request' },

  // §12: limits, checked before any signature is verified or anything is stored
  tooManyRefusedRequests: {
    status: 429,
    message: 'Too many refused requests came from this address; retry after the seconds in Retry-After.',
    outcome: 'rate_limited',
  },
  tooManyFailedSignIns: {
    status: 429,
    message: 'Too many sign-ins failed for this email from this address; retry after the seconds in Retry-After.',
    outcome: 'rate_limited',
  },
  tooManyChallenges: {
    status: 429,
    message: 'Too many sign-in challenges were issued to this address; retry after the seconds in Retry-After.',
    outcome: 'rate_limited',
  },
  // §11, §15: long polls per client, of the revocation feed and of Shared Signals polls
  tooManyLongPolls: {
    status: 429,
    message: 'This client already holds as many long polls as it may; wait for one to be answered.',
    outcome: 'rate_limited',
  },

  // The server's own
  storeUnavailable: {
    status: 503,
    message: 'The store does not answer; do not route requests to this instance.',
    outcome: 'error',
  },
  internal: { status: 500, message: (requestId) => `Internal server error; report request id ${requestId}.`, outcome: 'error' },
};

/** One row of the table, its message filled in. */
export interface Failure {
  /** The failure's name in the table; `internal` for an error that is the server's own. */
  reason: FailureReason | HttpFailureReason;
  status: FailureAnswer['status'];
  message: string;
  outcome: Outcome;
  /** The `WWW-Authenticate` header of a 401. */
  challenge?: string;
  /** The RFC 6749 §5.2 error code, where an OAuth endpoint answers it instead of the envelope. */
  oauthError?: FailureAnswer['oauthError'];
}

/** What the table says for a failure, with its detail filled in. */
export function refusalOf(reason: FailureReason | HttpFailureReason, detail = ''): Failure {
  const { status, message, outcome, challenge, oauthError } = FAILURES[reason];
  return { reason, status, message: typeof message === 'function' ? message(detail) : message, outcome, challenge, oauthError };
}
