/**
 * Wraps a task whose one run serves every call made before the run began (a NOTIFY wakes the
 * readers to every commit before it, backends/postgres.ts). A call waits for a
 * run that begins after it: the one queued behind the run in progress, shared with every other
 * call made meanwhile. So at most one run is in progress and one waits, however many call.
 */
export function coalesced(task: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  let queued: Promise<void> | undefined;
  const start = (): Promise<void> => {
    const run = task();
    running = run;
    const done = () => {
      if (running === run) running = undefined;
    };
    run.then(done, done);
    return run;
  };
  return () => {
    if (queued) return queued;
    if (!running) return start();
    const after = () => {
      queued = undefined;
      return start();
    };
    queued = running.then(after, after);
    return queued;
  };
}
