import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

/** Debian's chromium; .ci/run installs it and sets REQUIRE_CHROMIUM=1 so that the browser tests must run. */
export const CHROMIUM = '/usr/bin/chromium';
export const chromiumRequired = process.env.REQUIRE_CHROMIUM === '1';

/** Why a browser test cannot run here, warned about at once; undefined when Chromium is installed. */
export function chromiumMissing(consequence: string): string | undefined {
  if (existsSync(CHROMIUM)) return undefined;
  const why = `${CHROMIUM} is missing, so ${consequence} (apt-get install chromium, or run .ci/run)`;
  if (!chromiumRequired) console.warn(`WARNING: ${why}`);
  return why;
}

/** Chromium on a fresh profile, headless and quiet; `close` also deletes the profile. */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'fib-auth-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
