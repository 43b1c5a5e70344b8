/** Where the contract puts the authentication operations. */
export const BASE = '/auth/api/v1/authentication-management';

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/**
 * The ISSUER the test servers run with unless a test sets its own: servers on ports of their
 * own (two instances, a restart) must name one issuer, as every instance of a deployment does.
 * A test that needs the default (`http://localhost:<port>`) passes `ISSUER: ''`.
 */
export const TEST_ISSUER = 'http://localhost';
