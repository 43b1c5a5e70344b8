/** The current instant in epoch milliseconds. The server passes one clock to every part; tests pass their own. */
export type Clock = () => number;

export const systemClock: Clock = () => Date.now();

/** Epoch seconds, the unit of every instant in tokens and the store. */
export const epochSeconds = (clock: Clock) => Math.floor(clock() / 1000);
