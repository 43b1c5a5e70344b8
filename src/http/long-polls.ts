import { HttpFailure } from './refusals.js';

const POLICY = 'long-polls-per-client';

/**
 * Long polls of the revocation feed that each client holds open, at most `cap` at once
 * (docs/design.md §11): each holds a connection for up to 30 s, and one client's polls must not
 * take the connections that other clients and logouts need. A resource server needs one.
 */
export class LongPolls {
  /** The moments (performance.now()) by which each client's open polls answer at the latest. */
  private readonly deadlines = new Map<string, number[]>();

  constructor(private readonly cap: number) {}

  /**
   * Takes one for `client`, waiting up to `waitSeconds`, and returns the function that gives it
   * back; over the cap, throws the 429, whose Retry-After is when the client's first poll ends.
   */
  hold(client: string, waitSeconds: number): () => void {
    const now = performance.now();
    const held = this.deadlines.get(client) ?? [];
    if (held.length >= this.cap) {
      const seconds = Math.max(1, Math.ceil((Math.min(...held) - now) / 1000));
      throw new HttpFailure('tooManyLongPolls', '', {
        'Retry-After': String(seconds),
        // draft-ietf-httpapi-ratelimit-headers counts concurrent requests in this unit.
        'RateLimit-Policy': `"${POLICY}";q=${this.cap};qu="concurrent-requests"`,
        RateLimit: `"${POLICY}";r=0;t=${seconds}`,
      });
    }
    const deadline = now + waitSeconds * 1000;
    held.push(deadline);
    this.deadlines.set(client, held);
    return () => {
      held.splice(held.indexOf(deadline), 1);
      if (held.length === 0) this.deadlines.delete(client);
    };
  }
}
