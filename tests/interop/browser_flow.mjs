// SPDX-License-Identifier: AGPL-3.0-or-later
//
// Loads a page in headless Debian chromium (driven by playwright-core) and prints what it
// reports: the text of #result once #result[data-done] is set.
//
// Usage: node browser_flow.mjs <chromium> <page url> <user data dir>

import { chromium } from 'playwright-core';

const [executablePath, url, userDataDir] = process.argv.slice(2);
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
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
try {
  const page = await context.newPage();
  page.on('console', (message) => console.error(`page: ${message.text()}`));
  page.on('pageerror', (error) => console.error(`page error: ${error}`));
  await page.goto(url);
  await page.waitForSelector('#result[data-done]', { timeout: 90000 });
  console.log(await page.textContent('#result'));
} finally {
  await context.close();
}
