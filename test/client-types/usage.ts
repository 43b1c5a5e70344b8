// Compiles without an error: how the client and the mocks are meant to be used (see client-types.test.ts).
import { createAuthClient, indexedDbStorage, type AuthError } from 'fib-auth-client';
import { authHandlers, createAuthHttp, exampleHandler } from 'fib-auth-client/msw';

const client = createAuthClient({
  baseUrl: 'http://localhost:8080',
  storage: indexedDbStorage({ name: 'app.tokens' }),
  tokenOrigins: ['https://reports.example.com'],
});

export async function signInAndOut(signature: string): Promise<string> {
  const signIn = await client.signIn({ email: 'alice@wonderland.space', signature, authPublicKeyHex: '7fbe' });
  if (signIn.error) return describe(signIn.error);
  const lifetime: number = signIn.data.expirationTime;
  const token = await client.accessToken();
  if (token.data !== undefined)
    await client.fetch('https://reports.example.com/api', { headers: { accept: 'application/json' } });
  const logout = await client.logout({ scope: 'global' });
  return logout.error ? describe(logout.error) : `signed out after ${lifetime} s`;
}

function describe(error: AuthError): string {
  switch (error.kind) {
    case 'answered':
      if (error.operation === 'authorizeUser' && error.status.code === 422) return `sign-in refused: ${error.status.message}`;
      return `${error.operation} ${error.status.code}: ${error.status.message} (request ${error.requestId})`;
    case 'unreachable':
      return `no answer: ${error.status.message}`;
    case 'signedOut':
      return 'sign in first';
  }
}

const http = createAuthHttp({ baseUrl: 'http://localhost:8080' });
export const handlers = [
  ...authHandlers({ answers: { authorizeUser: 'UserNotFound', logout: 'LoggedOutEverywhere' } }),
  exampleHandler('logout', 'AccessTokenLoggedOut'),
  exampleHandler('refreshTokens', 'RefreshTokenReused', { baseUrl: 'http://localhost:8080' }),
  http.patch('/auth/api/v1/authentication-management/session', ({ response }) =>
    response(401).json({ status: { code: 401, name: 'Unauthorized', message: 'Custom.' }, data: {} }),
  ),
];
