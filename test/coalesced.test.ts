import assert from 'node:assert/strict';
import { test } from 'node:test';
import { coalesced } from '../src/store/coalesced.js';

/** A task whose runs are ended by hand, counting how many began. */
function manualTask() {
  const runs: { end: (error?: Error) => void }[] = [];
  const task = () =>
    new Promise<void>((resolve, reject) => {
      runs.push({ end: (error) => (error ? reject(error) : resolve()) });
    });
  return { runs, task };
}
const turn = () => new Promise((resolve) => setImmediate(resolve));

test('a call waits for a run that began after it; the calls made during a run share the next one', async () => {
  const { runs, task } = manualTask();
  const run = coalesced(task);
  const settled: string[] = [];
  const first = run().then(() => settled.push('first'));
  assert.equal(runs.length, 1);
  const second = run().then(() => settled.push('second'));
  const third = run().then(() => settled.push('third'));
  assert.equal(runs.length, 1, 'no second run while one is in progress');
  runs[0].end();
  await first;
  await turn();
  assert.deepEqual(settled, ['first'], 'the calls made during the first run wait for the next');
  assert.equal(runs.length, 2, 'one more run, for both');
  runs[1].end();
  await Promise.all([second, third]);
  assert.deepEqual(settled, ['first', 'second', 'third']);
  void run();
  assert.equal(runs.length, 3, 'with nothing running, a call starts a run at once');
  runs[2].end();
});

test('a failed run fails its callers, and the run queued behind it still happens', async () => {
  const { runs, task } = manualTask();
  const run = coalesced(task);
  const first = run();
  const second = run();
  runs[0].end(new Error('EIO'));
  await assert.rejects(first, /EIO/);
  await turn();
  assert.equal(runs.length, 2);
  runs[1].end();
  await second;
});
