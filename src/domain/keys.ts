import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { calculateJwkThumbprint, exportJWK, importJWK, type CryptoKey } from 'jose';

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

export async function signingKeyFrom(privateKey: KeyObject): Promise<SigningKey> {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('the signing key is not an Ed25519 key');
  const publicJwk = await exportJWK(createPublicKey(privateKey));
  const privateJwk = await exportJWK(privateKey);
  return {
    kid: await calculateJwkThumbprint(publicJwk),
    privateKey: (await importJWK(privateJwk, 'EdDSA')) as CryptoKey,
    publicKey: (await importJWK(publicJwk, 'EdDSA')) as CryptoKey,
  };
}

export interface KeyFileResult {
  key: KeyObject;
  created: boolean;
  /** Set when the file can be read by other users than its owner. */
  tooOpen: boolean;
}

/**
 * Reads the PKCS#8 PEM signing key, creating it with mode 0600 when absent. Several instances
 * starting at once race safely: only one creation succeeds (`wx`), the others read its key.
 */
export function loadOrCreateKeyFile(path: string): KeyFileResult {
  let created = false;
  try {
    mkdirSync(dirname(path), { recursive: true });
    const { privateKey } = generateKeyPairSync('ed25519');
    writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    created = true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const key = createPrivateKey(readFileSync(path));
  return { key, created, tooOpen: (statSync(path).mode & 0o077) !== 0 };
}
