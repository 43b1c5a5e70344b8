import { KeyObject } from 'node:crypto';
import { exportJWK, importJWK, type CryptoKey, type JWK } from 'jose';
import type { Clock } from './clock.js';
import { signingKeyFrom, type SigningKey } from './keys.js';

/** A public key kept to verify tokens after its private half stopped signing (or before it starts). */
export interface VerificationKey {
  kid: string;
  jwk: JWK;
  /** Epoch seconds after which no token it signed can be live; null while it is the next signer. */
  notAfter: number | null;
}

/** What the ring is made of; where it is kept (files, src/key-files.ts) is not the domain's business. */
export interface KeyMaterial {
  signing: KeyObject;
  verification: VerificationKey[];
}

export type PublicJwk = { kty: 'OKP'; crv: 'Ed25519'; x: string; kid: string; alg: 'EdDSA'; use: 'sig' };

interface Keys {
  signer: SigningKey;
  verifiers: Map<string, { key: KeyObject; jwk: JWK }>;
}

async function keysOf(material: KeyMaterial, now: number): Promise<Keys> {
  const signer = await signingKeyFrom(material.signing);
  const verifiers = new Map([[signer.kid, { key: KeyObject.from(signer.publicKey), jwk: await exportJWK(signer.publicKey) }]]);
  for (const entry of material.verification) {
    if (verifiers.has(entry.kid) || (entry.notAfter !== null && entry.notAfter * 1000 <= now)) continue;
    const key = KeyObject.from((await importJWK(entry.jwk, 'EdDSA')) as CryptoKey);
    verifiers.set(entry.kid, { key, jwk: entry.jwk });
  }
  return { signer, verifiers };
}

/** The keys, unless their signer has been withdrawn: a withdrawn key must not sign tokens every instance refuses. */
function refusingWithdrawnSigner(keys: Keys, withdrawn: ReadonlySet<string>): Keys {
  if (withdrawn.has(keys.signer.kid)) {
    throw new Error(
      `the signing key ${keys.signer.kid} has been withdrawn: make another key the signer (fib-auth keys rotate) first`,
    );
  }
  return keys;
}

/**
 * The server's keys, selected by `kid`: one signs, every other still-live one only verifies.
 * `reload()` reads the source again and picks up a rotation without a restart (the server
 * does it on SIGHUP). A withdrawn key (`withdraw`, docs/design.md §5) never verifies and is
 * not published, whatever the source holds; one never signs.
 */
export class KeyRing {
  private constructor(
    private readonly source: () => KeyMaterial,
    private readonly now: Clock,
    private keys: Keys,
    private readonly withdrawn: Set<string>,
  ) {}

  /** Reads the source; `withdrawn` are the keys withdrawn so far, which the signer must not be. */
  static async load(source: () => KeyMaterial, now: Clock, withdrawn: Iterable<string> = []): Promise<KeyRing> {
    const withdrawnSet = new Set(withdrawn);
    return new KeyRing(source, now, refusingWithdrawnSigner(await keysOf(source(), now()), withdrawnSet), withdrawnSet);
  }

  /** Reads the source again; a source whose signer has been withdrawn is refused, and the keys stay. */
  async reload(): Promise<void> {
    this.keys = refusingWithdrawnSigner(await keysOf(this.source(), this.now()), this.withdrawn);
  }

  /** Stops trusting these keys, for good; returns those it had not stopped trusting before. */
  withdraw(kids: Iterable<string>): string[] {
    const fresh = [...new Set(kids)].filter((kid) => !this.withdrawn.has(kid));
    for (const kid of fresh) this.withdrawn.add(kid);
    return fresh;
  }

  get signer(): SigningKey {
    return this.keys.signer;
  }

  verifier(kid: string): KeyObject | undefined {
    return this.withdrawn.has(kid) ? undefined : this.keys.verifiers.get(kid)?.key;
  }

  /** The public keys, signer first, as a JWKS lists them. */
  jwks(): PublicJwk[] {
    return [...this.keys.verifiers]
      .filter(([kid]) => !this.withdrawn.has(kid))
      .map(([kid, { jwk }]) => ({
        kty: 'OKP',
        crv: 'Ed25519',
        x: jwk.x!,
        kid,
        alg: 'EdDSA',
        use: 'sig',
      }));
  }
}
