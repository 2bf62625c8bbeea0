// Drives the dashboard in Debian's Chromium with playwright-core, as a
// person would with a mouse and a keyboard, and saves screenshots.
//
//   node dashboard.mjs URL OUT_DIR
//
// The server has two cards: "Capitals" (8 tests, 2 of which fail their
// `equals` against the expected output) and "Slow" (many slow tests).
// Prints one JSON line: {"ok": true, "screenshots": [...]} or exits 1.
import { chromium } from 'playwright-core';
import path from 'node:path';
import fs from 'node:fs';

const [, , url, outDir] = process.argv;
fs.mkdirSync(outDir, { recursive: true });
const shots = [];
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
async function shot(name) {
  await page.waitForTimeout(300); // let the bar's width transition end
  const file = path.join(outDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}
const text = async (selector) => (await page.locator(selector).innerText()).trim();

try {
  // The cards list, and the first card, reached with the keyboard.
  await page.goto(`${url}/#/cards`);
  await page.getByRole('cell', { name: 'Capitals' }).waitFor();
  await page.locator('#connection.up').waitFor();
  await shot('01-cards');
  await page.getByRole('row', { name: /Capitals/ }).focus();
  await page.keyboard.press('Enter');
  await page.locator('#run-model').waitFor();

  // Run it: choose a model and a configuration.
  await page.fill('#run-model', 'ollama:fake');
  await page.fill('#run-concurrency', '4');
  await page.fill('#run-retries', '0');
  await page.selectOption('#run-priority', 'high');
  await shot('02-card');
  await page.click('#run');
  await page.waitForURL(/#\/run\//);

  // The counts reach the total, live.
  await page.waitForFunction(() => document.querySelector('#count-done b')?.textContent === '8/8', null, { timeout: 30000 });
  await page.waitForFunction(() => document.querySelectorAll('#tests tbody tr').length === 8);
  if (await text('#count-passed b') !== '6' || await text('#count-failed b') !== '2') {
    throw new Error(`counts: ${await text('#count-passed b')} passed, ${await text('#count-failed b')} failed`);
  }
  // The assertions' named metric, totalled over the run's results.
  await page.waitForFunction(() => document.querySelector('#metric-table')?.textContent.includes('accuracy6/8'), null, { timeout: 10000 })
    .catch(async () => { throw new Error(`metrics: ${await text('#metrics')}`); });
  await shot('03-run-finished');

  // A failed test's detail: prompt, output, diff against the expected
  // output, and each assertion's verdict; Escape closes it.
  await page.locator('#tests tbody tr[data-status="failed"]').first().click();
  await page.locator('#detail').waitFor();
  for (const part of ['#detail-prompt', '#detail-output', '#detail-diff ins', '#detail-diff del', '#detail-assertions']) {
    await page.locator(part).first().waitFor();
  }
  if (!(await text('#detail-assertions')).includes('failed')) throw new Error('no failed verdict in the detail');
  await shot('04-failed-test-detail');
  await page.keyboard.press('Escape');
  await page.locator('#detail').waitFor({ state: 'detached' });

  // A second run, cancelled from its page.
  await page.goto(`${url}/#/cards`);
  await page.getByRole('row', { name: /Slow/ }).click();
  await page.fill('#run-model', 'ollama:fake');
  await page.fill('#run-concurrency', '1');
  await page.click('#run');
  await page.waitForURL(/#\/run\//);
  await page.waitForFunction(() => document.querySelector('#count-done b')?.textContent.startsWith('1/'), null, { timeout: 30000 });
  await page.click('#cancel');
  await page.locator('.pill.s-cancelled').first().waitFor({ timeout: 30000 });
  await page.waitForFunction(() => document.querySelector('#cancel').disabled);
  await shot('05-run-cancelled');

  // The executions list, newest first; Enter on a row opens it.
  await page.click('nav a[data-nav="executions"]');
  await page.waitForFunction(() => document.querySelectorAll('main tbody tr').length >= 2);
  const first = await text('main tbody tr:first-child');
  if (!first.includes('cancelled')) throw new Error(`newest execution first: ${first}`);
  await shot('06-executions');
  await page.locator('main tbody tr').nth(1).focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#count-done b')?.textContent === '8/8');

  // The live system chart.
  await page.click('nav a[data-nav="system"]');
  await page.locator('#figures #count-cpu').waitFor({ timeout: 10000 });
  await page.waitForTimeout(2500);
  await shot('07-system');

  if (problems.length) throw new Error(problems.join('\n'));
  console.log(JSON.stringify({ ok: true, screenshots: shots }));
  await browser.close();
} catch (e) {
  try { await shot('failure'); } catch (_) { /* the page is gone */ }
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e), screenshots: shots, problems }));
  await browser.close();
  process.exit(1);
}
