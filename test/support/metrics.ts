import { bodyOf, type TestServer } from './harness.js';

/** The value of one sample of a Prometheus text exposition, or undefined. */
export function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** How many signatures of this kind the server has verified so far, from its metrics. */
export async function verifications(t: TestServer, signature: 'token' | 'user'): Promise<number> {
  const reply = await t.call('GET', '/metrics');
  return sample(await bodyOf(reply, 'getMetrics', 200), `fib_auth_signature_verifications_total{signature="${signature}"}`)!;
}
