import type { Context } from 'openapi-backend';
import type { components, operations } from '../../generated/openapi.js';
import type { Authentication } from '../domain/authentication.js';
import type { BearerToken } from '../domain/bearer.js';
import type { IssuedPair } from '../domain/tokens.js';
import { envelope } from './envelope.js';

type OperationId = keyof operations;
type SuccessBody<Op extends OperationId> = operations[Op]['responses'][200]['content']['application/json'];
type SignInRequest = components['schemas']['SignInRequest'];

/** The bearer token that the operation's security handler parsed. */
const bearer = (c: Context, scheme: 'accessToken' | 'refreshToken') => c.security[scheme] as BearerToken;

const tokenData = (pair: IssuedPair) => ({
  accessToken: pair.accessToken,
  refreshToken: pair.refreshToken,
  expirationTime: pair.accessTtl,
});

/** One handler per operationId; each returns the response envelope of its 200. */
export function operationHandlers(auth: Authentication): { [Op in OperationId]: (c: Context) => Promise<SuccessBody<Op>> } {
  return {
    async authorizeUser(c) {
      const pair = await auth.signIn(c.request.requestBody as SignInRequest);
      return envelope(200, 'User has been successfully authorized.', tokenData(pair));
    },
    async refreshTokens(c) {
      const pair = await auth.refresh(bearer(c, 'refreshToken'));
      return envelope(200, 'Tokens have been successfully refreshed.', tokenData(pair));
    },
    async logout(c) {
      await auth.logout(bearer(c, 'accessToken'));
      return envelope(200, 'User has been successfully logged out.', {});
    },
  };
}
