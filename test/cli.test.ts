import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { serveChild } from './support/child-server.js';
import { runCli } from './support/cli.js';
import { DATABASES, emptySqliteStore } from './support/databases.js';
import { BASE, bodyOf, rawCall } from './support/harness.js';
import { ALICE, ALICE_SIGN_IN } from './support/vectors.js';

describe('the fib-auth command', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const run = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) => runCli(args, { ...env, ...extraEnv });
  const addAlice = ['users', 'add', '--email', ALICE.email, '--auth-public-key', ALICE.publicKeyHex];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fib-auth-cli-'));
    env = {
      PATH: process.env.PATH,
      DATABASE_URL: emptySqliteStore(join(dir, 'fib-auth.sqlite')),
      FIB_AUTH_SIGNING_KEY_FILE: join(dir, 'keys', 'signing-key.pem'),
      HOST: '127.0.0.1',
      PORT: '0',
    };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const backend of DATABASES) {
    test(`users add, list and remove on ${backend.name}, with exit codes 0, 1 and 2`, { skip: backend.skip }, async () => {
      const database = await backend.create();
      const runOn = (args: string[]) => run(args, { DATABASE_URL: database.url });
      try {
        const added = await runOn([...addAlice, '--role', 'ROLE_ADMIN', '--account-id', 'acc-1']);
        assert.equal(added.code, 0, added.stderr);
        assert.match(added.stdout, /added alice@wonderland.space \(account acc-1, ROLE_ADMIN\)/);

        const again = await runOn(addAlice);
        assert.equal(again.code, 1);
        assert.equal(again.stderr, `fib-auth: a user with the email alice@wonderland.space already exists in ${database.url}\n`);

        const listed = await runOn(['users', 'list', '--json']);
        assert.equal(listed.code, 0);
        const [user] = JSON.parse(listed.stdout) as Record<string, unknown>[];
        assert.deepEqual(
          { ...user, createdAt: undefined },
          {
            email: ALICE.email,
            accountId: 'acc-1',
            authPublicKeyHex: ALICE.publicKeyHex,
            role: 'ROLE_ADMIN',
            createdAt: undefined,
          },
        );
        assert.match((await runOn(['users', 'list'])).stdout, /^alice@wonderland.space\tacc-1\tROLE_ADMIN\t7fbedb/);

        assert.equal((await runOn(['users', 'remove', '--email', 'ALICE@wonderland.space'])).code, 0);
        const gone = await runOn(['users', 'remove', '--email', ALICE.email]);
        assert.equal(gone.code, 1);
        assert.equal(gone.stderr, `fib-auth: no user has the email alice@wonderland.space in ${database.url}\n`);
      } finally {
        await database.drop();
      }
    });
  }

  for (const backend of DATABASES) {
    test(
      `clients add, list and remove on ${backend.name}: the secret once, on the last line, and it works`,
      { skip: backend.skip },
      async () => {
        const database = await backend.create();
        const runOn = (args: string[]) => run(args, { DATABASE_URL: database.url });
        try {
          const added = await runOn(['clients', 'add', '--id', 'orders-service']);
          assert.equal(added.code, 0, added.stderr);
          const secret = added.stdout.trimEnd().split('\n').at(-1)!;
          assert.match(secret, /^[A-Za-z0-9_-]{43}$/, 'the secret alone on the last line: 256 bits, base64url');

          const again = await runOn(['clients', 'add', '--id', 'orders-service']);
          assert.equal(again.code, 1);
          assert.equal(again.stderr, `fib-auth: a client with the id orders-service already exists in ${database.url}\n`);
          assert.equal((await runOn(['clients', 'add', '--id', 'not valid'])).code, 2);

          const listed = await runOn(['clients', 'list', '--json']);
          assert.deepEqual(
            (JSON.parse(listed.stdout) as { id: string }[]).map((c) => c.id),
            ['orders-service'],
          );
          assert.doesNotMatch(listed.stdout + (await runOn(['clients', 'list'])).stdout, new RegExp(secret), 'never shown again');

          const server = await serveChild({ ...env, DATABASE_URL: database.url });
          try {
            const introspect = (credentials: string) =>
              rawCall(server.url, 'POST', `${BASE}/introspection`, {
                headers: {
                  authorization: `Basic ${Buffer.from(credentials).toString('base64')}`,
                  'content-type': 'application/x-www-form-urlencoded',
                },
                body: 'token=x.y.z',
              });
            assert.deepEqual((await introspect(`orders-service:${secret}`)).body, { active: false });
            assert.equal((await runOn(['clients', 'remove', '--id', 'orders-service'])).code, 0);
            assert.equal((await introspect(`orders-service:${secret}`)).status, 401);
          } finally {
            await server.stop();
          }
          const gone = await runOn(['clients', 'remove', '--id', 'orders-service']);
          assert.equal(gone.code, 1);
          assert.equal(gone.stderr, `fib-auth: no client has the id orders-service in ${database.url}\n`);
        } finally {
          await database.drop();
        }
      },
    );
  }

  test('usage errors exit 2 with one line', async () => {
    const cases = [
      [],
      ['frobnicate'],
      ['users'],
      ['users', 'add', '--email', ALICE.email],
      ['users', 'add', '--email', 'not-an-email', '--auth-public-key', ALICE.publicKeyHex],
      // What sign-in refuses (400) is never registered: over 254 characters, or not of an email's form.
      ['users', 'add', '--email', `${'a'.repeat(246)}@wonderland.space`, '--auth-public-key', ALICE.publicKeyHex],
      ['users', 'add', '--email', 'alïce@wonderland.space', '--auth-public-key', ALICE.publicKeyHex],
      ['users', 'add', '--email', 'alice@wonderland..space', '--auth-public-key', ALICE.publicKeyHex],
      ['users', 'add', '--email', ALICE.email, '--auth-public-key', 'abcd'],
      ['users', 'add', ...addAlice.slice(2), '--role', 'ROLE_KING'],
      ['users', 'list', '--yaml'],
      ['users', 'remove'],
      ['clients'],
      ['clients', 'add'],
      ['clients', 'add', '--id', 'x'.repeat(65)],
      ['clients', 'list', '--secrets'],
      ['serve', 'now'],
    ];
    const results = await Promise.all(cases.map((args) => run(args)));
    for (const [i, result] of results.entries()) {
      assert.equal(result.code, 2, `${cases[i].join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /^fib-auth: [^\n]+\n$/, cases[i].join(' '));
    }
  });

  test('a bad configuration value stops start-up with one line naming it, exit 1', async () => {
    const cases: [NodeJS.ProcessEnv, RegExp][] = [
      [{ PORT: '70000' }, /^fib-auth: PORT must be an integer from 0 to 65535, got "70000"\n$/],
      [{ PORT: 'http' }, /^fib-auth: PORT /],
      [{ ACCESS_TOKEN_TTL: '0' }, /^fib-auth: ACCESS_TOKEN_TTL /],
      [{ REFRESH_TOKEN_TTL: '1.5' }, /^fib-auth: REFRESH_TOKEN_TTL /],
      [{ LOG_LEVEL: 'loud' }, /^fib-auth: LOG_LEVEL /],
      [{ DATABASE_URL: 'mysql://db' }, /^fib-auth: DATABASE_URL /],
      [{ DATABASE_POOL_SIZE: '0' }, /^fib-auth: DATABASE_POOL_SIZE must be an integer from 1 to 1000, got "0"\n$/],
      [{ DATABASE_TIMEOUT: '5s' }, /^fib-auth: DATABASE_TIMEOUT /],
      [{ SIGN_IN_CHALLENGE: 'always' }, /^fib-auth: SIGN_IN_CHALLENGE must be optional or required, got "always"\n$/],
      [{ SIGN_IN_CHALLENGE_TTL: '0' }, /^fib-auth: SIGN_IN_CHALLENGE_TTL must be an integer from 1 to 3600, got "0"\n$/],
      [{ RATE_LIMIT_REFUSED_PER_ADDRESS: '-1' }, /^fib-auth: RATE_LIMIT_REFUSED_PER_ADDRESS /],
      [{ RATE_LIMIT_REFUSED_PER_ADDRESS_WINDOW: '0' }, /^fib-auth: RATE_LIMIT_REFUSED_PER_ADDRESS_WINDOW /],
      [{ RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL: 'ten' }, /^fib-auth: RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL /],
      [{ RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL_WINDOW: '1m' }, /^fib-auth: RATE_LIMIT_FAILED_SIGN_INS_PER_EMAIL_WINDOW /],
      [
        { RATE_LIMIT_CHALLENGES_PER_ADDRESS: '30/min' },
        /^fib-auth: RATE_LIMIT_CHALLENGES_PER_ADDRESS must be an integer from 0 to 1000000, got "30\/min"\n$/,
      ],
      [
        { RATE_LIMIT_CHALLENGES_PER_ADDRESS_WINDOW: '0' },
        /^fib-auth: RATE_LIMIT_CHALLENGES_PER_ADDRESS_WINDOW must be an integer from 1 to 86400, got "0"\n$/,
      ],
      [{ TRUST_PROXY: 'true' }, /^fib-auth: TRUST_PROXY must be an integer from 0 to 16, got "true"\n$/],
      [{ HEADERS_TIMEOUT: '0' }, /^fib-auth: HEADERS_TIMEOUT /],
      [{ REQUEST_TIMEOUT: '99999' }, /^fib-auth: REQUEST_TIMEOUT /],
      [{ HEADERS_TIMEOUT: '40' }, /^fib-auth: HEADERS_TIMEOUT \(40\) must not be longer than REQUEST_TIMEOUT \(30\)\n$/],
      [{ MAX_CONNECTIONS: '0' }, /^fib-auth: MAX_CONNECTIONS must be an integer from 1 to 1000000, got "0"\n$/],
      [{ MAX_CONNECTIONS_PER_ADDRESS: '0' }, /^fib-auth: MAX_CONNECTIONS_PER_ADDRESS must be an integer from 1 to 1000000/],
      [{ MAX_LONG_POLLS_PER_CLIENT: 'many' }, /^fib-auth: MAX_LONG_POLLS_PER_CLIENT must be an integer from 1 to 10000/],
      [{ MANAGEMENT_PORT: '70000' }, /^fib-auth: MANAGEMENT_PORT must be an integer from 0 to 65535, got "70000"\n$/],
      [{ PORT: '9000' }, /^fib-auth: MANAGEMENT_PORT must not be PORT \(9000\): the metrics are served apart from the API\n$/],
      [{ WORKERS: '0' }, /^fib-auth: WORKERS must be an integer from 1 to 64, got "0"\n$/],
      [{ WORKERS: '2', DATABASE_URL: 'sqlite::memory:' }, /^fib-auth: WORKERS must be 1 with DATABASE_URL=sqlite::memory: /],
      [{ ISSUER: 'https://auth.example.com/fib' }, /^fib-auth: ISSUER must be the service's public origin, .*\(no path\)/],
      [{ ISSUER: 'auth.example.com' }, /^fib-auth: ISSUER must be the service's public origin/],
      [{ ISSUER: 'https://auth.example.com?x=1' }, /^fib-auth: ISSUER must be the service's public origin/],
      [
        { ISSUER: 'http://auth.example.com' },
        /^fib-auth: ISSUER must use https unless its host is localhost, 127.0.0.1 or \[::1\]/,
      ],
      [{ AUDIENCE: ' , ' }, /^fib-auth: AUDIENCE must name one or more audiences/],
      [
        { ISSUER: 'https://auth.example.com', AUDIENCE: 'fib-api,https://auth.example.com' },
        /^fib-auth: AUDIENCE must name one or more audiences, separated by commas, none of them ISSUER/,
      ],
    ];
    const results = await Promise.all(cases.map(([bad]) => run(['serve'], bad)));
    for (const [i, result] of results.entries()) {
      assert.equal(result.code, 1, JSON.stringify(cases[i][0]));
      assert.match(result.stderr, cases[i][1]);
    }
    for (const url of ['sqlite:/dev/null/db.sqlite', 'postgres://postgres@127.0.0.1:1/nothing-listens-here']) {
      const unopenable = await run(['users', 'list'], { DATABASE_URL: url });
      assert.equal(unopenable.code, 1, url);
      assert.match(unopenable.stderr, /^fib-auth: [^\n]+\n$/, url);
    }
  });

  test('the commands that do not serve never load the HTTP stack (koa, openapi-backend)', async () => {
    // A module hook writes down every module that the command imports, one URL a line.
    const record = join(dir, 'loaded-modules.txt');
    const hooks = [
      "import { appendFileSync } from 'node:fs';",
      'export async function resolve(specifier, context, next) {',
      '  const resolved = await next(specifier, context);',
      `  appendFileSync(${JSON.stringify(record)}, resolved.url + '\\n');`,
      '  return resolved;',
      '}',
    ].join('\n');
    const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;
    const NODE_OPTIONS = `--import=data:text/javascript,${encodeURIComponent(register)}`;
    for (const args of [
      ['users', 'list'],
      ['keys', 'generate'],
    ]) {
      rmSync(record, { force: true });
      const result = await run(args, { NODE_OPTIONS });
      assert.equal(result.code, 0, result.stderr);
      const loaded = readFileSync(record, 'utf8');
      if (args[0] === 'users') assert.match(loaded, /\/node_modules\/kysely\//, 'the hook saw the store being loaded');
      assert.doesNotMatch(loaded, /\/node_modules\/(koa|openapi-backend)\//, `fib-auth ${args.join(' ')} loaded the HTTP stack`);
    }
  });

  test('a management port already taken stops start-up with one line naming the variables, exit 1', async () => {
    const taken = createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    try {
      const port = (taken.address() as AddressInfo).port;
      for (const workers of ['1', '2']) {
        const result = await run(['serve'], { MANAGEMENT_PORT: String(port), WORKERS: workers });
        assert.equal(result.code, 1, result.stderr);
        assert.equal(
          result.stderr,
          `fib-auth: the management listener (MANAGEMENT_HOST, MANAGEMENT_PORT) cannot listen: listen EADDRINUSE: address already in use 127.0.0.1:${port}\n`,
        );
      }
    } finally {
      taken.close();
    }
  });

  test('ISSUER unset: one warn line at start-up, and tokens name http://localhost:<port>', async () => {
    const child = await serveChild({ ...env, ISSUER: '', PORT: '0' });
    try {
      const warnings = child.lines.filter((line) => line.includes('ISSUER is not set'));
      assert.equal(warnings.length, 1, child.lines.join('\n'));
      assert.equal((JSON.parse(warnings[0]) as { level: number }).level, 40); // pino's warn
      const metadata = await bodyOf(
        await rawCall(child.url, 'GET', '/.well-known/oauth-authorization-server'),
        'getAuthorizationServerMetadata',
        200,
      );
      assert.equal(metadata.issuer, `http://localhost:${new URL(child.url).port}`);
    } finally {
      await child.stop();
    }
    const named = await serveChild({ ...env, ISSUER: 'https://auth.example.com', PORT: '0' });
    await named.stop();
    assert.ok(!named.lines.some((line) => line.includes('ISSUER is not set')));
  });

  test('serve: sign in, log out, drain on SIGTERM, and keep the logout across a restart', async () => {
    assert.equal((await run(addAlice)).code, 0);
    const first = await serveChild(env);
    assert.equal(statSync(env.FIB_AUTH_SIGNING_KEY_FILE!).mode & 0o777, 0o600);
    const signIn = await rawCall(first.url, 'POST', `${BASE}/session`, {
      body: ALICE_SIGN_IN,
    });
    const { accessToken } = (await bodyOf(signIn, 'authorizeUser', 200)).data;
    const logout = () => rawCall(first.url, 'POST', `${BASE}/logout`, { headers: { authorization: `Bearer ${accessToken}` } });
    assert.equal((await logout()).status, 200);
    assert.equal(await first.stop(), 0);
    assert.ok(first.lines.some((line) => line.includes('draining')));

    const second = await serveChild(env);
    const again = await rawCall(second.url, 'POST', `${BASE}/logout`, { headers: { authorization: `Bearer ${accessToken}` } });
    assert.equal((await bodyOf(again, 'logout', 401)).status.message, 'The access token has already been logged out.');
    assert.equal(await second.stop(), 0);
    assert.ok(!second.lines.some((line) => line.includes('created a new signing key')), 'the key was reused');
  });
});
