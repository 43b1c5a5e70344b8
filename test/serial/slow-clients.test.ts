import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test as testOn } from 'node:test';
import { DATABASES } from '../support/databases.js';
import { Clients } from '../../src/domain/clients.js';
import { assertExample, BASE, startTestServer, startTestServerOn, type TestServer } from '../support/harness.js';

// Slow clients (docs/design.md §9): a request must arrive within HEADERS_TIMEOUT (its line and
// headers) and REQUEST_TIMEOUT (all of it), or it is answered 408 in the envelope and its
// connection closed; past MAX_CONNECTIONS a new connection is closed at once. The timeouts are
// Node's own timers, so these tests set them to a second or two and wait for them. They run in
// test/serial/, with no other test file beside them: their bounds are seconds (all 1,000 answered
// within 5 s, the other client's logout within 1 s), which a loaded machine stretches.

const SLOW_CLIENTS = 1000;

interface SlowClient {
  socket: Socket;
  /** Resolves with everything the server sent before it closed the connection. */
  answer: Promise<string>;
}

/** Opens a connection from `localAddress` (any of 127.0.0.0/8) that sends `bytes` and then nothing more. */
function sendOnly(url: string, bytes: string, localAddress = '127.0.0.1'): Promise<SlowClient> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), localAddress });
    const chunks: Buffer[] = [];
    const answer = new Promise<string>((done) => {
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('close', () => done(Buffer.concat(chunks).toString('utf8')));
    });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      socket.on('error', () => {}); // a reset after the answer: the answer is what is checked
      socket.write(bytes, () => resolve({ socket, answer }));
    });
  });
}

/**
 * Opens `count` connections, at most 100 at a time, each sending `bytes` only; each hundred from
 * an address of its own, 127.0.1.1 onwards, unless `from` names the one they all come from.
 */
async function openSlowClients(url: string, count: number, bytes: string, from?: string): Promise<SlowClient[]> {
  const clients: SlowClient[] = [];
  for (let opened = 0; opened < count; opened += 100) {
    const address = from ?? `127.0.1.${opened / 100 + 1}`;
    clients.push(
      ...(await Promise.all(Array.from({ length: Math.min(100, count - opened) }, () => sendOnly(url, bytes, address)))),
    );
  }
  return clients;
}

const HALF_HEADERS = `POST ${BASE}/logout HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer eyJhbGciOiJFZERTQSJ9`;

/** The parsed 408 a slow client got. */
function parse408(answer: string): { statusLine: string; headers: Record<string, string>; body: unknown } {
  const [head, body] = answer.split('\r\n\r\n');
  const [statusLine, ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(
    lines.map((line) => [line.split(':')[0].toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
  );
  return { statusLine, headers, body: JSON.parse(body) };
}

for (const backend of DATABASES) {
  describe(`slow clients on ${backend.name}`, () => {
    const test = (name: string, fn: (ctx: { diagnostic(message: string): void }) => Promise<void>): void => {
      testOn(name, { skip: backend.skip, timeout: 60_000 }, fn);
    };
    let t: TestServer;
    before(async () => {
      if (!backend.skip) t = await startTestServerOn(backend, { HEADERS_TIMEOUT: '2', REQUEST_TIMEOUT: '3' });
    });
    after(() => t?.stop());

    test(`${SLOW_CLIENTS} connections from 10 addresses that send half a request do not stop another client's logout; each gets 408`, async (ctx) => {
      const s = await t.newSession();
      const before = await t.newSession();
      const baselineStarted = performance.now();
      await assertExample(await t.logout(before.accessToken), 'LoggedOut');
      const baseline = performance.now() - baselineStarted;
      const openedAt = performance.now();
      const slow = await openSlowClients(t.url, SLOW_CLIENTS, HALF_HEADERS);
      const started = performance.now();
      const logout = await t.logout(s.accessToken);
      const latency = performance.now() - started;
      await assertExample(logout, 'LoggedOut');
      const answers = await Promise.all(slow.map((client) => client.answer));
      const answeredAfter = performance.now() - openedAt;
      ctx.diagnostic(
        `with ${SLOW_CLIENTS} half-sent requests open, another client's logout took ${latency.toFixed(1)} ms ` +
          `(before they connected: ${baseline.toFixed(1)} ms); ` +
          `all ${SLOW_CLIENTS} got their 408 within ${Math.round(answeredAfter)} ms of the first connecting (HEADERS_TIMEOUT=2)`,
      );
      assert.ok(latency < 1000, `the logout took ${latency} ms`);
      const first = parse408(answers[0]);
      assert.equal(first.statusLine, 'HTTP/1.1 408 Request Timeout');
      assert.equal(first.headers.connection, 'close');
      assert.equal(first.headers['content-type'], 'application/json');
      assert.match(first.headers['x-request-id'], /^[0-9a-f-]{36}$/);
      assert.deepEqual(first.body, {
        status: { code: 408, name: 'Request Timeout', message: 'The request did not arrive in time.' },
        data: {},
      });
      for (const answer of answers) assert.deepEqual(parse408(answer).body, first.body);
      assert.ok(answeredAfter < 2000 + 3000, `answered after ${answeredAfter} ms`);
    });

    test('a body that stops halfway is answered 408 after REQUEST_TIMEOUT', async () => {
      const started = performance.now();
      const [client] = await openSlowClients(
        t.url,
        1,
        `POST ${BASE}/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"email":`,
      );
      const { statusLine } = parse408(await client.answer);
      const waited = performance.now() - started;
      assert.equal(statusLine, 'HTTP/1.1 408 Request Timeout');
      assert.ok(waited >= 2900 && waited < 5000, `answered after ${waited} ms`);
      // Nobody is left to answer: no 500 is logged for it, and the server is unharmed.
      assert.deepEqual(
        t.logs.filter((line) => line.includes('"level":50')),
        [],
      );
      await assertExample(await t.logout((await t.newSession()).accessToken), 'LoggedOut');
    });
  });
}

describe('MAX_CONNECTIONS', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ MAX_CONNECTIONS: '20', HEADERS_TIMEOUT: '1', REQUEST_TIMEOUT: '1' });
  });
  after(() => t.stop());

  testOn(
    'past the cap a new connection is closed at once, without an answer; once the slow ones are answered 408, the server accepts again',
    async () => {
      const s = await t.newSession();
      const slow = await openSlowClients(t.url, 20, HALF_HEADERS, '127.0.0.1');
      const refused = await sendOnly(t.url, `POST ${BASE}/logout HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      assert.equal(await refused.answer, '', 'closed without an answer');
      for (const answer of await Promise.all(slow.map((client) => client.answer))) {
        assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/);
      }
      await assertExample(await t.logout(s.accessToken), 'LoggedOut');
    },
  );
});

describe('connections per client', () => {
  const CAP = 30;
  const PER_ADDRESS = 10;
  const LONG_POLLS = 4;
  let t: TestServer;
  before(async () => {
    t = await startTestServer({
      MAX_CONNECTIONS: String(CAP),
      MAX_CONNECTIONS_PER_ADDRESS: String(PER_ADDRESS),
      MAX_LONG_POLLS_PER_CLIENT: String(LONG_POLLS),
    });
  });
  after(() => t.stop());

  testOn(
    `${CAP} slow connections from one address: past ${PER_ADDRESS} they are closed at once; another address logs out`,
    async () => {
      const s = await t.newSession();
      const slow: SlowClient[] = [];
      // One after another, so that the server takes them in this order.
      for (let i = 0; i < CAP; i++) slow.push(await sendOnly(t.url, HALF_HEADERS, '127.0.0.2'));
      try {
        await assertExample(await t.logout(s.accessToken), 'LoggedOut');
        const closed = await Promise.all(slow.slice(PER_ADDRESS).map((client) => client.answer));
        assert.deepEqual(closed, Array<string>(CAP - PER_ADDRESS).fill(''), 'closed without an answer');
        assert.ok(
          slow.slice(0, PER_ADDRESS).every((client) => !client.socket.closed),
          `the first ${PER_ADDRESS} are still open`,
        );
      } finally {
        for (const client of slow) client.socket.destroy();
      }
    },
  );

  testOn(
    `one client's ${CAP} long polls: past ${LONG_POLLS} they are refused 429; another client follows the feed, a user logs out`,
    async () => {
      const client = async () => {
        const id = `rs-${randomUUID()}`;
        const secret = await new Clients(t.server.store, Date.now).add(id);
        return { authorization: `Basic ${Buffer.from(`${id}:${secret!}`).toString('base64')}` };
      };
      const [greedy, other] = [await client(), await client()];
      const s = await t.newSession();
      const { cursor } = await t.server.store.revocationsAfter(undefined, 1000);
      const polls = Array.from({ length: CAP }, () =>
        t.call('GET', `${BASE}/revocations?after=${cursor}&wait=30`, { headers: greedy }),
      );
      const refused = await Promise.all(polls.slice(LONG_POLLS));
      for (const reply of refused) {
        assert.equal(reply.status, 429, 'refused at once, not held');
        await assertExample(reply, 'TooManyLongPolls');
        // When the first of the held polls answers at the latest: they wait 30 s.
        assert.ok(Number(reply.headers['retry-after']) >= 29 && Number(reply.headers['retry-after']) <= 30);
      }
      const feed = await t.call('GET', `${BASE}/revocations?after=${cursor}&wait=0`, { headers: other });
      assert.equal(feed.status, 200);
      await assertExample(await t.logout(s.accessToken), 'LoggedOut');
      // The logout's revocation answers the polls that were held.
      for (const reply of await Promise.all(polls.slice(0, LONG_POLLS))) assert.equal(reply.status, 200);
    },
  );
});
