import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { build, type BuildOptions } from 'esbuild';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type * as ClientModule from 'fib-auth-client';
import { packageRoot } from '../src/package-root.js';
import { chromiumMissing, chromiumRequired, launchChromium } from './support/chromium.js';
import { refreshesSeen } from './support/client.js';
import { manualClock } from './support/clock.js';
import { ALICE_SIGN_IN } from './support/vectors.js';
import { example, logEntries, resolvedContract, type TestServer } from './support/harness.js';
import { startServerWithStoreHooks, type StoreHooks } from './support/store-hooks.js';
import { ALICE } from './support/vectors.js';

// What runs in a browser: the API reference page that `npm run docs` writes, and fib-auth-client
// bundled for a frontend. One Chromium serves the file; each suite has a context of its own (its
// own storage, clock and routes).

const browserMissing = chromiumMissing('the docs page and fib-auth-client were NOT run in a browser');
const inChromium = { skip: chromiumRequired ? false : browserMissing };
let launched: Promise<Browser> | undefined;
/** A new context of the file's one Chromium, which the first suite that asks launches. */
async function chromiumContext(): Promise<BrowserContext> {
  assert.ok(!browserMissing, browserMissing);
  return (await (launched ??= launchChromium())).newContext();
}
after(async () => (await launched)?.close());

describe('the API reference page (npm run docs)', () => {
  const PAGE = join(packageRoot, 'dist', 'docs', 'index.html');
  const SCREENSHOT = join(packageRoot, 'test-output', 'docs-logout.png');
  before(() => {
    // Redocly's messages are in the error if the build fails.
    execFileSync('npm', ['run', 'docs'], { cwd: packageRoot, stdio: 'pipe' });
  });

  test('npm run docs writes one HTML file that loads no script or style from elsewhere', () => {
    const html = readFileSync(PAGE, 'utf8');
    assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href=["']?https?:/);
    assert.ok(!html.includes('cdn.redoc.ly'), 'the footer logo is inlined');
  });

  test('the docs page works offline and shows the logout operation', { ...inChromium, timeout: 120_000 }, async () => {
    const context = await chromiumContext();
    try {
      // Everything but the file itself is blocked, and counted.
      const blocked: string[] = [];
      await context.route('**', (route) => {
        if (route.request().url().startsWith('file:')) return route.continue();
        blocked.push(route.request().url());
        return route.abort();
      });
      const page = await context.newPage();
      const consoleErrors: string[] = [];
      page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));
      page.on('pageerror', (error) => consoleErrors.push(String(error)));

      await page.goto(`${pathToFileURL(PAGE).href}#/authentication-management/logout`);
      await page.getByRole('heading', { name: 'Log a user out' }).waitFor();
      await page.waitForLoadState('networkidle');
      const logout = page.locator('[id="authentication-management/logout"]');
      assert.match(await logout.innerText(), /POST\s+\/auth\/api\/v1\/authentication-management\/logout/);
      assert.deepEqual(await logout.getByRole('tablist', { name: 'Response status' }).getByRole('tab').allInnerTexts(), [
        '200',
        '400',
        '401',
        '404',
        '422',
        '429',
        '500',
      ]);

      // The FIB page's example body (docs/design.md §1), shown for the 200.
      const samples = await logout.locator('pre').allInnerTexts();
      const bodies = samples.flatMap((text) => {
        try {
          return [JSON.parse(text) as unknown];
        } catch {
          return [];
        }
      });
      assert.deepEqual(bodies, [
        { status: { code: 200, name: 'OK', message: 'User has been successfully logged out.' }, data: {} },
      ]);

      mkdirSync(join(packageRoot, 'test-output'), { recursive: true });
      await logout.screenshot({ path: SCREENSHOT });
      console.log(`screenshot: ${SCREENSHOT}`);

      // The endpoint's panel lists the servers; Redoc shows their descriptions as plain text,
      // so Markdown there would show through as stray backticks.
      await logout.getByRole('button', { name: /^POST/ }).click();
      const server = logout.getByText(/^The host that serves this API/);
      await server.waitFor();
      assert.doesNotMatch(await server.innerText(), /`/);

      // The replay risk of email-only sign-in, and the way to `required` (docs/design.md §12).
      await page.goto(`${pathToFileURL(PAGE).href}#section/sign-in-with-a-challenge`);
      const section = page.locator('[id="section/sign-in-with-a-challenge"]');
      await section.waitFor();
      const text = await page.evaluate(() => document.body.innerText);
      assert.match(text, /replay it and sign in as\s+that user[\s\S]*To move to `?required`?[\s\S]*SIGN_IN_CHALLENGE=required/);
      assert.deepEqual(blocked, []);
      assert.deepEqual(consoleErrors, []);
    } finally {
      await context.close();
    }
  });
});

declare global {
  interface Window {
    fibAuth: typeof ClientModule;
    client: ClientModule.AuthClient;
  }
}

/** How a frontend bundles the package's client for browsers: by its export name, with esbuild. */
const BROWSER_BUNDLE: BuildOptions = {
  bundle: true,
  platform: 'browser',
  format: 'esm',
  minify: true,
  write: false,
  logLevel: 'silent',
};
const bundle = (entry: string) =>
  build({ ...BROWSER_BUNDLE, stdin: { contents: entry, resolveDir: packageRoot, sourcefile: 'app.js' } });

let client = '';

test('fib-auth-client bundles for browsers with nothing of Node, under 12 KiB minified and 5 KiB gzipped', async () => {
  const { outputFiles } = await bundle("export * from 'fib-auth-client';");
  client = outputFiles![0].text;
  const minified = Buffer.byteLength(client);
  const gzipped = gzipSync(client, { level: 9 }).length;
  console.log(`fib-auth-client bundle: ${minified} bytes minified, ${gzipped} bytes gzipped`);
  assert.ok(minified < 12 * 1024 && gzipped < 5 * 1024, `${minified} bytes minified, ${gzipped} gzipped`);
  // The same bundling refuses a Node built-in, so a client that imported one would fail here.
  await assert.rejects(bundle("import 'node:fs'; export * from 'fib-auth-client';"), /Could not resolve "node:fs"/);
});

describe('fib-auth-client in Chromium, from a page on an origin in CORS_ORIGINS', inChromium, () => {
  let pages: Server;
  let origin: string;
  let t: TestServer;
  let hooks: StoreHooks;
  let context: BrowserContext;
  // The server's clock and the pages' Date, moved together: tokens expire without a wait.
  const clock = manualClock();
  const passAccessTokenLifetime = async () => {
    clock.advance(t.config.accessTokenTtl);
    await context.clock.setFixedTime(clock());
  };
  const requested: string[] = [];
  const consoleErrors: string[] = [];

  before(async () => {
    context = await chromiumContext();
    await context.clock.setFixedTime(clock());
    await resolvedContract(); // example() reads it
    if (!client) client = (await bundle("export * from 'fib-auth-client';")).outputFiles![0].text;
    // The page imports the bundle from its own origin; the favicon is inline, so nothing else is fetched.
    const html =
      '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>app</title>' +
      "<script type=module>import * as fibAuth from '/client.js'; window.fibAuth = fibAuth;</script>";
    pages = createServer((request, response) => {
      if (request.url === '/') response.writeHead(200, { 'content-type': 'text/html' }).end(html);
      else if (request.url === '/client.js') response.writeHead(200, { 'content-type': 'text/javascript' }).end(client);
      else response.writeHead(404).end();
    });
    await once(pages.listen(0, '127.0.0.1'), 'listening');
    origin = `http://127.0.0.1:${(pages.address() as { port: number }).port}`;
    ({ t, hooks } = await startServerWithStoreHooks({ CORS_ORIGINS: origin }, { clock }));
    await t.addUser(ALICE.email, ALICE.publicKeyHex);
    // Observed, not intercepted: Playwright's interception would answer the CORS preflights itself.
    context.on('request', (request) => requested.push(request.url()));
  });
  after(async () => {
    await context?.close();
    await t?.stop();
    pages?.close();
  });

  const openTab = async (storage: 'memory' | 'indexedDb'): Promise<Page> => {
    const page = await context.newPage();
    page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));
    page.on('pageerror', (error) => consoleErrors.push(String(error)));
    await page.goto(origin);
    await page.waitForFunction(() => window.fibAuth !== undefined);
    await page.evaluate(
      ({ baseUrl, storage }) => {
        const { createAuthClient, indexedDbStorage } = window.fibAuth;
        window.client = createAuthClient({ baseUrl, ...(storage === 'indexedDb' && { storage: indexedDbStorage() }) });
      },
      { baseUrl: t.url, storage },
    );
    return page;
  };
  const accessTokens = (page: Page, count: number) =>
    page.evaluate((count) => Promise.all(Array.from({ length: count }, () => window.client.accessToken())), count);
  const refreshStatuses = (since: number) =>
    refreshesSeen(t)
      .slice(since)
      .map((r) => r.status);

  test('signs in, and ten concurrent accessToken() calls after the access token expired make one refresh; then logs out', async () => {
    const tab = await openTab('memory');
    const signIn = await tab.evaluate((body) => window.client.signIn(body), ALICE_SIGN_IN);
    assert.equal(signIn.error, undefined, JSON.stringify(signIn.error));
    assert.equal(signIn.data.expirationTime, t.config.accessTokenTtl);
    assert.deepEqual(await tab.evaluate(() => window.client.accessToken()), { data: signIn.data.accessToken });

    await passAccessTokenLifetime();
    assert.deepEqual((await t.logout(signIn.data.accessToken)).body.status, example('AccessTokenExpired').status);
    const before = refreshesSeen(t).length;
    const results = await accessTokens(tab, 10);
    assert.deepEqual(refreshStatuses(before), [200], 'the server saw exactly one refresh');
    const tokens = new Set(results.map((r) => r.data));
    assert.equal(tokens.size, 1);
    assert.notEqual([...tokens][0], signIn.data.accessToken);

    assert.deepEqual(await tab.evaluate(() => window.client.logout()), { data: {} });
    assert.deepEqual((await t.logout([...tokens][0])).body.status, example('AccessTokenLoggedOut').status);
    await tab.close();
  });

  test('two tabs on IndexedDB: a refresh in flight in one tab holds the Web Lock, and the other tab uses its pair', async () => {
    const [first, second] = [await openTab('indexedDb'), await openTab('indexedDb')];
    assert.equal(await second.evaluate(() => 'locks' in navigator), true, 'the Web Locks API is there');
    const signIn = await first.evaluate((body) => window.client.signIn(body), ALICE_SIGN_IN);
    assert.equal(signIn.error, undefined, JSON.stringify(signIn.error));
    assert.deepEqual(
      await second.evaluate(() => window.client.accessToken()),
      { data: signIn.data.accessToken },
      'one sign-in for both tabs',
    );

    await passAccessTokenLifetime();
    // The first tab's refresh is held in the server until the second tab waits for the lock.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const reached = new Promise<void>((resolve) => hooks.beforeNext('rotateSession', () => (resolve(), held)));
    const before = refreshesSeen(t).length;
    const fromFirst = accessTokens(first, 5);
    await reached;
    const fromSecond = accessTokens(second, 5);
    await second.waitForFunction(async () => ((await navigator.locks.query()).pending ?? []).length > 0);
    release();
    const results = [...(await fromFirst), ...(await fromSecond)];
    assert.deepEqual(refreshStatuses(before), [200], 'the server saw exactly one refresh');
    const tokens = new Set(results.map((r) => r.data));
    assert.equal(tokens.size, 1, JSON.stringify(results));
    assert.notEqual([...tokens][0], signIn.data.accessToken);

    assert.deepEqual(await second.evaluate(() => window.client.logout()), { data: {} });
    assert.equal((await first.evaluate(() => window.client.accessToken())).error?.kind, 'signedOut', 'logged out in both tabs');
    assert.deepEqual((await t.logout([...tokens][0])).body.status, example('AccessTokenLoggedOut').status);
  });

  test('the pages fetched nothing from elsewhere, their preflights reached the server, and no console error occurred', () => {
    const elsewhere = requested.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith(`${t.url}/`));
    assert.deepEqual(elsewhere, []);
    assert.ok(requested.includes(`${origin}/client.js`));
    const preflights = logEntries(t).filter((entry) => entry.msg === 'request' && entry.method === 'OPTIONS');
    assert.ok(preflights.length > 0 && preflights.every((entry) => entry.status === 204), JSON.stringify(preflights));
    assert.deepEqual(consoleErrors, []);
  });
});
