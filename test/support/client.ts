import { logEntries, type LogEntry, type TestServer } from './harness.js';

/** The refresh requests the server has answered so far, whatever their status, from its request log. */
export function refreshesSeen(t: TestServer): LogEntry[] {
  return logEntries(t).filter((entry) => entry.msg === 'request' && entry.operation === 'refreshTokens');
}
