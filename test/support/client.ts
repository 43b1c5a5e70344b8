import type { TestServer } from './harness.js';
import { ALICE } from './vectors.js';

/** Alice's sign-in body: the FIB signing guide's test vector (DESIGN §4). */
export const ALICE_SIGN_IN = { email: ALICE.email, signature: ALICE.signature, authPublicKeyHex: ALICE.publicKeyHex };

/** The refresh requests the server has answered so far, whatever their status, from its request log. */
export function refreshesSeen(t: TestServer): { status: number }[] {
  return t.logs.map((line) => JSON.parse(line)).filter((entry) => entry.msg === 'request' && entry.operation === 'refreshTokens');
}
