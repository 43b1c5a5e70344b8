import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
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
}

/**
 * Reads the PKCS#8 PEM signing key, creating it with mode 0600 when absent. Several instances
 * starting at once race safely: only one creation succeeds (`wx`), the others read its key.
 * A key file that other users may read or write is refused, not warned about: whoever can
 * read it can mint a token for any user, and a warning in a log is easily missed.
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
  const fd = openSync(path, 'r'); // stat and read the same file, whatever happens to the path meanwhile
  try {
    const mode = fstatSync(fd).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new Error(
        `the signing key file ${path} has mode ${mode.toString(8).padStart(4, '0')}: other users can read or change it; chmod 600 it`,
      );
    }
    return { key: createPrivateKey(readFileSync(fd)), created };
  } finally {
    closeSync(fd);
  }
}
