import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { after, before, describe, test } from 'node:test';
import { PHASES, REQUEST_PHASES_CHANNEL, type RequestPhases } from '../src/request-phases.js';
import { startTestServer, type TestServer } from './support/harness.js';

describe('phase timing (src/request-phases.ts, used by npm run bench:profile)', () => {
  const published: RequestPhases[] = [];
  const record = (message: unknown) => void published.push(message as RequestPhases);
  let untimed: TestServer;
  let timed: TestServer;
  before(async () => {
    untimed = await startTestServer(); // nobody subscribed yet: timing stays off in this one
    subscribe(REQUEST_PHASES_CHANNEL, record);
    timed = await startTestServer();
  });
  after(async () => {
    unsubscribe(REQUEST_PHASES_CHANNEL, record);
    await Promise.all([untimed.stop(), timed.stop()]);
  });

  test('a logout of a server started with a subscriber gets every phase, adding up to its time in the server', async () => {
    const { accessToken } = await timed.newSession();
    published.length = 0;
    const started = performance.timeOrigin + performance.now();
    assert.equal((await timed.logout(accessToken)).status, 200);
    const answered = performance.timeOrigin + performance.now();
    await new Promise((resolve) => setImmediate(resolve)); // 'finish' may follow the client's read
    const [logout, ...others] = published.filter((phases) => phases.operation === 'logout');
    assert.equal(others.length, 0);
    assert.equal(logout.status, 200);
    assert.deepEqual(Object.keys(logout.ms).sort(), [...PHASES].sort(), 'every phase was marked');
    for (const phase of PHASES) assert.ok(logout.ms[phase]! >= 0, `${phase}: ${logout.ms[phase]}`);
    const inServer = PHASES.reduce((sum, phase) => sum + logout.ms[phase]!, 0);
    assert.ok(
      logout.startedAt >= started && logout.startedAt + inServer <= answered + 1,
      'within the request as the client saw it',
    );
    assert.equal(logout.batch?.writes, 1, 'the write went through the group commit, alone in its batch');
  });

  test('a server started before anyone subscribed times nothing, even once someone has', async () => {
    const { accessToken } = await untimed.newSession();
    published.length = 0;
    assert.equal((await untimed.logout(accessToken)).status, 200);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(published, []);
  });
});
