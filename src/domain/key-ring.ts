import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { exportJWK, importJWK, type CryptoKey, type JWK } from 'jose';
import { loadOrCreateKeyFile, signingKeyFrom, type KeyFileResult, type SigningKey } from './keys.js';

/** A public key kept to verify tokens after its private half stopped signing (or before it starts). */
interface VerificationKeyFile {
  kid: string;
  jwk: JWK;
  /** Epoch seconds after which no token it signed can be live; null while it is the next signer. */
  notAfter: number | null;
}

export type PublicJwk = { kty: 'OKP'; crv: 'Ed25519'; x: string; kid: string; alg: 'EdDSA'; use: 'sig' };

/** How long past the last token's expiry a retired key keeps verifying: time for every instance to reload. */
export const ROTATION_GRACE_SECONDS = 300;

/** Files beside the signing key: the key `keys generate` prepares, and the verification-only keys. */
export function keyPaths(signingKeyFile: string) {
  const dir = dirname(signingKeyFile);
  return { next: join(dir, 'next-signing-key.pem'), verificationDir: join(dir, 'verification-keys') };
}

function readVerificationKeys(dir: string): VerificationKeyFile[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((name) => name.endsWith('.json'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return names.map((name) => JSON.parse(readFileSync(join(dir, name), 'utf8')) as VerificationKeyFile);
}

function writeVerificationKey(dir: string, entry: VerificationKeyFile): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${entry.kid}.json`), JSON.stringify(entry, null, 2) + '\n');
}

/**
 * The server's keys, selected by `kid`: one signs, every other still-live one only verifies.
 * `reload()` picks up a rotation without a restart (the server does it on SIGHUP).
 */
export class KeyRing {
  private constructor(
    private readonly signingKeyFile: string,
    public signer: SigningKey,
    private verifiers: Map<string, { key: CryptoKey; jwk: JWK }>,
  ) {}

  static async load(signingKeyFile: string, now = Date.now()): Promise<{ ring: KeyRing; keyFile: KeyFileResult }> {
    const keyFile = loadOrCreateKeyFile(signingKeyFile);
    const ring = new KeyRing(signingKeyFile, await signingKeyFrom(keyFile.key), new Map());
    await ring.loadVerifiers(now);
    return { ring, keyFile };
  }

  async reload(now = Date.now()): Promise<void> {
    this.signer = await signingKeyFrom(loadOrCreateKeyFile(this.signingKeyFile).key);
    await this.loadVerifiers(now);
  }

  private async loadVerifiers(now: number): Promise<void> {
    const verifiers = new Map([[this.signer.kid, { key: this.signer.publicKey, jwk: await exportJWK(this.signer.publicKey) }]]);
    for (const entry of readVerificationKeys(keyPaths(this.signingKeyFile).verificationDir)) {
      if (verifiers.has(entry.kid) || (entry.notAfter !== null && entry.notAfter * 1000 <= now)) continue;
      verifiers.set(entry.kid, { key: (await importJWK(entry.jwk, 'EdDSA')) as CryptoKey, jwk: entry.jwk });
    }
    this.verifiers = verifiers;
  }

  verifier(kid: string): CryptoKey | undefined {
    return this.verifiers.get(kid)?.key;
  }

  /** The public keys, signer first, as a JWKS lists them. */
  jwks(): PublicJwk[] {
    return [...this.verifiers].map(([kid, { jwk }]) => ({
      kty: 'OKP',
      crv: 'Ed25519',
      x: jwk.x!,
      kid,
      alg: 'EdDSA',
      use: 'sig',
    }));
  }
}

function newKeyPem(): string {
  return generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
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
