import { verify, type KeyObject } from 'node:crypto';
import { importJWK, exportJWK, jwtVerify } from 'jose';
import { round } from './load.js';

export interface CeilingSample {
  /** node:crypto `verify` of a KeyObject, one after the other on one core. */
  nodeCryptoPerSecond: number;
  /** jose `jwtVerify` with a WebCrypto key and the server's options, as many in flight as the busiest load. */
  josePerSecond: number;
  /** CPU cores the jose loop kept busy (WebCrypto works on libuv's thread pool). */
  joseCores: number;
}

/** Runs `step` back to back for `seconds`; returns how many ran per second. */
function perSecond(seconds: number, step: () => void): number {
  let count = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  while (performance.now() < deadline) {
    for (let i = 0; i < 100; i++) step();
    count += 100;
  }
  return Math.round(count / ((performance.now() - started) / 1000));
}

/**
 * The ceiling for logout: Ed25519 verifications per second of an access token as the server
 * issues it, in this process, with nothing else to do.
 */
export async function measureCeiling(
  token: string,
  publicKey: KeyObject,
  seconds: number,
  inFlight: number,
): Promise<CeilingSample> {
  const [header, payload, signature] = token.split('.');
  const signingInput = Buffer.from(`${header}.${payload}`);
  const signatureBytes = Buffer.from(signature, 'base64url');
  if (!verify(null, signingInput, publicKey, signatureBytes)) throw new Error('the ceiling token does not verify');
  const nodeCryptoPerSecond = perSecond(seconds, () => verify(null, signingInput, publicKey, signatureBytes));

  const key = await importJWK(await exportJWK(publicKey), 'EdDSA');
  const options = { algorithms: ['EdDSA'], typ: 'at+jwt', requiredClaims: ['acc', 'sub', 'role', 'sid', 'iat', 'exp', 'jti'] };
  let verified = 0;
  const cpuAtStart = process.cpuUsage();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        await jwtVerify(token, key, options);
        verified++;
      }
    }),
  );
  const wall = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuAtStart);
  return {
    nodeCryptoPerSecond,
    josePerSecond: Math.round(verified / wall),
    joseCores: round((cpu.user + cpu.system) / 1e6 / wall),
  };
}
