/**
 * Why the domain refused a request, one name per cause, in the order of the checks of
 * docs/design.md §3 (bearer tokens), §4 and §12 (sign-in). The domain names the cause only; the one
 * table that gives each its status, sentence, metrics outcome and challenge is
 * src/contract/failures.ts.
 */
export type FailureReason =
  // §3.1: the bearer token cannot be parsed
  | 'authorizationMissing'
  | 'authorizationRepeated'
  | 'authorizationSchemeNotBearer'
  | 'authorizationCredentialCount'
  | 'tokenTooLong'
  | 'tokenNotCompactJws'
  | 'tokenPartsNotJson'
  // §3.2: the token's signature cannot be trusted
  | 'tokenSignatureMalformed'
  | 'tokenAlgorithmRejected'
  | 'tokenKeyIdMissing'
  | 'tokenKeyIdUnknown'
  | 'tokenSignatureInvalid'
  | 'tokenHeaderUnsupported'
  // §3.3: authentic, but expired, of the wrong type or lacking claims
  | 'accessTokenExpired'
  | 'refreshTokenExpired'
  | 'notAnAccessToken'
  | 'notARefreshToken'
  | 'tokenClaimsMissing'
  | 'tokenIssuerOrAudienceOther'
  // §3.4 and §4: no registered user
  | 'userNotFound'
  // §3.5: the session is over
  | 'accessTokenLoggedOut'
  | 'accessTokenRetired'
  | 'sessionLoggedOut'
  | 'refreshTokenReused'
  | 'sessionRevokedAfterReuse'
  | 'sessionEnded'
  // §4 and §12: the signature, public key or challenge does not prove the user
  | 'signatureNotHex'
  | 'publicKeyInvalid'
  | 'signInChallengeRequired'
  | 'publicKeyNotRegistered'
  | 'signInNonceUnknown'
  | 'signInNonceOfOtherUser'
  | 'signInNonceUsed'
  | 'signInNonceExpired'
  | 'signatureNotVerified'
  // §11: a resource server's client credentials
  | 'clientCredentialsMissing'
  | 'clientCredentialsInvalid'
  // §15: Shared Signals' streams
  | 'streamNotFound'
  | 'streamDeliveryInvalid';

export class AuthFailure extends Error {
  constructor(readonly reason: FailureReason) {
    super(reason);
    this.name = 'AuthFailure';
  }
}
