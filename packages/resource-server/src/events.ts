/**
 * What the verifier tells its `onEvent` option: the changes an operator must hear of. Each
 * event has a `message`, one line for a log; the other fields are for a program.
 */
export type VerifierEvent =
  /** The revocation set has not been confirmed current for `maxStalenessSeconds`: every token is refused with 503. */
  | { type: 'stale'; message: string; seconds: number; reason: string }
  /** The revocation set is current again after a `stale`: tokens are checked normally. */
  | { type: 'recovered'; message: string; staleSeconds: number }
  /** The feed refused the client (401, 403, 404 or 400): wrong credentials or URL; the library keeps asking. */
  | { type: 'feed-refused'; message: string; status: number }
  /** The service withdrew a signing key: tokens with this `kid` are refused until `until` (epoch seconds). */
  | { type: 'key-withdrawn'; message: string; kid: string; until: number }
  /** A scheduled JWKS refresh failed; the keys fetched before stay in use. */
  | { type: 'keys-refresh-failed'; message: string; reason: string };

export type EventListener = (event: VerifierEvent) => void;

/** The default `onEvent`: one line per event on standard error. */
export const writeEventToStderr: EventListener = (event) => {
  process.stderr.write(`fib-auth-resource-server: ${event.message}\n`);
};
