import { createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { messageDigest } from '../../src/domain/signature.js';

/** The FIB signing guide's public example data, the README's test vectors ("The signed message and its test vectors"): not a credential. */
export const ALICE = {
  email: 'alice@wonderland.space',
  privateKeyHex: '413b285d1819a6166b0daa762bb6bef2d082cffb9a13ce041cb0fda5e2f06dc3',
  publicKeyHex: '7fbedb314a9b0c00caef967ac5cabb982ec45da828a0c58a9aafc854f32422ac',
  signature:
    '57e7115dfb9faa9add2d2ceb321c20db8c1e7f468d2ffc122793fa61e8ed61581580faaeae83a07fe857894bb33defd61c4ba099b981020146fe8d2be00e630a',
};
/** Alice's sign-in body, as the contract's SignedIn example has it. */
export const ALICE_SIGN_IN = { email: ALICE.email, signature: ALICE.signature, authPublicKeyHex: ALICE.publicKeyHex };
export const BOB_SIGNATURE =
  'c7126087ca5b91fe0466dee18cdcf9a084c03458691a77da84c5d05a869e1285af9082f915e6546f529363035329e6f9ea94c4098e92c633eb095e351ebbc30c';

const PKCS8_ED25519_PREFIX = '302e020100300506032b657004220420';

export function ed25519FromSeed(seedHex: string): KeyObject {
  return createPrivateKey({ key: Buffer.from(PKCS8_ED25519_PREFIX + seedHex, 'hex'), format: 'der', type: 'pkcs8' });
}

/** Signs a message the way a FIB client signs its email (docs/design.md §4): the email, or a challenge's message (§12). */
export function signMessage(message: string, privateKey: KeyObject): string {
  return sign(null, messageDigest(message), privateKey).toString('hex');
}

export function publicKeyHexOf(privateKey: KeyObject): string {
  const jwk = privateKey.export({ format: 'jwk' });
  return Buffer.from(jwk.x as string, 'base64url').toString('hex');
}

/** The sign-in body of the user `email` whose key is `privateKey`, as a FIB client sends it. */
export function signInBody(email: string, privateKey: KeyObject) {
  return { email, signature: signMessage(email, privateKey), authPublicKeyHex: publicKeyHexOf(privateKey) };
}
