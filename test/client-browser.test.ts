import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { build, type BuildOptions } from 'esbuild';
import type { Page } from 'playwright-core';
import type * as ClientModule from 'fib-auth/client';
import { packageRoot } from '../src/package-root.js';
import { chromiumMissing, chromiumRequired, launchChromium } from './support/chromium.js';
import { refreshesSeen } from './support/client.js';
import { ALICE_SIGN_IN } from './support/vectors.js';
import { example, resolvedContract, type TestServer } from './support/harness.js';
import { startServerWithStoreHooks, type StoreHooks } from './support/store-hooks.js';
import { ALICE } from './support/vectors.js';

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

test('fib-auth/client bundles for browsers with nothing of Node, under 12 KiB minified and 5 KiB gzipped', async () => {
  const { outputFiles } = await bundle("export * from 'fib-auth/client';");
  client = outputFiles![0].text;
  const minified = Buffer.byteLength(client);
  const gzipped = gzipSync(client, { level: 9 }).length;
  console.log(`fib-auth/client bundle: ${minified} bytes minified, ${gzipped} bytes gzipped`);
  assert.ok(minified < 12 * 1024 && gzipped < 5 * 1024, `${minified} bytes minified, ${gzipped} gzipped`);
  // The same bundling refuses a Node built-in, so a client that imported one would fail here.
  await assert.rejects(bundle("import 'node:fs'; export * from 'fib-auth/client';"), /Could not resolve "node:fs"/);
});

const browserMissing = chromiumMissing('the client was NOT run in a browser');

describe(
  'fib-auth/client in Chromium, from a page on an origin in CORS_ORIGINS',
  { skip: chromiumRequired ? false : browserMissing },
  () => {
    let pages: Server;
    let origin: string;
    let t: TestServer;
    let hooks: StoreHooks;
    let browser: Awaited<ReturnType<typeof launchChromium>>;
    const requested: string[] = [];
    const consoleErrors: string[] = [];

    before(async () => {
      assert.ok(!browserMissing, browserMissing);
      await resolvedContract(); // example() reads it
      if (!client) client = (await bundle("export * from 'fib-auth/client';")).outputFiles![0].text;
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
      ({ t, hooks } = await startServerWithStoreHooks({ CORS_ORIGINS: origin, ACCESS_TOKEN_TTL: '2' }));
      await t.addUser(ALICE.email, ALICE.publicKeyHex);
      browser = await launchChromium();
      // Observed, not intercepted: Playwright's interception would answer the CORS preflights itself.
      browser.context.on('request', (request) => requested.push(request.url()));
    });
    after(async () => {
      await browser?.close();
      await t?.stop();
      pages?.close();
    });

    const openTab = async (storage: 'memory' | 'indexedDb'): Promise<Page> => {
      const page = await browser.context.newPage();
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
      assert.equal(signIn.data!.expirationTime, 2);
      assert.deepEqual(await tab.evaluate(() => window.client.accessToken()), { data: signIn.data!.accessToken });

      await sleep(2100);
      assert.deepEqual((await t.logout(signIn.data!.accessToken)).body.status, example('AccessTokenExpired').status);
      const before = refreshesSeen(t).length;
      const results = await accessTokens(tab, 10);
      assert.deepEqual(refreshStatuses(before), [200], 'the server saw exactly one refresh');
      const tokens = new Set(results.map((r) => r.data));
      assert.equal(tokens.size, 1);
      assert.notEqual([...tokens][0], signIn.data!.accessToken);

      assert.deepEqual(await tab.evaluate(() => window.client.logout()), { data: {} });
      assert.deepEqual((await t.logout([...tokens][0]!)).body.status, example('AccessTokenLoggedOut').status);
      await tab.close();
    });

    test('two tabs on IndexedDB: a refresh in flight in one tab holds the Web Lock, and the other tab uses its pair', async () => {
      const [first, second] = [await openTab('indexedDb'), await openTab('indexedDb')];
      assert.equal(await second.evaluate(() => 'locks' in navigator), true, 'the Web Locks API is there');
      const signIn = await first.evaluate((body) => window.client.signIn(body), ALICE_SIGN_IN);
      assert.equal(signIn.error, undefined, JSON.stringify(signIn.error));
      assert.deepEqual(
        await second.evaluate(() => window.client.accessToken()),
        { data: signIn.data!.accessToken },
        'one sign-in for both tabs',
      );

      await sleep(2100);
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
      assert.notEqual([...tokens][0], signIn.data!.accessToken);

      assert.deepEqual(await second.evaluate(() => window.client.logout()), { data: {} });
      assert.equal((await first.evaluate(() => window.client.accessToken())).error?.kind, 'signedOut', 'logged out in both tabs');
      assert.deepEqual((await t.logout([...tokens][0]!)).body.status, example('AccessTokenLoggedOut').status);
    });

    test('the pages fetched nothing from elsewhere, their preflights reached the server, and no console error occurred', () => {
      const elsewhere = requested.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith(`${t.url}/`));
      assert.deepEqual(elsewhere, []);
      assert.ok(requested.includes(`${origin}/client.js`));
      const preflights = t.logs
        .map((line) => JSON.parse(line))
        .filter((entry) => entry.msg === 'request' && entry.method === 'OPTIONS');
      assert.ok(preflights.length > 0 && preflights.every((entry) => entry.status === 204), JSON.stringify(preflights));
      assert.deepEqual(consoleErrors, []);
    });
  },
);
