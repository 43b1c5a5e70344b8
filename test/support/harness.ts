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
import { contractFormats } from '../../src/http/api.js';
import { refusalOf } from '../../src/contract/failures.js';
import { createLogger } from '../../src/logger.js';
import { bundledSpecPath } from '../../src/package-root.js';
import { startServer, type RunningServer, type ServerParts } from '../../src/server.js';
import type { Role } from '../../src/domain/store.js';
import type { contractExamples } from '../../packages/client/generated/examples.js';
import type { components, operations } from '../../generated/openapi.js';
import { BASE, bearer, TEST_ISSUER } from './api.js';
import type { DatabaseBackend } from './databases.js';
import { ALICE, ALICE_SIGN_IN, publicKeyHexOf, signInBody, signMessage } from './vectors.js';

export { BASE, bearer };

/** A reply as received: `body` is parsed JSON, text, or undefined when there is none. */
export interface Reply<Body = unknown> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Body;
}

export type Envelope = components['schemas']['Envelope'];

export type OperationId = keyof operations;
type Responses<Op extends OperationId> = operations[Op]['responses'];
/** The body the contract documents for an operation's answer with `status`. */
export type DocumentedBody<Op extends OperationId, Status extends keyof Responses<Op>> = Responses<Op>[Status] extends {
  content: infer C;
}
  ? C[keyof C]
  : undefined;
/** A reply that the contract documents for an operation: asserting its status types its body. */
export type OperationReply<Op extends OperationId> = {
  [Status in keyof Responses<Op>]: Reply<DocumentedBody<Op, Status>> & { status: Status };
}[keyof Responses<Op>];

/** A reply of `call` to an operation, typed as the contract documents it: `call` checked it against the contract. */
const documented = <Op extends keyof operations>(_operation: Op, reply: Promise<Reply>) => reply as Promise<OperationReply<Op>>;

export const isEnvelope = (body: unknown): body is Envelope =>
  typeof body === 'object' && body !== null && 'status' in body && 'data' in body;

/** A reply's body, asserted to be the envelope (every JSON answer but the key set and introspection's). */
export function envelopeOf(reply: Reply): Envelope {
  assert.ok(isEnvelope(reply.body), `${reply.status} ${JSON.stringify(reply.body)}`);
  return reply.body;
}

type Examples = {
  [Op in keyof typeof contractExamples]: (typeof contractExamples)[Op]['examples'];
}[keyof typeof contractExamples];
type NamesOf<E> = E extends unknown ? keyof E & string : never;
/** The name of an example of the contract (examples are named once, in components). */
export type ExampleName = NamesOf<Examples>;
type ValueOf<E, Name extends string> = E extends { readonly [N in Name]: { readonly value: infer V } } ? V : never;
export type ExampleValue<Name extends ExampleName> = Name extends unknown ? ValueOf<Examples, Name> : never;
/** The examples that are an envelope, which assertExample compares a reply with. */
export type EnvelopeExampleName = {
  [Name in ExampleName]: ExampleValue<Name> extends { readonly status: object } ? Name : never;
}[ExampleName];

/** What the tests read of the contract once every `$ref` is resolved. */
export interface ResolvedContract {
  openapi: string;
  info: { title: string; version: string; description?: string };
  paths: Record<string, Record<string, ResolvedOperation>>;
  components: { securitySchemes: Record<string, object>; examples: Record<string, { value: unknown }> };
}
export interface ResolvedOperation {
  operationId: keyof operations;
  summary: string;
  responses: Record<string, ResolvedResponse>;
}
export interface ResolvedResponse {
  description: string;
  headers?: Record<string, { schema: { example?: unknown } }>;
  /** Absent for a response without a body (204). */
  content?: Record<string, { schema: object; examples: Record<string, { value: unknown }> }>;
}

/**
 * The bundled contract, to check every answer the tests receive against it. `quick` compiles
 * the validator of an operation's answers when the first one is checked, not all of them in
 * every test process; the server checks the definition itself at every start.
 */
const contract = new OpenAPIBackend({ definition: bundledSpecPath, strict: true, quick: true, customizeAjv: contractFormats });
const contractReady = contract.init();

const PARSER_ANSWERS = (['headersTooLarge', 'requestTimeout', 'requestUnparsable'] as const).map((reason) => refusalOf(reason));

/** Asserts that a reply is one the contract documents, with the headers every response carries. */
async function assertMatchesContract(method: string, path: string, reply: Reply): Promise<void> {
  await contractReady;
  const where = `${method} ${path} → ${reply.status} ${String(JSON.stringify(reply.body)).slice(0, 300)}`;
  if (typeof reply.body === 'object') assert.equal(reply.headers['content-type'], 'application/json', where);
  // The key set and the metadata may be cached briefly (docs/design.md §5); nothing else may.
  const published = ['/.well-known/jwks.json', '/.well-known/oauth-authorization-server'].includes(path) && reply.status === 200;
  assert.equal(reply.headers['cache-control'], published ? 'public, max-age=60' : 'no-store', where);
  assert.equal(reply.headers['x-content-type-options'], 'nosniff', where);
  assert.match(String(reply.headers['x-request-id']), /^[0-9a-f-]{36}$/, where);
  // RFC 6750 §3.1: no error code when no bearer token was sent (docs/design.md §2); Basic for
  // the resource servers' operations (§11).
  if (reply.status === 401) {
    assert.match(String(reply.headers['www-authenticate']), /^(Bearer( error="invalid_token")?|Basic realm="fib-auth")$/, where);
  }
  const { body } = reply;
  if (
    isEnvelope(body) &&
    PARSER_ANSWERS.some(({ status, message }) => status === reply.status && message === body.status.message)
  ) {
    // Refused by the HTTP parser before any operation was matched, as info.description says.
    assert.equal(reply.headers.connection, 'close', where);
    assert.deepEqual(body.data, {}, where);
    return;
  }
  const operation = contract.matchOperation({ method, path: path.split('?')[0], headers: {} });
  if (!operation) {
    // Outside the operations only 404 and 405 exist, in the envelope.
    assert.ok([404, 405].includes(reply.status), where);
    assert.ok(isEnvelope(body), where);
    assert.deepEqual(body.data, {}, where);
    return;
  }
  const documented = operation.responses?.[String(reply.status)] as { content?: Record<string, unknown> } | undefined;
  assert.ok(documented, `${where}: status not documented for ${operation.operationId}`);
  if (documented.content === undefined) {
    assert.equal(reply.body, undefined, `${where}: a body where the contract documents none`);
    return;
  }
  const mediaType = String(reply.headers['content-type']);
  assert.ok(mediaType in documented.content, `${where}: ${mediaType} not documented`);
  // Everything in JSON is the envelope but what standards define: the key set, the metadata,
  // introspection, Shared Signals' answers (its refusals are in the envelope).
  const standard =
    ['getJwks', 'getAuthorizationServerMetadata', 'introspectToken'].includes(operation.operationId!) ||
    (operation.tags?.includes('Shared Signals') === true && reply.status < 300);
  if (mediaType === 'application/json' && !standard) {
    assert.ok(isEnvelope(body), where);
    assert.equal(body.status.code, reply.status, where);
  }
  const result = contract.validator.validateResponse(body, operation, reply.status);
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
  logout(accessToken: string | undefined): Promise<OperationReply<'logout'>>;
  refresh(refreshToken: string): Promise<OperationReply<'refreshTokens'>>;
  signIn(body: object): Promise<OperationReply<'authorizeUser'>>;
  /** Asks for a sign-in challenge for `email` (docs/design.md §12). */
  challenge(email: string): Promise<OperationReply<'createSignInChallenge'>>;
  /** A sign-in body that answers a fresh challenge for `email`, signed with `key`. */
  challengedProof(email: string, key: KeyObject): Promise<ChallengedProof>;
  /** Registers a user with a fresh key and signs them in (with a challenge when the server requires one). */
  newSession(email?: string): Promise<Session & { email: string; key: KeyObject }>;
  addUser(email: string, publicKeyHex: string, role?: Role): Promise<void>;
  restart(): Promise<void>;
  stop: () => Promise<void>;
}

export interface ChallengedProof {
  email: string;
  signature: string;
  authPublicKeyHex: string;
  nonce: string;
}

/** A line the server logged (pino writes JSON), with the fields the tests read. */
export interface LogEntry {
  level: number;
  msg: string;
  requestId?: string;
  method?: string;
  path?: string;
  operation?: string;
  status?: number;
  ms?: number;
  err?: { message: string };
}

/** Every line the server has logged so far. */
export const logEntries = (t: TestServer): LogEntry[] => t.logs.map((line) => JSON.parse(line) as LogEntry);

/**
 * Starts the real server in this process on a temporary SQLite file and a temporary key,
 * listening on a free port, its management listener on another. `env` adds to docs/design.md §8's variables; `parts` replaces the
 * store or the clock.
 *
 * The limits of §12.3 are off unless `env` sets them: the hostile suites send thousands of
 * refused requests and challenges from one address on purpose, and test/rate-limits.test.ts
 * tests the limits themselves.
 */
export async function startTestServer(env: Record<string, string> = {}, parts: ServerParts = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'fib-auth-test-'));
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    MANAGEMENT_PORT: '0',
    DATABASE_URL: `sqlite:${join(dir, 'fib-auth.sqlite')}`,
    FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'signing-key.pem'),
    LOG_LEVEL: 'debug',
    RATE_LIMIT_REFUSED_PER_ADDRESS: '0',
    RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL: '0',
    RATE_LIMIT_CHALLENGES_PER_ADDRESS: '0',
    ISSUER: TEST_ISSUER,
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
    logout: (accessToken) =>
      documented('logout', t.call('POST', `${BASE}/logout`, { headers: accessToken === undefined ? {} : bearer(accessToken) })),
    refresh: (refreshToken) => documented('refreshTokens', t.call('PATCH', `${BASE}/session`, { headers: bearer(refreshToken) })),
    signIn: (body) => documented('authorizeUser', t.call('POST', `${BASE}/session`, { body })),
    challenge: (email) => documented('createSignInChallenge', t.call('POST', `${BASE}/session/challenge`, { body: { email } })),
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

/**
 * The test server (startTestServer) on a fresh database of `backend`: a SQLite file, or a
 * PostgreSQL schema. Stopping it drops the database too.
 */
export async function startTestServerOn(
  backend: DatabaseBackend,
  env: Record<string, string> = {},
  parts: ServerParts = {},
): Promise<TestServer> {
  const database = await backend.create();
  const t = await startTestServer({ DATABASE_URL: database.url, ...env }, parts);
  const stop = t.stop;
  t.stop = async () => {
    await stop();
    await database.drop();
  };
  return t;
}

/**
 * The body of a reply to `operationId`, typed as the contract documents it for `status`, after
 * asserting that status and checking the body against that response's schema.
 */
export async function bodyOf<Op extends OperationId, Status extends keyof Responses<Op> & number>(
  reply: Reply,
  operationId: Op,
  status: Status,
): Promise<DocumentedBody<Op, Status>> {
  await contractReady;
  const where = `${operationId} → ${reply.status} ${JSON.stringify(reply.body)?.slice(0, 300)}`;
  assert.equal(reply.status, status, where);
  const result = contract.validator.validateResponse(reply.body, operationId, status);
  assert.equal(result.errors, null, `${where}: ${JSON.stringify(result.errors)}`);
  return reply.body as DocumentedBody<Op, Status>;
}

/** Signs Alice in with the README's test vector, registering her first. */
export async function signInAlice(t: TestServer): Promise<Session> {
  await t.addUser(ALICE.email, ALICE.publicKeyHex);
  const reply = await t.signIn(ALICE_SIGN_IN);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return reply.body.data;
}

/** The bundled contract with every `$ref` resolved, as the tests check replies against it. */
export async function resolvedContract(): Promise<ResolvedContract> {
  await contractReady;
  // openapi-backend types the definition as any document; this one passed `redocly lint`.
  return contract.definition as unknown as ResolvedContract;
}

/** The value of a named example in the bundled contract. */
export function example<Name extends ExampleName>(name: Name): ExampleValue<Name> {
  const found = contract.definition.components?.examples?.[name] as { value: ExampleValue<Name> } | undefined;
  // packages/client/generated/examples.ts, where the type comes from, holds the same examples (npm run gen:check).
  return found?.value ?? assert.fail(`the contract has no example ${name}`);
}

/** Asserts a reply's status and exact body against a named example of the contract. */
export async function assertExample(reply: Reply, name: EnvelopeExampleName): Promise<void> {
  await contractReady;
  assert.deepEqual({ status: reply.status, body: reply.body }, { status: example(name).status.code, body: example(name) });
}

/** Asserts a reply's envelope status against a named example whose `data` changes with every run. */
export async function assertExampleStatus(reply: Reply, name: EnvelopeExampleName): Promise<void> {
  await contractReady;
  assert.deepEqual(
    { status: reply.status, envelope: envelopeOf(reply).status },
    { status: example(name).status.code, envelope: example(name).status },
  );
}

/**
 * Sends `count` requests at once (`send(i)` sends the i-th) that only one may win: the same
 * logout, refresh token or nonce, on one server or several. Asserts that exactly one is answered
 * 200 and that every other answer has the status `lost`, or passes the check `lost`; resolves
 * with the 200 and the others.
 */
export async function exactlyOne200<R extends Reply>(
  count: number,
  send: (i: number) => Promise<R>,
  lost: number | ((reply: R) => unknown),
): Promise<{ winner: R; losers: R[] }> {
  const replies = await Promise.all(Array.from({ length: count }, (_, i) => send(i)));
  const statuses = `${count} at once: ${replies.map((reply) => reply.status).join(' ')}`;
  const winners = replies.filter((reply) => reply.status === 200);
  assert.equal(winners.length, 1, `exactly one 200 of ${statuses}`);
  const losers = replies.filter((reply) => reply !== winners[0]);
  for (const reply of losers) {
    if (typeof lost === 'number') assert.equal(reply.status, lost, statuses);
    else await lost(reply);
  }
  return { winner: winners[0], losers };
}
