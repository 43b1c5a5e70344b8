/** Where the contract puts the authentication operations. */
export const BASE = '/auth/api/v1/authentication-management';

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
