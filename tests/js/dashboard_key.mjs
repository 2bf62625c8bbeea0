// The dashboard on a server that needs API keys: the page asks for one,
// a wrong key is refused, the right one opens the cards and live updates.
//
//   node dashboard_key.mjs URL KEY
//
// Prints one JSON line: {"ok": true} or exits 1.
import { chromium } from 'playwright-core';

const [, , url, key] = process.argv;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage();
try {
  await page.goto(`${url}/#/cards`);
  await page.locator('#api-key').waitFor();
  await page.locator('#connection', { hasText: 'key needed' }).waitFor();
  await page.fill('#api-key', 'crd_000000000000_wrong');
  await page.click('#use-key');
  await page.locator('#key-form [role=alert]', { hasText: 'not valid' }).waitFor();
  await page.fill('#api-key', key);
  await page.click('#use-key');
  await page.getByRole('cell', { name: 'Keyed' }).waitFor();
  await page.locator('#connection.up').waitFor();
  console.log(JSON.stringify({ ok: true }));
  await browser.close();
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e), html: await page.content() }));
  await browser.close();
  process.exit(1);
}
