import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import {
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  type Stats,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { exportJWK } from 'jose';
import type { KeyMaterial, VerificationKey } from './domain/key-ring.js';
import type { Lifetimes } from './domain/lifetimes.js';
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
 * Who else may touch a key file or folder: nobody may read or change a private key; nobody
 * may change a public key or the folder of public keys.
 */
type Secrecy = 'private' | 'public';
const FORBIDDEN_MODE_BITS: Record<Secrecy, number> = { private: 0o077, public: 0o022 };

const octal = (mode: number) => mode.toString(8).padStart(4, '0');

/**
 * Refuses a key file or folder that another user could have changed (or, for a private key,
 * read): whoever can read a signing key can mint a token for any user, and whoever can change a
 * verification key makes the server trust the tokens they sign. It must belong to this user
 * (or root, who can change anything anyway) and give no one else those permissions. Refused,
 * not warned about: a warning in a log is easily missed. `what` names the file in the error.
 */
function assertOnlyOurs(path: string, stats: Stats, secrecy: Secrecy, what: string): void {
  const uid = process.getuid?.();
  if (uid !== undefined && stats.uid !== uid && stats.uid !== 0) {
    throw new Error(`${what} ${path} belongs to uid ${stats.uid}, not to this user (uid ${uid}): chown it`);
  }
  const mode = stats.mode & 0o777;
  if ((mode & FORBIDDEN_MODE_BITS[secrecy]) !== 0) {
    const can = secrecy === 'private' ? 'read or change' : 'change';
    const fix = stats.isDirectory() ? '755' : secrecy === 'private' ? '600' : '644';
    throw new Error(`${what} ${path} has mode ${octal(mode)}: other users can ${can} it; chmod ${fix} it`);
  }
}

/** Reads a key file after checking it, through one descriptor: the file checked is the file read. */
function readCheckedFile(path: string, secrecy: Secrecy, what: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    assertOnlyOurs(path, fstatSync(fd), secrecy, what);
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

const SIGNING_KEY = 'the signing key file';
const NEXT_SIGNING_KEY = 'the next signing key file';

/**
 * Reads the PKCS#8 PEM signing key, creating it with mode 0600 when absent. Several instances
 * starting at once race safely: only one creation succeeds (`wx`), the others read its key.
 */
export function loadOrCreateKeyFile(path: string, what = SIGNING_KEY): { key: KeyObject; created: boolean } {
  let created = false;
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, newKeyPem(), { mode: 0o600, flag: 'wx' });
    created = true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return { key: createPrivateKey(readCheckedFile(path, 'private', what)), created };
}

/** What `read` returns, or `absent` when the file is not there (any other failure is thrown). */
function unlessAbsent<T, A>(read: () => T, absent: A): T | A {
  try {
    return read();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return absent;
    throw error;
  }
}

/** A private key file, checked as the signing key is; undefined when there is none. */
const readPrivateKeyFile = (path: string, what: string) => unlessAbsent(() => readCheckedFile(path, 'private', what), undefined);

/**
 * The published public keys, each file checked, and their folder. A file that goes while the
 * folder is read (the CLI rotating or withdrawing a key beside a running server) is skipped.
 */
function readVerificationKeys(dir: string): VerificationKey[] {
  const names = unlessAbsent(() => {
    assertOnlyOurs(dir, statSync(dir), 'public', 'the verification key folder');
    return readdirSync(dir).filter((name) => name.endsWith('.json'));
  }, []);
  return names.flatMap((name) =>
    unlessAbsent(
      () => [
        JSON.parse(readCheckedFile(join(dir, name), 'public', 'the verification key file').toString('utf8')) as VerificationKey,
      ],
      [],
    ),
  );
}

function writeVerificationKey(dir: string, entry: VerificationKey): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileSync(join(dir, `${entry.kid}.json`), JSON.stringify(entry, null, 2) + '\n', { mode: 0o644 });
}

/**
 * The key ring's source: what the key files hold now, the signing key created when absent.
 * Every key file is checked (`assertOnlyOurs`), the next signing key's too, though only the
 * CLI uses it: a file that fails stops start-up, and a reload keeps the keys it had.
 */
export function keyFileSource(signingKeyFile: string, onCreated: () => void): () => KeyMaterial {
  const { next, verificationDir } = keyPaths(signingKeyFile);
  return () => {
    const { key, created } = loadOrCreateKeyFile(signingKeyFile);
    if (created) onCreated();
    readPrivateKeyFile(next, NEXT_SIGNING_KEY); // checked as the signing key is: it will sign
    return { signing: key, verification: readVerificationKeys(verificationDir) };
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
    throw new Error(`a next signing key is already waiting in ${next}; run fib-auth keys rotate to make it the signer`, {
      cause: error,
    });
  }
  const key = await signingKeyFrom(loadOrCreateKeyFile(next, NEXT_SIGNING_KEY).key);
  writeVerificationKey(verificationDir, { kid: key.kid, jwk: await exportJWK(key.publicKey), notAfter: null });
  return key.kid;
}

/**
 * Makes the next key (generated now if `generateNextKey` was not run) the signer. The old key
 * keeps verifying until its last token has expired, and keys past that are deleted.
 */
export async function rotateSigningKey(
  signingKeyFile: string,
  lifetimes: Lifetimes,
  now = Date.now(),
): Promise<{ signer: string; retired: string; retiredUntil: number }> {
  const { next, verificationDir } = keyPaths(signingKeyFile);
  const old = await signingKeyFrom(loadOrCreateKeyFile(signingKeyFile).key);
  const incoming = await signingKeyFrom(loadOrCreateKeyFile(next, NEXT_SIGNING_KEY).key); // creates it when absent
  const retiredUntil = lifetimes.retiredKeyUntil(Math.floor(now / 1000));
  writeVerificationKey(verificationDir, { kid: old.kid, jwk: await exportJWK(old.publicKey), notAfter: retiredUntil });
  renameSync(next, signingKeyFile);
  for (const entry of readVerificationKeys(verificationDir)) {
    const expired = entry.notAfter !== null && entry.notAfter * 1000 <= now;
    if (expired || entry.kid === incoming.kid) rmSync(join(verificationDir, `${entry.kid}.json`));
  }
  return { signer: incoming.kid, retired: old.kid, retiredUntil };
}

/** The kids the key files name: the signer's, the next signer's (when one waits), and every published one. */
export interface KeyFileIds {
  signer: string | undefined;
  next: string | undefined;
  published: string[];
}

/** Reads the kids of the key files, creating none. */
export async function keyFileIds(signingKeyFile: string): Promise<KeyFileIds> {
  const { next, verificationDir } = keyPaths(signingKeyFile);
  const kidOf = async (pem: Buffer | undefined) => pem && (await signingKeyFrom(createPrivateKey(pem))).kid;
  return {
    signer: await kidOf(readPrivateKeyFile(signingKeyFile, SIGNING_KEY)),
    next: await kidOf(readPrivateKeyFile(next, NEXT_SIGNING_KEY)),
    published: readVerificationKeys(verificationDir).map((entry) => entry.kid),
  };
}

/**
 * Removes the files of a withdrawn key, so that no restart trusts it again (the store's
 * withdrawal stays the authority): its published public key, and its private key when it is
 * the next signer, which must never sign. Returns the paths removed.
 */
export function removeKeyFiles(signingKeyFile: string, kid: string, ids: KeyFileIds): string[] {
  const { next, verificationDir } = keyPaths(signingKeyFile);
  const files = [
    ...(ids.published.includes(kid) ? [join(verificationDir, `${kid}.json`)] : []),
    ...(ids.next === kid ? [next] : []),
  ];
  for (const file of files) rmSync(file);
  return files;
}
