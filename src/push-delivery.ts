import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { PUSH_DELIVERY, type QueuedEvent, type StreamRecord } from './domain/security-events.js';
import type { SharedSignals } from './domain/shared-signals.js';
import { StoreChanges } from './domain/store-changes.js';
import type { Store } from './domain/store.js';
import type { Logger } from './logger.js';

/** How long a process holds the events it leased: past it (the process died), another pushes them. */
export const PUSH_LEASE_MS = 30_000;
/** How long one push may take, answer included, before it counts as failed. */
export const PUSH_TIMEOUT_MS = 10_000;
/** Events leased at once, pushed side by side. */
const PUSH_BATCH = 50;
/** How often due retries (and leases that ran out) are looked for while no session ends. */
const RETRY_CHECK_MS = 250;
/**
 * The least time from a lease that found nothing to the next: under load every logout is a
 * change of the store, and each lease is a write, which cost 9 % of the logouts on SQLite when
 * every change woke one (issue 25, BENCHMARKS.md). A SET waits this much longer at most.
 */
const EMPTY_LEASE_GAP_MS = 25;
/** The first retry comes after about this, each next one after twice as long, up to PUSH_BACKOFF_MAX_MS. */
const PUSH_BACKOFF_BASE_MS = 500;
export const PUSH_BACKOFF_MAX_MS = 60_000;

/**
 * How long to wait before the next attempt after `attempts` failed ones: exponential, with
 * half of it random ("equal jitter"), so that the retries of many events, or of many
 * transmitters to one receiver that came back, do not arrive together.
 */
export function backoffMs(attempts: number, random: () => number = Math.random): number {
  const ceiling = Math.min(PUSH_BACKOFF_MAX_MS, PUSH_BACKOFF_BASE_MS * 2 ** Math.max(0, attempts - 1));
  return ceiling / 2 + (random() * ceiling) / 2;
}

/** The receiver's answer (with the reason of an RFC 8935 refusal), or the network's error. */
type Answer = { status: number; err?: string; description?: string } | { error: string };

/**
 * Push delivery (RFC 8935, docs/design.md §15): POSTs each queued SET of an enabled push stream
 * to the receiver's URL. 202 is delivery, and the event leaves the queue; 400 is the receiver
 * refusing that SET (recorded as a `setErrs` report is, never sent again); any other answer, or
 * none, is retried with backoff and jitter. The queue is the store's, so it survives restarts;
 * a process leases the events it pushes, so that at most one pushes a given SET at a time.
 */
export class PushDelivery {
  private readonly changes: StoreChanges;
  private readonly stopping = new AbortController();
  private running: Promise<void> | undefined;
  private failing = false;

  constructor(
    private readonly store: Store,
    private readonly signals: Pick<SharedSignals, 'sign'>,
    private readonly logger: Logger,
    /** Hears each SET a receiver accepted, with the seconds since it was queued. */
    private readonly delivered: (method: 'push', seconds: number) => void = () => {},
  ) {
    this.changes = new StoreChanges(store);
    // Each push in flight listens for the stop, and the wait between leases too.
    setMaxListeners(PUSH_BATCH + 1, this.stopping.signal);
  }

  start(): void {
    this.running ??= this.run();
  }

  /** Stops leasing, aborts the pushes in flight (their events are given back) and resolves once done. */
  async stop(): Promise<void> {
    this.stopping.abort();
    this.changes.close();
    await this.running;
  }

  private async run(): Promise<void> {
    const { signal } = this.stopping;
    while (!signal.aborted) {
      const seen = this.changes.mark(); // before leasing: an event queued meanwhile wakes the wait at once
      const leasedAt = performance.now();
      const events = await this.lease();
      if (events.length > 0) {
        await this.pushAll(events);
        continue;
      }
      await this.changes.since(seen, RETRY_CHECK_MS, signal);
      const gap = EMPTY_LEASE_GAP_MS - (performance.now() - leasedAt);
      if (gap > 0) await sleep(gap, undefined, { signal }).catch(() => undefined); // aborted: the loop ends
    }
  }

  /** Leases are between processes: they are read on the wall clock, whatever clock the server was given. */
  private async lease(): Promise<QueuedEvent[]> {
    try {
      const now = Date.now();
      const events = await this.store.leasePushEvents(now, now + PUSH_LEASE_MS, PUSH_BATCH);
      if (this.failing) this.logger.info({}, 'leasing SETs to push works again');
      this.failing = false;
      return events;
    } catch (err) {
      if (!this.failing) this.logger.warn({ err }, 'leasing SETs to push failed; trying again');
      this.failing = true;
      return [];
    }
  }

  private async pushAll(events: QueuedEvent[]): Promise<void> {
    const streams = new Map<string, StreamRecord | undefined>();
    for (const { streamId } of events) if (!streams.has(streamId)) streams.set(streamId, await this.store.findStream(streamId));
    await Promise.all(
      events.map(async (event) => {
        const stream = streams.get(event.streamId);
        // A stream deleted since took its queue with it; one changed to poll is polled.
        if (stream?.deliveryMethod !== PUSH_DELIVERY || stream.endpointUrl === null) return;
        try {
          await this.push(stream, event);
        } catch (err) {
          this.logger.warn({ err, streamId: stream.id, jti: event.jti }, 'pushing a SET failed; it stays queued');
        }
      }),
    );
  }

  private async push(stream: StreamRecord, event: QueuedEvent): Promise<void> {
    const answer = await this.post(stream, await this.signals.sign(stream, event));
    if ('status' in answer && answer.status === 202) {
      await this.store.acknowledgeEvents(stream.id, [event.jti]);
      this.delivered('push', Math.max(0, Date.now() - event.queuedAt) / 1000);
      return;
    }
    if ('status' in answer && answer.status === 400 && answer.err !== undefined) {
      const { err, description = '' } = answer;
      await this.store.recordEventErrors(stream.id, [{ jti: event.jti, err, description }]);
      this.logger.warn(
        { streamId: stream.id, jti: event.jti, err, description },
        'a receiver refused a pushed SET; it is not sent again',
      );
      return;
    }
    const retryInMs = Math.round(backoffMs(event.attempts));
    await this.store.deferPushEvent(event.jti, Date.now() + retryInMs);
    if (!this.stopping.signal.aborted) {
      this.logger.warn(
        { streamId: stream.id, jti: event.jti, attempts: event.attempts, ...answer, retryInMs },
        'a receiver did not accept a pushed SET; it is pushed again later',
      );
    }
  }

  /** RFC 8935 §2: the SET as the body, the stream's `Authorization`; its own timer bounds the whole exchange. */
  private async post(stream: StreamRecord, set: string): Promise<Answer> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), PUSH_TIMEOUT_MS);
    const stop = () => abort.abort();
    this.stopping.signal.addEventListener('abort', stop, { once: true });
    try {
      const response = await fetch(stream.endpointUrl!, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/secevent+jwt',
          Accept: 'application/json',
          ...(stream.authorizationHeader === null ? {} : { Authorization: stream.authorizationHeader }),
        },
        body: set,
        redirect: 'manual',
        signal: abort.signal,
      });
      const text = await response.text();
      if (response.status !== 400) return { status: response.status };
      // RFC 8935 §2.3: a refusal names its reason as {"err", "description"}.
      try {
        const { err, description } = JSON.parse(text) as { err?: unknown; description?: unknown };
        if (typeof err === 'string') return { status: 400, err, description: typeof description === 'string' ? description : '' };
      } catch {
        // not the refusal RFC 8935 describes: retried as any other answer
      }
      return { status: 400 };
    } catch (error) {
      return { error: (error as Error).name === 'AbortError' ? 'no answer in time' : String((error as Error).cause ?? error) };
    } finally {
      clearTimeout(timer);
      this.stopping.signal.removeEventListener('abort', stop);
    }
  }
}
