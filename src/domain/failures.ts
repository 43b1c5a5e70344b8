/**
 * Why a request was refused, in domain terms. The HTTP layer maps each kind to one status
 * (src/http/envelope.ts); the messages are the exact sentences the contract's examples show.
 */
export type FailureKind =
  | 'credentials-unreadable' // DESIGN §3.1: the bearer token cannot be parsed
  | 'token-untrusted' // §3.2: the token's signature cannot be trusted
  | 'token-unacceptable' // §3.3: authentic, but expired, of the wrong type or lacking claims
  | 'user-not-found' // §3.4 and §4: no registered user
  | 'session-over' // §3.5: logged out, retired by a refresh, or revoked
  | 'sign-in-rejected'; // §4: the signature or public key does not prove the user

export const messages = {
  authorizationMissing: 'The Authorization header is missing.',
  authorizationRepeated: 'The request has more than one Authorization header.',
  authorizationSchemeNotBearer: 'The Authorization scheme must be Bearer.',
  authorizationCredentialCount: 'The Authorization header must hold exactly one bearer token.',
  tokenTooLong: 'The bearer token is longer than 4096 characters.',
  tokenNotCompactJws: 'The bearer token is not three base64url segments separated by dots.',
  tokenPartsNotJson: "The bearer token's header or payload is not a JSON object.",

  tokenSignatureMalformed: 'The token signature is not base64url of 64 bytes.',
  tokenAlgorithmRejected: 'The token algorithm must be EdDSA.',
  tokenKeyIdMissing: 'The token has no key id (kid).',
  tokenKeyIdUnknown: "The token's key id names no key of this server.",
  tokenSignatureInvalid: 'The token signature does not verify.',
  tokenHeaderUnsupported: 'The token carries a header parameter this server does not accept.',

  accessTokenExpired: 'The access token has expired; refresh the token pair, then log out with the new access token.',
  refreshTokenExpired: 'The refresh token has expired; sign in again.',
  notAnAccessToken: 'The bearer token is not an access token.',
  notARefreshToken: 'The bearer token is not a refresh token.',
  tokenClaimsMissing: 'The bearer token lacks a required claim or has one of the wrong type.',

  userNotFound: 'User has not been found.',

  accessTokenLoggedOut: 'The access token has already been logged out.',
  accessTokenRetired: 'The access token was retired by a token refresh; use the newest access token.',
  sessionLoggedOut: 'The session has been logged out; sign in again.',
  refreshTokenReused: 'The refresh token has already been used; the session is now revoked, sign in again.',
  sessionRevokedAfterReuse: 'The session was revoked because a refresh token was used twice; sign in again.',
  sessionEnded: 'The session has ended; sign in again.',

  signatureNotHex: 'The signature must be 128 hexadecimal characters.',
  publicKeyInvalid: 'The authPublicKeyHex must be 64 hexadecimal characters naming a valid Ed25519 public key.',
  publicKeyNotRegistered: "The public key is not the user's registered Authorization key.",
  signatureNotVerified: 'The signature does not verify for this email and public key.',
} as const;

export type MessageId = keyof typeof messages;

export class AuthFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    readonly messageId: MessageId,
  ) {
    super(messages[messageId]);
    this.name = 'AuthFailure';
  }
}
