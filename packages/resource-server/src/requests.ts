/** A GET's answer: its status and its body read as JSON (undefined when it is not JSON). */
export interface Answer {
  status: number;
  body: unknown;
}

/**
 * GETs `url` and reads the whole answer within `timeoutMs`, or rejects. The timer is this
 * function's own, cleared when the request settles: a timeout signal that only fetch or
 * `AbortSignal.any()` holds is garbage-collected on Node 20 and never fires
 * (nodejs/node#55428), which left a hung request waited for until a restart.
 */
export async function getJson(
  url: string,
  { headers, timeoutMs, signal }: { headers?: Record<string, string>; timeoutMs: number; signal: AbortSignal },
): Promise<Answer> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error(`GET ${url} did not answer within ${timeoutMs / 1000} seconds`)),
    timeoutMs,
  );
  const stop = () => controller.abort(signal.reason);
  signal.addEventListener('abort', stop);
  try {
    signal.throwIfAborted();
    const response = await fetch(url, { headers, signal: controller.signal });
    const text = await response.text();
    return { status: response.status, body: parsedOrUndefined(text) };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', stop);
  }
}

function parsedOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;

/** How long to wait before the next try after `failures` failures in a row: doubling, jittered, at most 2 s. */
export function retryDelayMs(failures: number): number {
  // Jittered, so that resource servers cut off together do not come back together.
  return Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** failures) * (0.5 + Math.random() / 2);
}

/** A failure in one line, with its cause: fetch's "fetch failed" alone does not say ECONNREFUSED. */
export function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.cause instanceof Error ? `${error.message} (${error.cause.message})` : error.message;
}
