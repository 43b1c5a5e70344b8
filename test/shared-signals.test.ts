import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test as testOn } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { Clients } from '../src/domain/clients.js';
import { DATABASES } from './support/databases.js';
import {
  assertExample,
  BASE,
  bearer,
  logEntries,
  rawCall,
  startTestServer,
  startTestServerOn,
  type Reply,
  type TestServer,
} from './support/harness.js';
import { decodePart } from './support/tokens.js';
import { signInBody } from './support/vectors.js';
import { sample, scrape } from './support/metrics.js';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { createLogger } from '../src/logger.js';
import { watchSecurityEventQueues } from '../src/ssf-queues.js';

// A Shared Signals receiver written from the standards, not from the service's code: SSF 1.0
// (metadata §7.1, streams §8.1), RFC 8936 (poll), RFC 8417 (SETs) and CAEP 1.0
// (session-revoked). It finds everything through the transmitter metadata and verifies every
// SET against the JWKS with jose. The service sits behind a proxy whose public origin is
// ISSUER: the receiver reaches each URL it is given at the test server instead.

const ISSUER = 'https://auth.example.test';
const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
const VERIFICATION = 'https://schemas.openid.net/secevent/ssf/event-type/verification';
const POLL = 'urn:ietf:rfc:8936';

interface Metadata {
  issuer: string;
  jwks_uri: string;
  configuration_endpoint: string;
  status_endpoint: string;
  verification_endpoint: string;
  delivery_methods_supported: string[];
}
interface StreamConfiguration {
  stream_id: string;
  aud: string;
  delivery: { method: string; endpoint_url: string };
  events_delivered: string[];
  description?: string;
}
interface PollAnswer {
  sets: Record<string, string>;
  moreAvailable: boolean;
}
/** A SET as RFC 8417 and CAEP define it. */
interface SecurityEvent extends JWTPayload {
  jti: string;
  iat: number;
  sub_id: { format: string; user?: { format: string; email: string }; session?: { format: string; id: string }; id?: string };
  events: Record<string, { event_timestamp?: number; initiating_entity?: string; reason_admin?: { en: string }; state?: string }>;
}

/** A receiver with its own client credentials. */
class Receiver {
  readonly clientId = `receiver-${randomUUID()}`;
  private authorization = '';
  private metadata!: Metadata;
  stream!: StreamConfiguration;

  constructor(private readonly t: TestServer) {}

  /** The URL a proxy in front of the service would reach for a URL under ISSUER. */
  private at(url: string): string {
    const { pathname, search } = new URL(url);
    assert.equal(new URL(url).origin, ISSUER, `${url} is under the issuer`);
    return pathname + search;
  }

  call(method: string, url: string, body?: object, authorization = this.authorization): Promise<Reply> {
    return this.t.call(method, this.at(url), { headers: authorization ? { authorization } : {}, body });
  }

  async subscribe(request: object = { delivery: { method: POLL }, events_requested: [SESSION_REVOKED] }): Promise<void> {
    const secret = await new Clients(this.t.server.store, Date.now).add(this.clientId);
    this.authorization = `Basic ${Buffer.from(`${this.clientId}:${secret}`).toString('base64')}`;
    const found = await this.t.call('GET', '/.well-known/ssf-configuration');
    assert.equal(found.status, 200);
    this.metadata = found.body as Metadata;
    assert.ok(this.metadata.delivery_methods_supported.includes(POLL));
    const created = await this.call('POST', this.metadata.configuration_endpoint, request);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    this.stream = created.body as StreamConfiguration;
  }

  async poll(request: {
    maxEvents?: number;
    returnImmediately?: boolean;
    ack?: string[];
    setErrs?: object;
  }): Promise<PollAnswer> {
    const reply = await this.call('POST', this.stream.delivery.endpoint_url, request);
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    return reply.body as PollAnswer;
  }

  /** Verifies a SET as RFC 8417 §2 and SSF §4 ask: signature by the JWKS, `typ`, issuer, audience; no `exp`. */
  async verify(set: string): Promise<SecurityEvent> {
    const jwks = await this.t.call('GET', this.at(this.metadata.jwks_uri));
    const { payload, protectedHeader } = await jwtVerify(set, createLocalJWKSet(jwks.body as { keys: [] }), {
      issuer: ISSUER,
      audience: this.clientId,
      typ: 'secevent+jwt',
      algorithms: ['EdDSA'],
    });
    assert.ok(protectedHeader.kid);
    assert.equal(payload.exp, undefined, 'a SET has no exp');
    assert.equal(typeof payload.jti, 'string');
    assert.equal(typeof payload.iat, 'number');
    return payload as SecurityEvent;
  }

  /** Polls at once, verifies every SET, and acknowledges them. */
  async drain(): Promise<SecurityEvent[]> {
    const events: SecurityEvent[] = [];
    let ack: string[] = [];
    for (;;) {
      const { sets, moreAvailable } = await this.poll({ returnImmediately: true, ack });
      for (const [jti, set] of Object.entries(sets)) {
        const event = await this.verify(set);
        assert.equal(event.jti, jti);
        events.push(event);
      }
      ack = Object.keys(sets);
      if (ack.length === 0 && !moreAvailable) return events;
    }
  }
}

const revoked = (event: SecurityEvent) => event.events[SESSION_REVOKED];

/** One POST a push receiver got (RFC 8935 §2). */
interface Pushed {
  contentType: string | undefined;
  authorization: string | undefined;
  set: string;
  answered: number;
}

/**
 * A push receiver (RFC 8935): answers each POST with the next of `answers`, then 202, and keeps
 * what it got. `port` reuses a port (a receiver that comes back).
 */
async function startPushReceiver(answers: number[] = [], port = 0) {
  const received: Pushed[] = [];
  const waiting = new Set<() => void>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const answered = answers.shift() ?? 202;
      received.push({
        contentType: req.headers['content-type'],
        authorization: req.headers.authorization,
        set: Buffer.concat(chunks).toString('utf8'),
        answered,
      });
      res.writeHead(answered).end();
      for (const wake of [...waiting]) wake();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/ssf/events`,
    received,
    /** Resolves once `count` POSTs were answered 202, or fails after `ms`. */
    async accepted(count: number, ms = 20_000): Promise<Pushed[]> {
      const deadline = performance.now() + ms;
      for (;;) {
        const done = received.filter((pushed) => pushed.answered === 202);
        if (done.length >= count) return done;
        const left = deadline - performance.now();
        if (left <= 0) assert.fail(`${done.length} of ${count} SETs pushed within ${ms} ms`);
        await new Promise<void>((resolve) => {
          const wake = () => (waiting.delete(wake), clearTimeout(timer), resolve());
          const timer = setTimeout(wake, left);
          waiting.add(wake);
        });
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const PUSH = 'urn:ietf:rfc:8935';
const pushTo = (url: string, authorization = 'Bearer receiver-token') => ({
  delivery: { method: PUSH, endpoint_url: url, authorization_header: authorization },
});
const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

for (const backend of DATABASES) {
  describe(`Shared Signals on ${backend.name}`, () => {
    const test = (name: string, fn: () => Promise<void>): void => {
      testOn(name, { skip: backend.skip }, fn);
    };
    let t: TestServer;
    before(async () => {
      if (!backend.skip) t = await startTestServerOn(backend, { ISSUER });
    });
    after(() => t?.stop());

    test('the transmitter metadata names the issuer, the keys and every endpoint', async () => {
      const reply = await t.call('GET', '/.well-known/ssf-configuration');
      assert.deepEqual(reply.body, {
        spec_version: '1_0',
        issuer: ISSUER,
        jwks_uri: `${ISSUER}/.well-known/jwks.json`,
        delivery_methods_supported: [POLL, PUSH],
        configuration_endpoint: `${ISSUER}/ssf/streams`,
        status_endpoint: `${ISSUER}/ssf/status`,
        verification_endpoint: `${ISSUER}/ssf/verify`,
        authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:7617' }],
        default_subjects: 'ALL',
      });
    });

    test('streams are for registered clients only: 401 without credentials or with wrong ones', async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      const wrong = `Basic ${Buffer.from(`${receiver.clientId}:not-the-secret`).toString('base64')}`;
      for (const authorization of ['', wrong]) {
        const headers: Record<string, string> = authorization ? { authorization } : {};
        for (const [method, path, body] of [
          ['POST', '/ssf/streams', {}],
          ['GET', `/ssf/streams?stream_id=${receiver.stream.stream_id}`, undefined],
          ['POST', `/ssf/poll/${receiver.stream.stream_id}`, { returnImmediately: true }],
          ['POST', '/ssf/verify', { stream_id: receiver.stream.stream_id }],
        ] as const) {
          const reply = await t.call(method, path, { headers, body });
          assert.equal(reply.status, 401, `${method} ${path}`);
          assert.equal(reply.headers['www-authenticate'], 'Basic realm="fib-auth"');
        }
      }
    });

    test('a stream is created, read, listed, changed, replaced, paused and deleted by its client alone', async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe({ description: 'Go service' });
      const { stream_id: id } = receiver.stream;
      assert.equal(receiver.stream.aud, receiver.clientId);
      assert.deepEqual(receiver.stream.delivery, { method: POLL, endpoint_url: `${ISSUER}/ssf/poll/${id}` });
      assert.deepEqual(receiver.stream.events_delivered, [SESSION_REVOKED]);
      const streams = `${ISSUER}/ssf/streams`;
      assert.deepEqual((await receiver.call('GET', `${streams}?stream_id=${id}`)).body, receiver.stream);
      assert.deepEqual((await receiver.call('GET', streams)).body, [receiver.stream]);
      const patched = await receiver.call('PATCH', streams, { stream_id: id, description: 'Java service' });
      assert.deepEqual(patched.body, { ...receiver.stream, description: 'Java service' });
      const replaced = await receiver.call('PUT', streams, { stream_id: id, events_requested: [] });
      const { description: _replacedToNone, ...created } = receiver.stream;
      assert.deepEqual(replaced.body, { ...created, events_requested: [], events_delivered: [] });
      const status = `${ISSUER}/ssf/status`;
      assert.deepEqual((await receiver.call('GET', `${status}?stream_id=${id}`)).body, { stream_id: id, status: 'enabled' });
      const paused = await receiver.call('POST', status, { stream_id: id, status: 'paused', reason: 'maintenance' });
      assert.deepEqual(paused.body, { stream_id: id, status: 'paused', reason: 'maintenance' });

      const other = new Receiver(t);
      await other.subscribe();
      assert.equal((await other.call('GET', `${streams}?stream_id=${id}`)).status, 404);
      assert.equal((await other.call('DELETE', `${streams}?stream_id=${id}`)).status, 404);
      assert.deepEqual((await other.call('GET', streams)).body, [other.stream]);

      assert.equal((await receiver.call('DELETE', `${streams}?stream_id=${id}`)).status, 204);
      assert.equal((await receiver.call('DELETE', `${streams}?stream_id=${id}`)).status, 404);
      assert.equal((await receiver.call('POST', `${ISSUER}/ssf/poll/${id}`, { returnImmediately: true })).status, 404);
    });

    test('every way a session ends sends one verified session-revoked SET naming the user and the session', async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      const sid = (token: string) => decodePart(token, 1).sid as string;
      const loggedOut = await t.newSession();
      assert.equal((await t.logout(loggedOut.accessToken)).status, 200);
      const first = await t.newSession();
      const signedInAgain = await t.signIn(signInBody(first.email, first.key));
      assert.equal(signedInAgain.status, 200);
      const other = signedInAgain.body.data;
      const global = await t.call('POST', `${BASE}/logout?scope=global`, { headers: bearer(first.accessToken) });
      assert.equal(global.status, 200);
      const ended = await t.newSession();
      assert.equal((await t.call('DELETE', `${BASE}/session`, { headers: bearer(ended.refreshToken) })).status, 200);
      const reused = await t.newSession();
      assert.equal((await t.refresh(reused.refreshToken)).status, 200);
      assert.equal((await t.refresh(reused.refreshToken)).status, 401);
      const removed = await t.newSession();
      assert.ok(await t.server.store.removeUser(removed.email, Math.floor(Date.now() / 1000)));

      const events = await receiver.drain();
      const bySession = new Map(events.map((event) => [event.sub_id.session?.id, event]));
      assert.equal(events.length, 6, 'one SET per session, none twice');
      const expected: [string, string, string, string][] = [
        [sid(loggedOut.accessToken), loggedOut.email, 'user', 'The user logged out.'],
        [sid(first.accessToken), first.email, 'user', 'The user logged out.'],
        [sid(other.accessToken), first.email, 'user', 'The user logged out.'],
        [sid(ended.accessToken), ended.email, 'user', 'The user logged out.'],
        [
          sid(reused.accessToken),
          reused.email,
          'policy',
          'A refresh token of the session was used twice; the session was revoked.',
        ],
        [sid(removed.accessToken), removed.email, 'admin', 'An administrator removed the user.'],
      ];
      for (const [session, email, initiator, reason] of expected) {
        const event = bySession.get(session);
        assert.ok(event, `a SET for session ${session}`);
        assert.deepEqual(event.sub_id, {
          format: 'complex',
          user: { format: 'email', email },
          session: { format: 'opaque', id: session },
        });
        assert.deepEqual(Object.keys(event.events), [SESSION_REVOKED]);
        assert.equal(revoked(event).initiating_entity, initiator);
        assert.deepEqual(revoked(event).reason_admin, { en: reason });
        assert.ok(Math.abs(revoked(event).event_timestamp! - Date.now() / 1000) < 60);
      }
      assert.deepEqual(await receiver.drain(), [], 'acknowledged SETs are gone');
    });

    test('a SET comes again until it is acknowledged, the same each time', async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      const session = await t.newSession();
      assert.equal((await t.logout(session.accessToken)).status, 200);
      const first = await receiver.poll({ returnImmediately: true });
      const again = await receiver.poll({ returnImmediately: true, maxEvents: 10 });
      assert.deepEqual(Object.keys(again.sets), Object.keys(first.sets));
      const [jti] = Object.keys(first.sets);
      assert.deepEqual(await receiver.verify(again.sets[jti]), await receiver.verify(first.sets[jti]));
      assert.deepEqual(await receiver.poll({ returnImmediately: true, ack: [jti] }), { sets: {}, moreAvailable: false });
    });

    test('maxEvents cuts the answer and says more are available', async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      for (let i = 0; i < 3; i++) assert.equal((await t.logout((await t.newSession()).accessToken)).status, 200);
      const page = await receiver.poll({ returnImmediately: true, maxEvents: 2 });
      assert.equal(Object.keys(page.sets).length, 2);
      assert.equal(page.moreAvailable, true);
      const rest = await receiver.poll({ returnImmediately: true, ack: Object.keys(page.sets) });
      assert.equal(Object.keys(rest.sets).length, 1);
      assert.equal(rest.moreAvailable, false);
    });

    test('a long poll answers as soon as a session ends', async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      const session = await t.newSession();
      const started = performance.now();
      const answer = receiver.poll({});
      setTimeout(() => void t.logout(session.accessToken), 200);
      const { sets } = await answer;
      const [set] = Object.values(sets);
      assert.equal((await receiver.verify(set)).sub_id.session?.id, decodePart(session.accessToken, 1).sid);
      assert.ok(performance.now() - started < 5000, 'well before the 25 s bound');
    });

    test("polls that may wait count in the client's one budget of long polls, with the revocation feed's", async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      const { cursor } = await t.server.store.revocationsAfter(undefined, 1000);
      const feedPoll = () => receiver.call('GET', `${ISSUER}${BASE}/revocations?after=${cursor}&wait=1`);
      // An SSF poll that a feed poll beat to the last place asks again until it gets it.
      const hold = async (): Promise<Reply> => {
        const reply = await receiver.call('POST', receiver.stream.delivery.endpoint_url, {});
        return reply.status === 429 ? settle(50).then(hold) : reply;
      };
      const held = Array.from({ length: t.config.maxLongPollsPerClient }, hold);
      // A feed poll that got in before the SSF polls were held is answered within its second:
      // ask again once that SSF poll has had time to take the place back.
      let refused: Reply | undefined;
      for (let attempt = 0; attempt < 20 && refused === undefined; attempt++) {
        const reply = await feedPoll();
        if (reply.status === 429) refused = reply;
        else await settle(500);
      }
      assert.ok(refused, "the revocation feed's long poll is refused while the SSF polls hold the budget");
      await assertExample(refused, 'TooManyLongPolls');
      const another = await receiver.call('POST', receiver.stream.delivery.endpoint_url, { returnImmediately: false });
      await assertExample(another, 'TooManyLongPolls');
      const retryAfter = Number(another.headers['retry-after']);
      assert.ok(retryAfter >= 1 && retryAfter <= 25, `Retry-After ${retryAfter}: when the first held poll answers at the latest`);
      assert.equal((await receiver.call('POST', receiver.stream.delivery.endpoint_url, { returnImmediately: true })).status, 200);
      // A session's end answers the held polls, which gives their budget back.
      await t.logout((await t.newSession()).accessToken);
      for (const reply of await Promise.all(held)) assert.equal(reply.status, 200, JSON.stringify(reply.body));
      assert.equal((await feedPoll()).status, 200);
    });

    test('setErrs are recorded and logged, and those SETs are not delivered again', async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      assert.equal((await t.logout((await t.newSession()).accessToken)).status, 200);
      const [jti] = Object.keys((await receiver.poll({ returnImmediately: true })).sets);
      const setErrs = { [jti]: { err: 'invalid_key', description: 'The key is not trusted.' } };
      assert.deepEqual(await receiver.poll({ returnImmediately: true, setErrs }), { sets: {}, moreAvailable: false });
      const line = logEntries(t).find(
        (entry) => entry.msg.startsWith('a receiver could not process a SET') && (entry as { jti?: string }).jti === jti,
      );
      assert.deepEqual(line && { err: (line as { err?: string }).err, streamId: (line as { streamId?: string }).streamId }, {
        err: 'invalid_key',
        streamId: receiver.stream.stream_id,
      });
    });

    test('a verification request sends a verification SET carrying its state', async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      const { stream_id } = receiver.stream;
      assert.equal((await receiver.call('POST', `${ISSUER}/ssf/verify`, { stream_id, state: 'VGhpcyBpcyBh' })).status, 204);
      const [event] = await receiver.drain();
      assert.deepEqual(event.sub_id, { format: 'opaque', id: stream_id });
      assert.deepEqual(event.events, { [VERIFICATION]: { state: 'VGhpcyBpcyBh' } });
    });

    test('a paused stream keeps queueing and delivers once enabled; a disabled one drops its queue', async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      const { stream_id } = receiver.stream;
      const setStatus = (status: string) => receiver.call('POST', `${ISSUER}/ssf/status`, { stream_id, status });
      assert.equal((await setStatus('paused')).status, 200);
      assert.equal((await t.logout((await t.newSession()).accessToken)).status, 200);
      assert.deepEqual(await receiver.poll({ returnImmediately: true }), { sets: {}, moreAvailable: false });
      assert.equal((await setStatus('enabled')).status, 200);
      assert.equal((await receiver.drain()).length, 1);
      assert.equal((await t.logout((await t.newSession()).accessToken)).status, 200);
      assert.equal((await setStatus('disabled')).status, 200);
      assert.equal((await t.logout((await t.newSession()).accessToken)).status, 200);
      assert.equal((await setStatus('enabled')).status, 200);
      assert.deepEqual(await receiver.drain(), []);
    });

    test('the SETs of a stream that asked for no session-revoked events are none, and a stream hears only what ends after it exists', async () => {
      const session = await t.newSession();
      assert.equal((await t.logout(session.accessToken)).status, 200);
      const silent = new Receiver(t);
      await silent.subscribe({ events_requested: [] });
      const listening = new Receiver(t);
      await listening.subscribe();
      assert.equal((await t.logout((await t.newSession()).accessToken)).status, 200);
      assert.deepEqual(await silent.drain(), []);
      assert.equal((await listening.drain()).length, 1);
    });

    test("queued SETs are purged an hour after their session's last token expired, acknowledged or not", async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      assert.equal((await t.logout((await t.newSession()).accessToken)).status, 200);
      const now = Math.floor(Date.now() / 1000);
      // The refresh token lives REFRESH_TOKEN_TTL (a day); the purge runs QUEUE_RETENTION_SECONDS after.
      assert.equal(await t.server.store.purgeExpiredEvents(now - 3600), 0);
      assert.ok((await t.server.store.purgeExpiredEvents(now + 86_400 + 1)) >= 1);
      assert.deepEqual(await receiver.drain(), []);
    });

    test('push: a receiver answering 503 twice gets the SET a third time, and then no more', async () => {
      const pushed = await startPushReceiver([503, 503]);
      try {
        const receiver = new Receiver(t);
        await receiver.subscribe(pushTo(pushed.url));
        assert.deepEqual(receiver.stream.delivery, { method: PUSH, endpoint_url: pushed.url });
        const session = await t.newSession();
        assert.equal((await t.logout(session.accessToken)).status, 200);
        const [delivered] = await pushed.accepted(1);
        assert.deepEqual(
          pushed.received.map(({ answered }) => answered),
          [503, 503, 202],
        );
        const events = await Promise.all(pushed.received.map(({ set }) => receiver.verify(set)));
        assert.equal(new Set(events.map(({ jti }) => jti)).size, 1, 'the same SET each time');
        assert.equal(events[0].sub_id.session?.id, decodePart(session.accessToken, 1).sid);
        assert.equal(delivered.contentType, 'application/secevent+jwt');
        assert.equal(delivered.authorization, 'Bearer receiver-token');
        await settle(1000);
        assert.equal(pushed.received.length, 3, 'a SET answered 202 is not pushed again');
        assert.deepEqual(await t.server.store.pendingEvents(receiver.stream.stream_id, 10), { events: [], more: false });
        const retried = logEntries(t).filter(
          (entry) =>
            entry.msg.startsWith('a receiver did not accept a pushed SET') && (entry as { jti?: string }).jti === events[0].jti,
        );
        assert.deepEqual(
          retried.map((entry) => (entry as { status?: number }).status),
          [503, 503],
        );
      } finally {
        await pushed.close();
      }
    });

    test('push: a SET queued while the receiver is down survives a restart and is delivered once it is back', async () => {
      const gone = await startPushReceiver();
      const { port } = new URL(gone.url);
      await gone.close(); // nobody listens there now: each push fails to connect
      const receiver = new Receiver(t);
      await receiver.subscribe(pushTo(gone.url));
      const session = await t.newSession();
      assert.equal((await t.logout(session.accessToken)).status, 200);
      const failedOnce = () => logEntries(t).some((entry) => entry.msg.startsWith('a receiver did not accept a pushed SET'));
      for (let waited = 0; !failedOnce(); waited += 50) {
        assert.ok(waited < 10_000, 'a push was tried');
        await settle(50);
      }
      await t.restart();
      const back = await startPushReceiver([], Number(port));
      try {
        const [delivered] = await back.accepted(1);
        const event = await receiver.verify(delivered.set);
        assert.equal(event.sub_id.session?.id, decodePart(session.accessToken, 1).sid);
      } finally {
        await back.close();
      }
    });

    test('a push stream has no poll endpoint, and a push stream needs an http or https endpoint_url', async () => {
      const pushed = await startPushReceiver();
      try {
        const receiver = new Receiver(t);
        await receiver.subscribe(pushTo(pushed.url));
        const poll = await receiver.call('POST', `${ISSUER}/ssf/poll/${receiver.stream.stream_id}`, { returnImmediately: true });
        assert.equal(poll.status, 404);
        for (const delivery of [
          { method: PUSH },
          { method: PUSH, endpoint_url: 'ftp://receiver.example/' },
          { method: 'urn:x' },
        ]) {
          const refused = await receiver.call('POST', `${ISSUER}/ssf/streams`, { delivery });
          assert.equal(refused.status, 400, JSON.stringify(delivery));
        }
      } finally {
        await pushed.close();
      }
    });

    test('propagation: a logout reaches a polling receiver and a push receiver, each within 1 s at p99', async () => {
      const pushed = await startPushReceiver();
      const polling = new Receiver(t);
      await polling.subscribe();
      const pushing = new Receiver(t);
      await pushing.subscribe(pushTo(pushed.url));
      const sessionOf = (set: string) => (decodePart(set, 1).sub_id as { session: { id: string } }).session.id;
      const polled = new Map<string, number>();
      let polling_ = true;
      const pollLoop = (async () => {
        let ack: string[] = [];
        while (polling_) {
          const { sets } = await polling.poll({ ack, maxEvents: 100 });
          for (const set of Object.values(sets)) polled.set(sessionOf(set), performance.now());
          ack = Object.keys(sets);
        }
      })();
      const until = async (seen: () => boolean) => {
        while (!seen()) await settle(5);
      };
      const latencies = { poll: [] as number[], push: [] as number[] };
      try {
        for (let i = 0; i < 40; i++) {
          const session = await t.newSession();
          const sid = decodePart(session.accessToken, 1).sid as string;
          const started = performance.now();
          assert.equal((await t.logout(session.accessToken)).status, 200);
          await Promise.all([
            until(() => polled.has(sid)).then(() => latencies.poll.push(polled.get(sid)! - started)),
            until(() => pushed.received.some(({ set }) => sessionOf(set) === sid)).then(() =>
              latencies.push.push(performance.now() - started),
            ),
          ]);
        }
      } finally {
        polling_ = false;
        await t.logout((await t.newSession()).accessToken); // answers the last long poll
        await pollLoop;
        await pushed.close();
      }
      const p99 = (values: number[]) => [...values].sort((a, b) => a - b)[Math.ceil(values.length * 0.99) - 1];
      console.log(`propagation p99: poll ${p99(latencies.poll).toFixed(0)} ms, push ${p99(latencies.push).toFixed(0)} ms`);
      assert.ok(p99(latencies.poll) <= 1000, `poll p99 ${p99(latencies.poll)} ms`);
      assert.ok(p99(latencies.push) <= 1000, `push p99 ${p99(latencies.push)} ms`);
      const metrics = await scrape(t.server.managementUrl);
      assert.ok(sample(metrics, 'fib_auth_ssf_delivery_seconds_count{method="poll"}')! >= 40);
      assert.ok(sample(metrics, 'fib_auth_ssf_delivery_seconds_count{method="push"}')! >= 40);
    });

    test('a queue past its bound loses its oldest SETs, and the metric and the log say so', async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      const sessions: string[] = [];
      for (let i = 0; i < 3; i++) {
        const session = await t.newSession();
        assert.equal((await t.logout(session.accessToken)).status, 200);
        sessions.push(decodePart(session.accessToken, 1).sid as string);
      }
      const registry = new Registry();
      const lines: { msg: string; streamId?: string; dropped?: number }[] = [];
      const sink = new Writable({
        write(chunk, _encoding, done) {
          lines.push(
            ...String(chunk)
              .split('\n')
              .filter(Boolean)
              .map((line) => JSON.parse(line) as (typeof lines)[number]),
          );
          done();
        },
      });
      const stop = await watchSecurityEventQueues(registry, t.server.store, createLogger('info', sink), 2);
      stop();
      const depth = sample(await registry.metrics(), `fib_auth_ssf_queue_depth{stream_id="${receiver.stream.stream_id}"}`);
      assert.equal(depth, 3, 'counted before the bound was applied');
      const dropped = lines.find((line) => line.streamId === receiver.stream.stream_id && line.msg.includes('passed its bound'));
      assert.equal(dropped?.dropped, 1);
      const kept = (await receiver.drain()).map((event) => event.sub_id.session?.id);
      assert.deepEqual(kept, sessions.slice(1), 'the newest two are kept');
    });

    test('the SET header is typed secevent+jwt and names the signing key', async () => {
      const receiver = new Receiver(t);
      await receiver.subscribe();
      assert.equal((await t.logout((await t.newSession()).accessToken)).status, 200);
      const [set] = Object.values((await receiver.poll({ returnImmediately: true })).sets);
      const header = decodeProtectedHeader(set);
      const jwks = (await t.call('GET', '/.well-known/jwks.json')).body as { keys: { kid: string }[] };
      assert.deepEqual(header, { alg: 'EdDSA', typ: 'secevent+jwt', kid: jwks.keys[0].kid });
    });
  });
}

const postgres = DATABASES.find(({ name }) => name === 'PostgreSQL')!;

describe('push from two PostgreSQL instances', () => {
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    if (postgres.skip) return;
    a = await startTestServerOn(postgres, { ISSUER });
    // The second instance: the same database and signing key, as instances behind a balancer have.
    b = await startTestServer({ ISSUER, DATABASE_URL: a.config.databaseUrl, FIB_AUTH_SIGNING_KEY_FILE: a.config.signingKeyFile });
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
  });

  testOn(
    'a burst of 200 logouts on both instances reaches the receiver once each, verified',
    { skip: postgres.skip },
    async () => {
      const pushed = await startPushReceiver();
      try {
        const receiver = new Receiver(a);
        await receiver.subscribe(pushTo(pushed.url));
        const sessions = [];
        for (let i = 0; i < 200; i++) sessions.push(await a.newSession());
        const logouts = await Promise.all(
          sessions.map(({ accessToken }, i) =>
            rawCall((i % 2 === 0 ? a : b).url, 'POST', `${BASE}/logout`, { headers: bearer(accessToken) }),
          ),
        );
        assert.deepEqual(new Set(logouts.map(({ status }) => status)), new Set([200]));
        const delivered = await pushed.accepted(200, 60_000);
        await settle(1000); // time for a duplicate to arrive
        assert.equal(pushed.received.length, 200, 'no SET pushed twice');
        const events = await Promise.all(delivered.map(({ set }) => receiver.verify(set)));
        assert.equal(new Set(events.map(({ jti }) => jti)).size, 200);
        assert.deepEqual(
          new Set(events.map((event) => event.sub_id.session?.id)),
          new Set(sessions.map(({ accessToken }) => decodePart(accessToken, 1).sid as string)),
        );
        const pushedBy = (t: TestServer) =>
          logEntries(t).filter((entry) => entry.msg.startsWith('a receiver did not accept a pushed SET')).length;
        assert.equal(pushedBy(a) + pushedBy(b), 0, 'every push was accepted the first time');
      } finally {
        await pushed.close();
      }
    },
  );
});
