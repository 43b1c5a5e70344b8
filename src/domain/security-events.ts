/**
 * What the store keeps for Shared Signals (docs/design.md §15): the streams receivers manage,
 * and each stream's queue of security events not yet acknowledged.
 */

/** SSF's names of the delivery methods: poll (RFC 8936) and push (RFC 8935). */
export const POLL_DELIVERY = 'urn:ietf:rfc:8936';
export const PUSH_DELIVERY = 'urn:ietf:rfc:8935';
export type DeliveryMethod = typeof POLL_DELIVERY | typeof PUSH_DELIVERY;

export const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
export const VERIFICATION = 'https://schemas.openid.net/secevent/ssf/event-type/verification';

/** SSF §8.1.2: enabled streams deliver; paused ones keep queueing; disabled ones queue nothing. */
export type StreamStatus = 'enabled' | 'paused' | 'disabled';

export interface StreamRecord {
  id: string;
  /** The registered client that created it; only it may see, change, poll or delete it. */
  clientId: string;
  /** The SETs' `aud`: the client's id. */
  audience: string;
  deliveryMethod: DeliveryMethod;
  /** The receiver's URL (push); null for poll, whose URL is the transmitter's. */
  endpointUrl: string | null;
  /** What push sends as `Authorization`; never shown again. */
  authorizationHeader: string | null;
  eventsRequested: string[];
  description: string | null;
  status: StreamStatus;
  statusReason: string | null;
  createdAt: number;
}

export type QueuedEventType = 'session-revoked' | 'verification';

/** A security event waiting in a stream's queue; its SET is signed when it is delivered. */
export interface QueuedEvent {
  streamId: string;
  jti: string;
  type: QueuedEventType;
  /** The session that ended and its user (session-revoked). */
  sessionId: string | null;
  email: string | null;
  /** Why the session ended: the session's `revoked_reason`. */
  reason: string | null;
  /** The verification's `state`. */
  state: string | null;
  /** When it happened (epoch seconds): the event's `event_timestamp` and the SET's `iat`. */
  eventTimestamp: number;
  /** When it was queued (epoch ms), where its delivery latency starts. */
  queuedAt: number;
  /** Push attempts so far, this one included once leased. */
  attempts: number;
}

/** A receiver's report that it could not process a SET (RFC 8936 §2.4, `setErrs`). */
export interface SetError {
  jti: string;
  err: string;
  description: string;
}

/**
 * Persistence for Shared Signals. A session's end queues its session-revoked event on every
 * stream that is not disabled in the statement that ends it, so none can be missed.
 */
export interface SecurityEventStore {
  /** False when the id is taken. */
  createStream(stream: StreamRecord): Promise<boolean>;
  findStream(id: string): Promise<StreamRecord | undefined>;
  listStreams(clientId: string): Promise<StreamRecord[]>;
  /** Writes every field but id, client and creation; a stream disabled loses its queue. False when there is no such stream. */
  updateStream(stream: StreamRecord): Promise<boolean>;
  /** Deletes the stream and its queue; false when there was none. */
  deleteStream(id: string): Promise<boolean>;
  /** Queues a verification event unless the stream is disabled or gone; false then. */
  queueVerification(streamId: string, jti: string, state: string | null, now: number, expiresAt: number): Promise<boolean>;
  /** The oldest events of the stream neither acknowledged nor reported in error, at most `limit`, and whether more wait. */
  pendingEvents(streamId: string, limit: number): Promise<{ events: QueuedEvent[]; more: boolean }>;
  /** Removes these events of the stream from its queue; returns when each that was there had been queued (epoch ms). */
  acknowledgeEvents(streamId: string, jtis: readonly string[]): Promise<number[]>;
  /** Each stream's pending events: how many, and when the oldest was queued (epoch ms). */
  queueDepths(): Promise<{ streamId: string; depth: number; oldestQueuedAt: number }[]>;
  /** Deletes the oldest events of the stream beyond the newest `keep`; returns how many. */
  trimQueue(streamId: string, keep: number): Promise<number>;
  /** Keeps these events (until they expire) but never delivers them again; returns how many were pending. */
  recordEventErrors(streamId: string, errors: readonly SetError[]): Promise<number>;
  /**
   * Leases up to `limit` events of enabled push streams that are due (their next attempt at or
   * before `now`, epoch ms) and not leased, until `leasedUntil`, counting the attempt. Of
   * processes leasing at once, each event goes to one (on PostgreSQL, rows another holds are
   * skipped, not waited for).
   */
  leasePushEvents(now: number, leasedUntil: number, limit: number): Promise<QueuedEvent[]>;
  /** Gives a leased event back, to be pushed again from `nextAttemptAt` (epoch ms). */
  deferPushEvent(jti: string, nextAttemptAt: number): Promise<void>;
  /** Deletes queued events that expired before `before`; returns how many. */
  purgeExpiredEvents(before: number): Promise<number>;
}
