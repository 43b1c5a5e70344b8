import type { Clock } from '../../src/domain/clock.js';

/** A clock the test moves: it starts at the real time and advances only when told. */
export function manualClock(start = Date.now()): Clock & { advance(seconds: number): void } {
  let now = start;
  return Object.assign(() => now, {
    advance(seconds: number) {
      now += seconds * 1000;
    },
  });
}
