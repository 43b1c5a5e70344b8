import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { before, test } from 'node:test';
import { packageRoot } from '../src/package-root.js';
import { chromiumMissing, chromiumRequired, launchChromium } from './support/chromium.js';

const PAGE = join(packageRoot, 'dist', 'docs', 'index.html');
const SCREENSHOT = join(packageRoot, 'test-output', 'docs-logout.png');
const browserMissing = chromiumMissing('the docs page was NOT opened in a browser');

before(() => {
  // Redocly's messages are in the error if the build fails.
  execFileSync('npm', ['run', 'docs'], { cwd: packageRoot, stdio: 'pipe' });
});

test('npm run docs writes one HTML file that loads no script or style from elsewhere', () => {
  const html = readFileSync(PAGE, 'utf8');
  assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href=["']?https?:/);
  assert.ok(!html.includes('cdn.redoc.ly'), 'the footer logo is inlined');
});

test(
  'the docs page works offline and shows the logout operation',
  { skip: chromiumRequired ? false : browserMissing, timeout: 120_000 },
  async () => {
    assert.ok(!browserMissing, browserMissing);
    const { context, close } = await launchChromium();
    try {
      // Everything but the file itself is blocked, and counted.
      const blocked: string[] = [];
      await context.route('**', (route) => {
        if (route.request().url().startsWith('file:')) return route.continue();
        blocked.push(route.request().url());
        return route.abort();
      });
      const page = context.pages()[0] ?? (await context.newPage());
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

      // The replay risk of email-only sign-in, and the way to `required` (docs/design.md §12).
      await page.goto(`${pathToFileURL(PAGE).href}#section/sign-in-with-a-challenge`);
      const section = page.locator('[id="section/sign-in-with-a-challenge"]');
      await section.waitFor();
      const text = await page.evaluate(() => document.body.innerText);
      assert.match(text, /replay it and sign in as\s+that user[\s\S]*To move to `?required`?[\s\S]*SIGN_IN_CHALLENGE=required/);
      assert.deepEqual(blocked, []);
      assert.deepEqual(consoleErrors, []);
    } finally {
      await close();
    }
  },
);
