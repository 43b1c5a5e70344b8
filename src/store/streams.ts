import { sql, type ColumnType, type Generated, type Kysely, type Migration, type Selectable } from 'kysely';
import {
  PUSH_DELIVERY,
  type DeliveryMethod,
  type QueuedEvent,
  type QueuedEventType,
  type SetError,
  type StreamRecord,
  type StreamStatus,
} from '../domain/security-events.js';
import type { OpenedBackend, SchemaDialect } from './backends/profile.js';
import type { Database } from './schema.js';

type Instant = ColumnType<number | string, number, number>;

/** The tables of Shared Signals (docs/design.md §15), migration 0006. */
export interface StreamTables {
  ssf_streams: {
    id: string;
    client_id: string;
    audience: string;
    delivery_method: string;
    endpoint_url: string | null;
    authorization_header: string | null;
    /** JSON array of event type URIs. */
    events_requested: string;
    /** 1 when the stream gets session-revoked events: what the trigger reads. */
    session_revoked: number;
    description: string | null;
    status: string;
    status_reason: string | null;
    created_at: Instant;
  };
  /** Each stream's queue: a row per event until the receiver acknowledges it or it expires. */
  ssf_events: {
    seq: Generated<number | string>;
    stream_id: string;
    jti: string;
    event_type: string;
    sid: string | null;
    email: string | null;
    reason: string | null;
    state: string | null;
    event_timestamp: Instant;
    /** After this the session's tokens have all expired: the event says nothing any more. */
    expires_at: Instant;
    /** When it was queued, in epoch milliseconds: the start of its delivery latency. */
    queued_at: Instant;
    /** What the receiver reported (`setErrs`); such an event is not delivered again. */
    error_code: string | null;
    error_description: string | null;
    /** Push (migration 0007): attempts so far, when the next may start, and until when one process holds it (epoch ms). */
    attempts: ColumnType<number, number | undefined, number>;
    next_attempt_at: ColumnType<number | string, number | undefined, number>;
    leased_until: ColumnType<number | string, number | undefined, number>;
  };
}

type AnyDb = Kysely<Database>;

export const streamsMigration = (dialect: SchemaDialect): Migration => ({
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('ssf_streams')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('audience', 'text', (c) => c.notNull())
      .addColumn('delivery_method', 'text', (c) => c.notNull())
      .addColumn('endpoint_url', 'text')
      .addColumn('authorization_header', 'text')
      .addColumn('events_requested', 'text', (c) => c.notNull())
      .addColumn('session_revoked', 'integer', (c) => c.notNull())
      .addColumn('description', 'text')
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('status_reason', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('ssf_streams_client_id').on('ssf_streams').column('client_id').execute();
    await db.schema
      .createTable('ssf_events')
      .$call(dialect.addPosition)
      .addColumn('stream_id', 'text', (c) => c.notNull())
      .addColumn('jti', 'text', (c) => c.notNull().unique())
      .addColumn('event_type', 'text', (c) => c.notNull())
      .addColumn('sid', 'text')
      .addColumn('email', 'text')
      .addColumn('reason', 'text')
      .addColumn('state', 'text')
      .addColumn('event_timestamp', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addColumn('queued_at', 'bigint', (c) => c.notNull())
      .addColumn('error_code', 'text')
      .addColumn('error_description', 'text')
      .execute();
    await db.schema.createIndex('ssf_events_stream_id_seq').on('ssf_events').columns(['stream_id', 'seq']).execute();
    await db.schema.createIndex('ssf_events_expires_at').on('ssf_events').column('expires_at').execute();
    for (const statement of dialect.sessionEndEventTriggers) await sql.raw(statement).execute(db);
  },
});

/** Push delivery's columns (docs/design.md §15): new events are due at once and held by nobody. */
export const pushMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .alterTable('ssf_events')
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema
      .alterTable('ssf_events')
      .addColumn('next_attempt_at', 'bigint', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema
      .alterTable('ssf_events')
      .addColumn('leased_until', 'bigint', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema.createIndex('ssf_events_next_attempt_at').on('ssf_events').column('next_attempt_at').execute();
  },
};

const instant = (value: number | string) => Number(value);

function streamOf(row: Selectable<StreamTables['ssf_streams']>): StreamRecord {
  return {
    id: row.id,
    clientId: row.client_id,
    audience: row.audience,
    deliveryMethod: row.delivery_method as DeliveryMethod,
    endpointUrl: row.endpoint_url,
    authorizationHeader: row.authorization_header,
    eventsRequested: JSON.parse(row.events_requested) as string[],
    description: row.description,
    status: row.status as StreamStatus,
    statusReason: row.status_reason,
    createdAt: instant(row.created_at),
  };
}

function eventOf(row: Selectable<StreamTables['ssf_events']>): QueuedEvent {
  return {
    streamId: row.stream_id,
    jti: row.jti,
    type: row.event_type as QueuedEventType,
    sessionId: row.sid,
    email: row.email,
    reason: row.reason,
    state: row.state,
    eventTimestamp: instant(row.event_timestamp),
    queuedAt: instant(row.queued_at),
    attempts: row.attempts,
  };
}

/** The columns a stream's owner may change. */
function mutableColumns(stream: StreamRecord, sessionRevoked: string) {
  return {
    audience: stream.audience,
    delivery_method: stream.deliveryMethod,
    endpoint_url: stream.endpointUrl,
    authorization_header: stream.authorizationHeader,
    events_requested: JSON.stringify(stream.eventsRequested),
    session_revoked: stream.eventsRequested.includes(sessionRevoked) ? 1 : 0,
    description: stream.description,
    status: stream.status,
    status_reason: stream.statusReason,
  };
}

/**
 * The statements of Shared Signals, each given the connection or transaction to run on; the
 * store (sql-store.ts) decides how writes commit. `sessionRevoked` is the event type's URI.
 */
export function streamStatements(backend: OpenedBackend, sessionRevoked: string) {
  return {
    async createStream(db: AnyDb, stream: StreamRecord): Promise<boolean> {
      const result = await db
        .insertInto('ssf_streams')
        .values({
          id: stream.id,
          client_id: stream.clientId,
          created_at: stream.createdAt,
          ...mutableColumns(stream, sessionRevoked),
        })
        .onConflict((oc) => oc.doNothing())
        .executeTakeFirst();
      return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
    },
    async findStream(db: AnyDb, id: string): Promise<StreamRecord | undefined> {
      const row = await db.selectFrom('ssf_streams').selectAll().where('id', '=', id).executeTakeFirst();
      return row && streamOf(row);
    },
    async listStreams(db: AnyDb, clientId: string): Promise<StreamRecord[]> {
      const rows = await db
        .selectFrom('ssf_streams')
        .selectAll()
        .where('client_id', '=', clientId)
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(streamOf);
    },
    /** Several statements: run in one transaction. */
    async updateStream(db: AnyDb, stream: StreamRecord): Promise<boolean> {
      const result = await db
        .updateTable('ssf_streams')
        .set(mutableColumns(stream, sessionRevoked))
        .where('id', '=', stream.id)
        .executeTakeFirst();
      if (stream.status === 'disabled') await db.deleteFrom('ssf_events').where('stream_id', '=', stream.id).execute();
      return (result.numUpdatedRows ?? 0n) > 0n;
    },
    /** Several statements: run in one transaction. */
    async deleteStream(db: AnyDb, id: string): Promise<boolean> {
      await db.deleteFrom('ssf_events').where('stream_id', '=', id).execute();
      const result = await db.deleteFrom('ssf_streams').where('id', '=', id).executeTakeFirst();
      return (result.numDeletedRows ?? 0n) > 0n;
    },
    /** Several statements on PostgreSQL (the NOTIFY that wakes other instances' polls): run in one transaction. */
    async queueVerification(
      db: AnyDb,
      streamId: string,
      jti: string,
      state: string | null,
      now: number,
      expiresAt: number,
    ): Promise<boolean> {
      const result = await db
        .insertInto('ssf_events')
        .columns(['stream_id', 'jti', 'event_type', 'state', 'event_timestamp', 'expires_at', 'queued_at'])
        .expression(
          db
            .selectFrom('ssf_streams')
            // The casts type the parameters for databases that do not infer them in a select list.
            .select([
              'id',
              sql<string>`cast(${jti} as text)`.as('jti'),
              sql<string>`cast(${'verification' satisfies QueuedEventType} as text)`.as('event_type'),
              sql<string>`cast(${state} as text)`.as('state'),
              sql<number>`cast(${now} as bigint)`.as('event_timestamp'),
              sql<number>`cast(${expiresAt} as bigint)`.as('expires_at'),
              sql<number>`cast(${Date.now()} as bigint)`.as('queued_at'),
            ])
            .where('id', '=', streamId)
            .where('status', '<>', 'disabled'),
        )
        .executeTakeFirst();
      const queued = (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
      if (queued) await backend.announceChange(db);
      return queued;
    },
    async pendingEvents(db: AnyDb, streamId: string, limit: number): Promise<{ events: QueuedEvent[]; more: boolean }> {
      const rows = await db
        .selectFrom('ssf_events')
        .selectAll()
        .where('stream_id', '=', streamId)
        .where('error_code', 'is', null)
        .orderBy('seq')
        .limit(limit + 1)
        .execute();
      return { events: rows.slice(0, limit).map(eventOf), more: rows.length > limit };
    },
    async acknowledgeEvents(db: AnyDb, streamId: string, jtis: readonly string[]): Promise<number[]> {
      if (jtis.length === 0) return [];
      const rows = await db
        .deleteFrom('ssf_events')
        .where('stream_id', '=', streamId)
        .where('jti', 'in', jtis)
        .returning('queued_at')
        .execute();
      return rows.map((row) => instant(row.queued_at));
    },
    async queueDepths(db: AnyDb): Promise<{ streamId: string; depth: number; oldestQueuedAt: number }[]> {
      const rows = await db
        .selectFrom('ssf_events')
        .select((eb) => ['stream_id', eb.fn.countAll<number | string>().as('depth'), eb.fn.min('queued_at').as('oldest')])
        .where('error_code', 'is', null)
        .groupBy('stream_id')
        .execute();
      return rows.map((row) => ({ streamId: row.stream_id, depth: Number(row.depth), oldestQueuedAt: Number(row.oldest) }));
    },
    /** Deletes the oldest events of the stream beyond the newest `keep`; returns how many. */
    async trimQueue(db: AnyDb, streamId: string, keep: number): Promise<number> {
      const newest = db
        .selectFrom('ssf_events')
        .select('seq')
        .where('stream_id', '=', streamId)
        .orderBy('seq', 'desc')
        .limit(keep);
      const result = await db
        .deleteFrom('ssf_events')
        .where('stream_id', '=', streamId)
        .where('seq', 'not in', newest)
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },
    /** One statement per error: run in one transaction. */
    async recordEventErrors(db: AnyDb, streamId: string, errors: readonly SetError[]): Promise<number> {
      let recorded = 0;
      for (const { jti, err, description } of errors) {
        const result = await db
          .updateTable('ssf_events')
          .set({ error_code: err, error_description: description })
          .where('stream_id', '=', streamId)
          .where('jti', '=', jti)
          .where('error_code', 'is', null)
          .executeTakeFirst();
        recorded += Number(result.numUpdatedRows);
      }
      return recorded;
    },
    async leasePushEvents(db: AnyDb, now: number, leasedUntil: number, limit: number): Promise<QueuedEvent[]> {
      const due = db
        .selectFrom('ssf_events')
        .select('seq')
        .where('stream_id', 'in', (eb) =>
          eb
            .selectFrom('ssf_streams')
            .select('id')
            .where('delivery_method', '=', PUSH_DELIVERY)
            .where('status', '=', 'enabled' satisfies StreamStatus),
        )
        .where('error_code', 'is', null)
        .where('next_attempt_at', '<=', now)
        .where('leased_until', '<=', now)
        .orderBy('seq')
        .limit(limit)
        // Instances leasing at once take different rows instead of waiting for each other's.
        .$if(backend.concurrentWriters, (select) => select.forUpdate().skipLocked());
      const rows = await db
        .updateTable('ssf_events')
        .set((eb) => ({ leased_until: leasedUntil, attempts: eb('attempts', '+', 1) }))
        .where('seq', 'in', due)
        .returningAll()
        .execute();
      return rows.map(eventOf).sort((a, b) => a.eventTimestamp - b.eventTimestamp);
    },
    async deferPushEvent(db: AnyDb, jti: string, nextAttemptAt: number): Promise<void> {
      await db
        .updateTable('ssf_events')
        .set({ next_attempt_at: nextAttemptAt, leased_until: 0 })
        .where('jti', '=', jti)
        .execute();
    },
    async purgeExpiredEvents(db: AnyDb, before: number): Promise<number> {
      const result = await db.deleteFrom('ssf_events').where('expires_at', '<', before).executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}
