import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { epochSeconds, type Clock } from './clock.js';
import { AuthFailure } from './failures.js';
import type { Store } from './store.js';

/** Client ids are safe in a URL, a log line and HTTP Basic without encoding. */
export const CLIENT_ID_PATTERN = /^[A-Za-z0-9._~-]{1,64}$/;

const hashOf = (secret: string) => createHash('sha256').update(secret, 'utf8').digest();
/** Compared against when the id is unknown, so that an unknown id takes as long as a wrong secret. */
const NO_CLIENT_HASH = hashOf(randomBytes(32).toString('base64url'));

/**
 * Resource-server clients (docs/design.md §11). A secret is 256 random bits, shown once; only
 * its SHA-256 is stored: a slow password hash protects guessable secrets, and these are not.
 */
export class Clients {
  constructor(
    private readonly store: Store,
    private readonly now: Clock,
  ) {}

  /** Registers a client; returns its secret, or undefined when the id is taken. */
  async add(id: string): Promise<string | undefined> {
    const secret = randomBytes(32).toString('base64url');
    const added = await this.store.addClient({
      id,
      secretHash: hashOf(secret).toString('hex'),
      createdAt: epochSeconds(this.now),
    });
    return added ? secret : undefined;
  }

  /** Resolves for a registered client's own secret; otherwise throws `clientCredentialsInvalid`. */
  async authenticate(id: string, secret: string): Promise<void> {
    const client = CLIENT_ID_PATTERN.test(id) ? await this.store.findClient(id) : undefined;
    const expected = client ? Buffer.from(client.secretHash, 'hex') : NO_CLIENT_HASH;
    if (!timingSafeEqual(hashOf(secret), expected) || !client) throw new AuthFailure('clientCredentialsInvalid');
  }
}
