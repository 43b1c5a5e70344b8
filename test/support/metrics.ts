import assert from 'node:assert/strict';
import { rawCall, type TestServer } from './harness.js';

/** The value of one sample of a Prometheus text exposition, or undefined. */
export function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The metrics as Prometheus scrapes them, from the management listener. */
export async function scrape(managementUrl: string | undefined): Promise<string> {
  assert.ok(managementUrl, 'the server has a management listener');
  const reply = await rawCall(managementUrl, 'GET', '/metrics');
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  return String(reply.body);
}

/** How many signatures of this kind the server has verified so far, from its metrics. */
export async function verifications(t: TestServer, signature: 'token' | 'user'): Promise<number> {
  return sample(await scrape(t.server.managementUrl), `fib_auth_signature_verifications_total{signature="${signature}"}`)!;
}
