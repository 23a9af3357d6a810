// SPDX-License-Identifier: AGPL-3.0-or-later
//
// Opens the gateway's playground (GET /graphql) in headless Debian chromium (playwright-core)
// with every request to another origin refused, runs a query with variables through the page's
// own form, lists the schema, and prints what the page showed and which requests went elsewhere.
//
// Usage: node playground_flow.mjs <chromium> <playground url> <user data dir> <query> <variables>

import { chromium } from 'playwright-core';

const [executablePath, url, userDataDir, query, variables] = process.argv.slice(2);
const origin = new URL(url).origin;
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
const elsewhere = [];
const errors = [];
try {
  // As if offline: anything not from the gateway's origin fails.
  await context.route('**/*', (route) => {
    const requested = route.request().url();
    if (new URL(requested).origin === origin) return route.continue();
    elsewhere.push(requested);
    return route.abort('internetdisconnected');
  });
  const page = await context.newPage();
  page.on('pageerror', (error) => errors.push(String(error)));
  const response = await page.goto(url);
  const contentType = response.headers()['content-type'];
  await page.fill('#query', query);
  await page.fill('#variables', variables);
  await page.click('#run');
  await page.waitForSelector('#result[data-state="done"], #result[data-state="error"]');
  const result = {
    state: await page.getAttribute('#result', 'data-state'),
    text: await page.textContent('#result'),
    status: await page.textContent('#status'),
  };
  await page.click('#schema');
  await page.waitForSelector('#result[data-state="done"], #result[data-state="error"]');
  const schema = await page.textContent('#result');
  console.log(JSON.stringify({ contentType, result, schema, elsewhere, errors }));
} finally {
  await context.close();
}
