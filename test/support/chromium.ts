import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

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

/** Chromium, headless and quiet; a test opens a context of its own in it (storage, clock, routes). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
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
}
