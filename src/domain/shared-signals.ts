import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { epochSeconds, type Clock } from './clock.js';
import { AuthFailure } from './failures.js';
import type { KeyRing } from './key-ring.js';
import {
  POLL_DELIVERY,
  PUSH_DELIVERY,
  SESSION_REVOKED,
  VERIFICATION,
  type DeliveryMethod,
  type QueuedEvent,
  type SetError,
  type StreamRecord,
  type StreamStatus,
} from './security-events.js';
import { StoreChanges } from './store-changes.js';
import type { Store } from './store.js';

/** The event types a stream can ask for; verification events come whatever it asks (SSF §8.1.4). */
export const EVENTS_SUPPORTED = [SESSION_REVOKED];
/** How long a poll with `returnImmediately: false` waits at most, below common proxy idle timeouts (60 s). */
export const POLL_MAX_WAIT_SECONDS = 25;
/** SETs per poll answer when the receiver does not say (`maxEvents`); it may ask for up to 400 (the contract's bound). */
export const POLL_DEFAULT_MAX_EVENTS = 100;
/**
 * A queued event is purged this long after it expires (docs/design.md §15): a session's event
 * expires with the session's last token, past which it says nothing a receiver can act on; a
 * verification event when it was asked for.
 */
export const QUEUE_RETENTION_SECONDS = 3600;

/** What the receiver asks for when it creates, replaces or updates a stream (SSF §8.1.1). */
export interface StreamRequest {
  delivery?: { method?: string; endpoint_url?: string; authorization_header?: string };
  events_requested?: string[];
  description?: string;
}

/** RFC 8936 §2.4: what a poll sends. */
export interface PollRequest {
  maxEvents?: number;
  returnImmediately?: boolean;
  ack?: string[];
  setErrs?: Record<string, { err: string; description: string }>;
}

/**
 * Why a session ended, in CAEP's words: who ended it and the sentence for an administrator.
 * docs/design.md §6 lists the reasons.
 */
const SESSION_END: Record<string, { initiating_entity: string; reason: string }> = {
  logout: { initiating_entity: 'user', reason: 'The user logged out.' },
  'refresh-reuse': {
    initiating_entity: 'policy',
    reason: 'A refresh token of the session was used twice; the session was revoked.',
  },
  'user-removed': { initiating_entity: 'admin', reason: 'An administrator removed the user.' },
};

interface Logger {
  warn(fields: object, message: string): void;
}

/**
 * The Shared Signals Framework 1.0 transmitter (docs/design.md §15): streams that registered
 * clients manage, and the CAEP session-revoked events of every session's end as SETs (RFC 8417)
 * signed with the service's key, delivered by poll (RFC 8936). The events are queued by the
 * store in the statement that ends the session; a SET is signed when it is delivered.
 */
export class SharedSignals {
  private readonly changes: StoreChanges;

  constructor(
    private readonly store: Store,
    private readonly keys: KeyRing,
    private readonly now: Clock,
    /** The origin this service is known by: `iss`, and the base of every URL it gives out. */
    /** Read at each use: a server without ISSUER learns its port once it listens. */
    private readonly issuer: () => string,
    private readonly logger: Logger,
    /** Hears each SET a poll acknowledged, with the seconds since it was queued. */
    private readonly delivered: (method: 'poll', seconds: number) => void = () => {},
    readonly pollMaxWaitSeconds = POLL_MAX_WAIT_SECONDS,
  ) {
    this.changes = new StoreChanges(store);
  }

  /** SSF §7.1: the transmitter's configuration metadata. */
  metadata() {
    return {
      spec_version: '1_0' as const,
      issuer: this.issuer(),
      jwks_uri: `${this.issuer()}/.well-known/jwks.json`,
      delivery_methods_supported: [POLL_DELIVERY, PUSH_DELIVERY] as DeliveryMethod[],
      configuration_endpoint: `${this.issuer()}/ssf/streams`,
      status_endpoint: `${this.issuer()}/ssf/status`,
      verification_endpoint: `${this.issuer()}/ssf/verify`,
      authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:7617' }],
      default_subjects: 'ALL' as const,
    };
  }

  async createStream(clientId: string, request: StreamRequest) {
    const stream: StreamRecord = {
      id: randomUUID(),
      clientId,
      audience: clientId,
      ...this.receiverFields(request),
      status: 'enabled',
      statusReason: null,
      createdAt: epochSeconds(this.now),
    };
    await this.store.createStream(stream);
    return this.configuration(stream);
  }

  async readStream(clientId: string, streamId: string) {
    return this.configuration(await this.ownStream(clientId, streamId));
  }

  async listStreams(clientId: string) {
    return (await this.store.listStreams(clientId)).map((stream) => this.configuration(stream));
  }

  /** SSF §8.1.1.3 and §8.1.1.4: `replace` sets every receiver field (absent ones to their default); otherwise only those sent. */
  async updateStream(clientId: string, streamId: string, request: StreamRequest, replace: boolean) {
    const stream = await this.ownStream(clientId, streamId);
    const changes = replace ? request : { ...this.requestOf(stream), ...request };
    const updated: StreamRecord = { ...stream, ...this.receiverFields(changes) };
    await this.stillThere(this.store.updateStream(updated));
    return this.configuration(updated);
  }

  async deleteStream(clientId: string, streamId: string): Promise<void> {
    await this.ownStream(clientId, streamId);
    await this.stillThere(this.store.deleteStream(streamId));
  }

  async status(clientId: string, streamId: string) {
    return statusOf(await this.ownStream(clientId, streamId));
  }

  /** SSF §8.1.2.2: a paused stream keeps its queue and delivers nothing; a disabled one loses it and queues nothing. */
  async setStatus(clientId: string, streamId: string, status: StreamStatus, reason: string | undefined) {
    const updated = { ...(await this.ownStream(clientId, streamId)), status, statusReason: reason ?? null };
    await this.stillThere(this.store.updateStream(updated));
    return statusOf(updated);
  }

  /** SSF §8.1.4: queues a verification event carrying `state`; a disabled stream gets none. */
  async verify(clientId: string, streamId: string, state: string | undefined): Promise<void> {
    const stream = await this.ownStream(clientId, streamId);
    if (stream.status === 'disabled') return;
    const now = epochSeconds(this.now);
    const jti = randomBytes(16).toString('hex');
    await this.stillThere(this.store.queueVerification(streamId, jti, state ?? null, now, now));
  }

  /**
   * RFC 8936: acknowledges and records the receiver's errors, then answers the oldest SETs not
   * yet acknowledged, again and again until they are. Without `returnImmediately`, waits up to
   * POLL_MAX_WAIT_SECONDS for one to be queued. A paused stream answers none.
   */
  async poll(clientId: string, streamId: string, request: PollRequest, gone?: AbortSignal) {
    const stream = await this.ownStream(clientId, streamId, POLL_DELIVERY);
    const acknowledged = await this.store.acknowledgeEvents(streamId, request.ack ?? []);
    for (const queuedAt of acknowledged) this.delivered('poll', Math.max(0, Date.now() - queuedAt) / 1000);
    const errors: SetError[] = Object.entries(request.setErrs ?? {}).map(([jti, { err, description }]) => ({
      jti,
      err,
      description,
    }));
    if (errors.length > 0) {
      await this.store.recordEventErrors(streamId, errors);
      for (const { jti, err, description } of errors) {
        this.logger.warn(
          { streamId, clientId, jti, err, description },
          'a receiver could not process a SET; it is not delivered again',
        );
      }
    }
    const maxEvents = request.maxEvents ?? POLL_DEFAULT_MAX_EVENTS;
    if (stream.status !== 'enabled') return { sets: {}, moreAvailable: false };
    const deadline = performance.now() + (request.returnImmediately === true ? 0 : this.pollMaxWaitSeconds * 1000);
    for (;;) {
      const seen = this.changes.mark(); // before the read: an event queued during it wakes the wait at once
      const { events, more } = await this.store.pendingEvents(streamId, maxEvents);
      const remaining = deadline - performance.now();
      if (events.length > 0 || more || maxEvents === 0 || remaining <= 0 || this.changes.closed || gone?.aborted) {
        // Signed side by side: each signature waits for libuv's pool, not for the one before.
        const signed = await Promise.all(events.map(async (event) => [event.jti, await this.sign(stream, event)] as const));
        return { sets: Object.fromEntries(signed), moreAvailable: more };
      }
      if (!(await this.changes.since(seen, remaining, gone))) return { sets: {}, moreAvailable: false };
    }
  }

  /** Answers every waiting poll now. */
  close(): void {
    this.changes.close();
  }

  /** The SET of a queued event (RFC 8417, SSF §4, CAEP §3.1): signed now, its claims fixed when it was queued. */
  async sign(stream: StreamRecord, event: QueuedEvent): Promise<string> {
    const { signer } = this.keys;
    const body =
      event.type === 'verification'
        ? {
            sub_id: { format: 'opaque', id: stream.id },
            events: { [VERIFICATION]: event.state === null ? {} : { state: event.state } },
          }
        : {
            sub_id: {
              format: 'complex',
              user: { format: 'email', email: event.email },
              session: { format: 'opaque', id: event.sessionId },
            },
            events: {
              [SESSION_REVOKED]: {
                event_timestamp: event.eventTimestamp,
                initiating_entity: SESSION_END[event.reason ?? '']?.initiating_entity ?? 'system',
                reason_admin: { en: SESSION_END[event.reason ?? '']?.reason ?? 'The session ended.' },
              },
            },
          };
    return new SignJWT({ ...body, iss: this.issuer(), aud: stream.audience, jti: event.jti, iat: event.eventTimestamp })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'secevent+jwt', kid: signer.kid })
      .sign(signer.privateKey);
  }

  /** The client's own stream (of that delivery method); another client's is as unknown as one that does not exist. */
  private async ownStream(clientId: string, streamId: string, deliveryMethod?: DeliveryMethod): Promise<StreamRecord> {
    const stream = await this.store.findStream(streamId);
    if (!stream || stream.clientId !== clientId || (deliveryMethod && stream.deliveryMethod !== deliveryMethod)) {
      throw new AuthFailure('streamNotFound');
    }
    return stream;
  }

  /** A write that finds the stream gone (deleted meanwhile) is a 404 too. */
  private async stillThere(write: Promise<boolean>): Promise<void> {
    if (!(await write)) throw new AuthFailure('streamNotFound');
  }

  /** The fields a receiver sets, from its request; a poll stream's URL is the transmitter's, a push stream's the receiver's. */
  private receiverFields(
    request: StreamRequest,
  ): Pick<StreamRecord, 'deliveryMethod' | 'endpointUrl' | 'authorizationHeader' | 'eventsRequested' | 'description'> {
    const {
      method = POLL_DELIVERY,
      endpoint_url: endpointUrl,
      authorization_header: authorizationHeader,
    } = request.delivery ?? {};
    if (method === POLL_DELIVERY)
      return { ...this.receiverEvents(request), deliveryMethod: POLL_DELIVERY, endpointUrl: null, authorizationHeader: null };
    if (method !== PUSH_DELIVERY || !isHttpUrl(endpointUrl)) throw new AuthFailure('streamDeliveryInvalid');
    return {
      ...this.receiverEvents(request),
      deliveryMethod: PUSH_DELIVERY,
      endpointUrl,
      authorizationHeader: authorizationHeader ?? null,
    };
  }

  private receiverEvents(request: StreamRequest) {
    return {
      eventsRequested: request.events_requested ?? EVENTS_SUPPORTED,
      description: request.description ?? null,
    };
  }

  /** A stream's receiver fields as a request would set them. */
  private requestOf(stream: StreamRecord): StreamRequest {
    return {
      delivery: {
        method: stream.deliveryMethod,
        ...(stream.endpointUrl === null ? {} : { endpoint_url: stream.endpointUrl }),
        ...(stream.authorizationHeader === null ? {} : { authorization_header: stream.authorizationHeader }),
      },
      events_requested: stream.eventsRequested,
      ...(stream.description === null ? {} : { description: stream.description }),
    };
  }

  /** SSF §8.1.1: the stream as the receiver reads it; the push `authorization_header` is never shown again. */
  private configuration(stream: StreamRecord) {
    const endpointUrl = stream.endpointUrl ?? `${this.issuer()}/ssf/poll/${stream.id}`;
    return {
      stream_id: stream.id,
      iss: this.issuer(),
      aud: stream.audience,
      delivery: { method: stream.deliveryMethod, endpoint_url: endpointUrl },
      events_supported: EVENTS_SUPPORTED,
      events_requested: stream.eventsRequested,
      events_delivered: EVENTS_SUPPORTED.filter((type) => stream.eventsRequested.includes(type)),
      ...(stream.description === null ? {} : { description: stream.description }),
    };
  }
}

function statusOf(stream: StreamRecord) {
  return {
    stream_id: stream.id,
    status: stream.status,
    ...(stream.statusReason === null ? {} : { reason: stream.statusReason }),
  };
}

const isHttpUrl = (url: string | undefined): url is string =>
  url !== undefined && URL.canParse(url) && ['http:', 'https:'].includes(new URL(url).protocol);
