// Each line marked with an error code must fail to compile with exactly that error, and no
// other line may fail (see client-types.test.ts): the types of the client and the mocks bite.
import { createAuthClient } from 'fib-auth-client';
import { authHandlers, createAuthHttp, exampleHandler } from 'fib-auth-client/msw';

const client = createAuthClient({ baseUrl: 'http://localhost:8080' });
const body = { email: 'alice@wonderland.space', signature: '57e7', authPublicKeyHex: '7fbe' };

export async function misuse(): Promise<void> {
  await client.signIn({ email: body.email, signature: body.signature, publicKeyHex: body.authPublicKeyHex }); // TS2561
  await client.signIn({ email: body.email, signature: body.signature }); // TS2345
  await client.logout({ scope: 'everywhere' }); // TS2322
  const signIn = await client.signIn(body);
  console.log(signIn.data.accessToken); // TS18048
  if (signIn.error) {
    if (signIn.error.kind === 'answered' && signIn.error.status.code === 401) return; // TS2367
    return;
  }
  console.log(signIn.data.idToken); // TS2339
  const token: string = await client.accessToken(); // TS2322
  console.log(token);
  createAuthClient({ baseUrl: 'http://localhost:8080', storage: globalThis.localStorage }); // TS2739
  createAuthClient({ baseUrl: 'http://localhost:8080', tokenOrigins: 'https://reports.example.com' }); // TS2322
}

const http = createAuthHttp();
const codeAsString = { status: { code: '200', name: 'OK', message: 'Logged out.' }, data: {} };
export const handlers = [
  exampleHandler('logout', 'SignedIn'), // TS2345
  ...authHandlers({ answers: { refreshTokens: 'LoggedOut' } }), // TS2322
  http.post('/auth/api/v1/authentication-management/signout', () => new Response()), // TS2345
  http.post('/auth/api/v1/authentication-management/logout', ({ response }) => response(200).json(codeAsString)), // TS2345
];
