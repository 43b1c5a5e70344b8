import type { components } from '../../generated/openapi.js';
import type { TokenIdentity } from '../domain/tokens.js';

const BASE_PATH = '/auth/api/v1/authentication-management';

/**
 * The RFC 8414 authorization server metadata (docs/design.md §14): what is true of this
 * service, and no more. It has no authorization or token endpoint: tokens come from the FIB
 * sign-in, not from an OAuth grant, so it supports no response type and no grant type, and
 * says so (RFC 8414 would otherwise imply `authorization_code` and `implicit`).
 */
export function authorizationServerMetadata({
  issuer,
  audience,
}: TokenIdentity): components['schemas']['AuthorizationServerMetadata'] {
  return {
    issuer,
    jwks_uri: `${issuer}/.well-known/jwks.json`,
    introspection_endpoint: `${issuer}${BASE_PATH}/introspection`,
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    response_types_supported: [],
    grant_types_supported: [],
    fib_access_token_audience: [...audience],
  };
}
