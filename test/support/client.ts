import type { TestServer } from './harness.js';

/** The refresh requests the server has answered so far, whatever their status, from its request log. */
export function refreshesSeen(t: TestServer): { status: number }[] {
  return t.logs.map((line) => JSON.parse(line)).filter((entry) => entry.msg === 'request' && entry.operation === 'refreshTokens');
}
