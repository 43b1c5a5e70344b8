import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { exportJWK } from 'jose';
import { ROTATION_GRACE_SECONDS, type KeyMaterial, type VerificationKey } from './domain/key-ring.js';
import { signingKeyFrom } from './domain/keys.js';

/**
 * The key files beside the signing key (docs/design.md §8): the signing key itself, the next
 * one that `keys generate` prepares, and the verification-only public keys.
 */
export function keyPaths(signingKeyFile: string) {
  const dir = dirname(signingKeyFile);
  return { next: join(dir, 'next-signing-key.pem'), verificationDir: join(dir, 'verification-keys') };
}

function newKeyPem(): string {
  return generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/**
 * Reads the PKCS#8 PEM signing key, creating it with mode 0600 when absent. Several instances
 * starting at once race safely: only one creation succeeds (`wx`), the others read its key.
 * A key file that other users may read or write is refused, not warned about: whoever can
 * read it can mint a token for any user, and a warning in a log is easily missed.
 */
export function loadOrCreateKeyFile(path: string): { key: KeyObject; created: boolean } {
  let created = false;
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, newKeyPem(), { mode: 0o600, flag: 'wx' });
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

function readVerificationKeys(dir: string): VerificationKey[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((name) => name.endsWith('.json'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return names.map((name) => JSON.parse(readFileSync(join(dir, name), 'utf8')) as VerificationKey);
}

function writeVerificationKey(dir: string, entry: VerificationKey): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${entry.kid}.json`), JSON.stringify(entry, null, 2) + '\n');
}

/** The key ring's source: what the key files hold now, the signing key created when absent. */
export function keyFileSource(signingKeyFile: string, onCreated: () => void): () => KeyMaterial {
  return () => {
    const { key, created } = loadOrCreateKeyFile(signingKeyFile);
    if (created) onCreated();
    return { signing: key, verification: readVerificationKeys(keyPaths(signingKeyFile).verificationDir) };
  };
}

/** Writes the next signing key and publishes its public half, so instances verify it before it signs. */
export async function generateNextKey(signingKeyFile: string): Promise<string> {
  const { next, verificationDir } = keyPaths(signingKeyFile);
  mkdirSync(dirname(next), { recursive: true });
  try {
    writeFileSync(next, newKeyPem(), { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    throw new Error(`a next signing key is already waiting in ${next}; run fib-auth keys rotate to make it the signer`);
  }
  const key = await signingKeyFrom(loadOrCreateKeyFile(next).key);
  writeVerificationKey(verificationDir, { kid: key.kid, jwk: await exportJWK(key.publicKey), notAfter: null });
  return key.kid;
}

/**
 * Makes the next key (generated now if `generateNextKey` was not run) the signer. The old key
 * keeps verifying until its last token has expired, and keys past that are deleted.
 */
export async function rotateSigningKey(
  signingKeyFile: string,
  longestTokenLifetime: number,
  now = Date.now(),
): Promise<{ signer: string; retired: string; retiredUntil: number }> {
  const { next, verificationDir } = keyPaths(signingKeyFile);
  const old = await signingKeyFrom(loadOrCreateKeyFile(signingKeyFile).key);
  const incoming = await signingKeyFrom(loadOrCreateKeyFile(next).key); // creates it when absent
  const retiredUntil = Math.floor(now / 1000) + longestTokenLifetime + ROTATION_GRACE_SECONDS;
  writeVerificationKey(verificationDir, { kid: old.kid, jwk: await exportJWK(old.publicKey), notAfter: retiredUntil });
  renameSync(next, signingKeyFile);
  for (const entry of readVerificationKeys(verificationDir)) {
    const expired = entry.notAfter !== null && entry.notAfter * 1000 <= now;
    if (expired || entry.kid === incoming.kid) rmSync(join(verificationDir, `${entry.kid}.json`));
  }
  return { signer: incoming.kid, retired: old.kid, retiredUntil };
}
