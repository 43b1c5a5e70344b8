import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest, type OutgoingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { OpenAPIBackend } from 'openapi-backend';
import { loadConfig, type Config } from '../../src/config.js';
import { refusalOf } from '../../src/http/failures.js';
import { createLogger } from '../../src/logger.js';
import { bundledSpecPath } from '../../src/package-root.js';
import { startServer, type RunningServer, type ServerParts } from '../../src/server.js';
import type { Role } from '../../src/domain/store.js';
import { BASE, bearer } from './api.js';
import { ALICE, ALICE_SIGN_IN, publicKeyHexOf, signInBody, signMessage } from './vectors.js';

export { BASE, bearer };

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** The bundled contract, to check every answer the tests receive against it. */
const contract = new OpenAPIBackend({ definition: bundledSpecPath, strict: true, quick: false });
const contractReady = contract.init();

const PARSER_ANSWERS = (['headersTooLarge', 'requestTimeout', 'requestUnparsable'] as const).map((reason) => refusalOf(reason));

/** Asserts that a reply is one the contract documents, with the headers every response carries. */
async function assertMatchesContract(method: string, path: string, reply: Reply): Promise<void> {
  await contractReady;
  const where = `${method} ${path} → ${reply.status} ${JSON.stringify(reply.body).slice(0, 300)}`;
  if (typeof reply.body === 'object') assert.equal(reply.headers['content-type'], 'application/json', where);
  assert.equal(reply.headers['cache-control'], 'no-store', where);
  assert.equal(reply.headers['x-content-type-options'], 'nosniff', where);
  assert.match(String(reply.headers['x-request-id']), /^[0-9a-f-]{36}$/, where);
  // RFC 6750 §3.1: no error code when no bearer token was sent (docs/design.md §2); Basic for
  // the resource servers' operations (§11).
  if (reply.status === 401) {
    assert.match(String(reply.headers['www-authenticate']), /^(Bearer( error="invalid_token")?|Basic realm="fib-auth")$/, where);
  }
  if (PARSER_ANSWERS.some(({ status, message }) => status === reply.status && message === reply.body?.status?.message)) {
    // Refused by the HTTP parser before any operation was matched, as info.description says.
    assert.equal(reply.headers.connection, 'close', where);
    assert.deepEqual(reply.body.data, {}, where);
    return;
  }
  const operation = contract.matchOperation({ method, path: path.split('?')[0], headers: {} });
  if (!operation) {
    // Outside the operations only 404 and 405 exist, in the envelope.
    assert.ok([404, 405].includes(reply.status), where);
    assert.deepEqual(reply.body.data, {}, where);
    return;
  }
  const documented = operation.responses?.[String(reply.status)] as { content: Record<string, unknown> } | undefined;
  assert.ok(documented, `${where}: status not documented for ${operation.operationId}`);
  const mediaType = String(reply.headers['content-type']);
  assert.ok(mediaType in documented.content, `${where}: ${mediaType} not documented`);
  // Everything in JSON is the envelope but what standards define: the key set, introspection.
  if (mediaType === 'application/json' && !['getJwks', 'introspectToken'].includes(operation.operationId!))
    assert.equal(reply.body.status.code, reply.status, where);
  const result = contract.validator.validateResponse(reply.body, operation, reply.status);
  assert.equal(result.errors, null, `${where}: ${JSON.stringify(result.errors)}`);
}

export interface CallOptions {
  /** Header values; an array sends the header once per value. */
  headers?: Record<string, string | string[] | number>;
  body?: string | object;
  /** The address the request comes from (any of 127.0.0.0/8 reaches a server on 127.0.0.1). */
  localAddress?: string;
}

/** One HTTP request over a fresh connection, with full control over the headers sent. */
export function rawCall(baseUrl: string, method: string, path: string, options: CallOptions = {}): Promise<Reply> {
  const url = new URL(path, baseUrl);
  const body =
    options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
  const headers: OutgoingHttpHeaders = { ...options.headers };
  if (body !== undefined) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] = Buffer.byteLength(body);
  }
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers, agent: false, localAddress: options.localAddress }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const json = /^application\/json/.test(res.headers['content-type'] ?? '');
        resolve({ status: res.statusCode!, headers: res.headers, body: json && text ? JSON.parse(text) : text || undefined });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Sends a request exactly as written, for bytes that Node's client refuses to send (control
 * characters in a header); the server must close the connection after its reply.
 */
export function rawRequest(baseUrl: string, request: string): Promise<Reply> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const [head, ...body] = text.split('\r\n\r\n');
      const [statusLine, ...headerLines] = head.split('\r\n');
      const headers = Object.fromEntries(
        headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
      );
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: JSON.parse(body.join('\r\n\r\n')) });
    });
    socket.end(Buffer.from(request, 'latin1'));
  });
}

export interface Session {
  accessToken: string;
  refreshToken: string;
}

export interface TestServer {
  url: string;
  server: RunningServer;
  config: Config;
  dir: string;
  /** Every log line the server wrote. */
  logs: string[];
  call(method: string, path: string, options?: CallOptions): Promise<Reply>;
  /** A request written out in full (see rawRequest), its reply checked like call's. */
  send(request: string): Promise<Reply>;
  logout(accessToken: string | undefined): Promise<Reply>;
  refresh(refreshToken: string): Promise<Reply>;
  signIn(body: object): Promise<Reply>;
  /** Asks for a sign-in challenge for `email` (docs/design.md §12). */
  challenge(email: string): Promise<Reply>;
  /** A sign-in body that answers a fresh challenge for `email`, signed with `key`. */
  challengedProof(email: string, key: KeyObject): Promise<ChallengedProof>;
  /** Registers a user with a fresh key and signs them in (with a challenge when the server requires one). */
  newSession(email?: string): Promise<Session & { email: string; key: KeyObject }>;
  addUser(email: string, publicKeyHex: string, role?: Role): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface ChallengedProof {
  email: string;
  signature: string;
  authPublicKeyHex: string;
  nonce: string;
}

/**
 * Starts the real server in this process on a temporary SQLite file and a temporary key,
 * listening on a free port. `env` adds to docs/design.md §8's variables; `parts` replaces the
 * store or the clock.
 *
 * The limits on refused requests (§12) are off unless `env` sets them: the hostile suites
 * send thousands of refused requests from one address on purpose, and test/rate-limits.test.ts
 * tests the limits themselves.
 */
export async function startTestServer(env: Record<string, string> = {}, parts: ServerParts = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'fib-auth-test-'));
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: `sqlite:${join(dir, 'fib-auth.sqlite')}`,
    FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem'),
    LOG_LEVEL: 'debug',
    RATE_LIMIT_REFUSED_PER_ADDRESS: '0',
    RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL: '0',
    ...env,
  });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const start = () => startServer(config, createLogger(config.logLevel, sink), parts);
  const t: TestServer = {
    url: '',
    server: await start(),
    config,
    dir,
    logs,
    async call(method, path, options) {
      const reply = await rawCall(t.url, method, path, options);
      await assertMatchesContract(method, path, reply);
      return reply;
    },
    async send(request) {
      const reply = await rawRequest(t.url, request);
      const [method, path] = request.split(' ');
      await assertMatchesContract(method, path, reply);
      return reply;
    },
    logout: (accessToken) => t.call('POST', `${BASE}/logout`, { headers: accessToken === undefined ? {} : bearer(accessToken) }),
    refresh: (refreshToken) => t.call('PATCH', `${BASE}/session`, { headers: bearer(refreshToken) }),
    signIn: (body) => t.call('POST', `${BASE}/session`, { body }),
    challenge: (email) => t.call('POST', `${BASE}/session/challenge`, { body: { email } }),
    async challengedProof(email, key) {
      const reply = await t.challenge(email);
      assert.equal(reply.status, 200, JSON.stringify(reply.body));
      const { nonce, message } = reply.body.data;
      return { email, signature: signMessage(message, key), authPublicKeyHex: publicKeyHexOf(key), nonce };
    },
    async addUser(email, publicKeyHex, role = 'ROLE_PEER') {
      const added = await t.server.store.addUser({
        email,
        accountId: randomUUID(),
        authPublicKeyHex: publicKeyHex,
        role,
        createdAt: Math.floor(Date.now() / 1000),
      });
      assert.ok(added, `user ${email} added`);
    },
    async newSession(email = `user-${randomUUID()}@example.test`) {
      const { privateKey: key } = generateKeyPairSync('ed25519');
      await t.addUser(email, publicKeyHexOf(key));
      const reply = await t.signIn(
        config.signInChallenge === 'required' ? await t.challengedProof(email, key) : signInBody(email, key),
      );
      assert.equal(reply.status, 200, JSON.stringify(reply.body));
      return { ...reply.body.data, email, key };
    },
    async restart() {
      await t.server.close();
      t.server = await start();
      t.url = t.server.url;
    },
    async stop() {
      await t.server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  t.url = t.server.url;
  return t;
}

/** Signs Alice in with the docs/design.md §4 vector, registering her first. */
export async function signInAlice(t: TestServer): Promise<Session> {
  await t.addUser(ALICE.email, ALICE.publicKeyHex);
  const reply = await t.signIn(ALICE_SIGN_IN);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return reply.body.data;
}

/** The bundled contract with every `$ref` resolved, as the tests check replies against it. */
export async function resolvedContract(): Promise<any> {
  await contractReady;
  return contract.definition;
}

/** The value of a named example in the bundled contract. */
export function example(name: string): any {
  const found = contract.definition.components?.examples?.[name] as { value: unknown } | undefined;
  return found?.value ?? assert.fail(`the contract has no example ${name}`);
}

/** Asserts a reply's status and exact body against a named example of the contract. */
export async function assertExample(reply: Reply, name: string): Promise<void> {
  await contractReady;
  assert.deepEqual({ status: reply.status, body: reply.body }, { status: example(name).status.code, body: example(name) });
}

/** Asserts a reply's envelope status against a named example whose `data` changes with every run. */
export async function assertExampleStatus(reply: Reply, name: string): Promise<void> {
  await contractReady;
  assert.deepEqual(
    { status: reply.status, envelope: reply.body.status },
    { status: example(name).status.code, envelope: example(name).status },
  );
}
