/**
 * `node --import tsx bench/token-shape.ts`: the CPU the server spends per token, in this
 * process, for the choices of docs/design.md §5: tokens with `iss`, `aud` and `client_id`
 * against the claims they had before, and a refresh token that is a JWT (verified with
 * Ed25519) against an opaque one (256 random bits, stored as its SHA-256). Each variant runs
 * in interleaved rounds, so that other work on the machine weighs on each alike; the report
 * gives medians of CPU time (user + system) per operation and the ratios within this run.
 */
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { parseToken } from '../src/domain/bearer.js';
import { KeyRing } from '../src/domain/key-ring.js';
import { Lifetimes } from '../src/domain/lifetimes.js';
import { Tokens } from '../src/domain/tokens.js';

const ROUNDS = 9;
const PER_ROUND = 1500;

const keys = await KeyRing.load(() => ({ signing: generateKeyPairSync('ed25519').privateKey, verification: [] }), Date.now);
const identity = { issuer: 'https://auth.fib.example', audience: ['fib-api'] };
const tokens = new Tokens(
  keys,
  new Lifetimes({ accessToken: 300, refreshToken: 86400, signInChallenge: 60 }),
  () => identity,
  Date.now,
);
const subject = { accountId: randomUUID(), email: 'alice@wonderland.space', role: 'ROLE_PEER' };

/** A pair signed as the server signed it before tokens named their issuer and audience. */
async function pairWithoutIssuer() {
  const { kid, privateKey } = keys.signer;
  const [iat, sid, accessJti] = [Math.floor(Date.now() / 1000), randomUUID(), randomUUID()];
  const sign = (claims: object, typ: string, exp: number) =>
    new SignJWT({ ...claims })
      .setProtectedHeader({ alg: 'EdDSA', typ, kid })
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(randomUUID())
      .sign(privateKey);
  const [accessToken, refreshToken] = await Promise.all([
    sign({ acc: subject.accountId, sub: subject.email, role: subject.role, sid }, 'at+jwt', iat + 300),
    sign({ sub: subject.email, sid, acjti: accessJti }, 'refresh+jwt', iat + 86400),
  ]);
  return { accessToken, refreshToken };
}

const withIssuer = await tokens.issuePair(subject, randomUUID());
const withoutIssuer = await pairWithoutIssuer();
const opaque = randomBytes(32).toString('base64url');

const variants: Record<string, () => unknown> = {
  'issue a pair, without iss/aud/client_id (before)': pairWithoutIssuer,
  'issue a pair, with iss/aud/client_id (now)': () => tokens.issuePair(subject, randomUUID()),
  'verify an access token, before': () => tokens.verify(parseToken(withoutIssuer.accessToken), 'access'),
  'verify an access token, now': () => tokens.verify(parseToken(withIssuer.accessToken), 'access'),
  'verify a refresh token (JWT, now)': () => tokens.verify(parseToken(withIssuer.refreshToken), 'refresh'),
  'an opaque refresh token: hash it for the lookup': () => createHash('sha256').update(opaque).digest(),
  'an opaque refresh token: issue and hash it': () => createHash('sha256').update(randomBytes(32).toString('base64url')).digest(),
};

const samples = new Map<string, number[]>(Object.keys(variants).map((name) => [name, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, run] of Object.entries(variants)) {
    const started = process.cpuUsage();
    for (let i = 0; i < PER_ROUND; i++) await run();
    const { user, system } = process.cpuUsage(started);
    samples.get(name)!.push((user + system) / PER_ROUND);
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const perOp = Object.fromEntries([...samples].map(([name, values]) => [name, median(values)]));
for (const [name, micros] of Object.entries(perOp)) console.log(`${micros.toFixed(1).padStart(8)} µs CPU  ${name}`);
const ratio = (a: string, b: string) => (perOp[a] / perOp[b]).toFixed(2);
console.log(
  `issuing, now/before: ${ratio('issue a pair, with iss/aud/client_id (now)', 'issue a pair, without iss/aud/client_id (before)')}`,
);
console.log(`verifying an access token, now/before: ${ratio('verify an access token, now', 'verify an access token, before')}`);
console.log(
  `a refresh token's check, JWT/opaque: ${ratio('verify a refresh token (JWT, now)', 'an opaque refresh token: hash it for the lookup')}`,
);
