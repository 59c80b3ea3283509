#!/usr/bin/env node
// Real-browser check of the driftwatch status page, against a running `driftwatch demo --http`.
//
//   node tests/browser/status_page.mjs http://127.0.0.1:PORT target/test-artifacts/status-page.png
//
// Drives Debian's chromium (/usr/bin/chromium) with playwright-core; no browser is downloaded.
// Waits until the demo's canary app/checkout 2.4.0 is rolled back, opens that decision's
// evidence, selects `checkout` and checks its error-rate chart has a line for each version, then
// takes a full-page screenshot. Exits non-zero with a message on the first failed check.
// Environment: DRIFTWATCH_TOKEN (bearer token, if the API asks for one), CHROMIUM (browser path),
// STATUS_PAGE_TIMEOUT_MS (how long to wait for the rollback; at most and by default 90000).

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const [base, shotArg] = process.argv.slice(2);
if (!base || !shotArg) {
  console.error('usage: node tests/browser/status_page.mjs BASE_URL SCREENSHOT_PATH');
  process.exit(2);
}
const shot = resolve(shotArg);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const waitMs = Math.min(90000, Number(process.env.STATUS_PAGE_TIMEOUT_MS) || 90000);
const started = Date.now();
const secs = () => ((Date.now() - started) / 1000).toFixed(1) + 's';
const checked = [];
const ok = (what) => {
  checked.push(what);
  console.log(`ok ${checked.length} - ${what} (${secs()})`);
};
class CheckFailed extends Error {}
const fail = (msg) => {
  throw new CheckFailed(msg);
};

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  console.error(`FAIL: cannot load playwright-core (${e.message}). Run scripts/test.sh (or npm ci --prefix tests/browser).`);
  process.exit(3);
}
if (!existsSync(executablePath)) {
  console.error(`FAIL: no browser at ${executablePath}. Run scripts/test.sh (it installs Debian's chromium and chromium-driver).`);
  process.exit(3);
}

// A hard stop, so a hung browser cannot hang the test run.
const watchdog = setTimeout(() => {
  console.error(`FAIL: the browser check did not finish within ${(waitMs + 60000) / 1000}s`);
  process.exit(4);
}, waitMs + 60000);
watchdog.unref();

const profile = mkdtempSync(join(tmpdir(), 'driftwatch-chromium-'));
let context;
const pageErrors = [];
const consoleErrors = [];
let page;
let code = 0;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1360, height: 900 },
    colorScheme: 'light',
  });
  page = context.pages()[0] || (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(String(e && e.stack ? e.stack : e)));
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });

  const resp = await page.goto(base + '/', { waitUntil: 'domcontentloaded', timeout: 20000 });
  if (!resp || !resp.ok()) fail(`GET ${base}/ answered ${resp ? resp.status() : 'nothing'}`);
  const ctype = resp.headers()['content-type'] || '';
  if (!ctype.includes('text/html')) fail(`GET / answered content-type "${ctype}", expected text/html`);
  ok(`GET / serves the status page (${ctype})`);

  // Sign in when the API asks for a token.
  const auth = page.locator('[data-testid="auth-form"]');
  const rows = page.locator('[data-testid="target-row"]');
  await Promise.race([
    auth.waitFor({ state: 'visible', timeout: 15000 }),
    rows.first().waitFor({ state: 'attached', timeout: 15000 }),
    page.locator('#s-watermark').filter({ hasNotText: '–' }).waitFor({ timeout: 15000 }),
  ]).catch(() => {});
  if (await auth.isVisible()) {
    const token = process.env.DRIFTWATCH_TOKEN;
    if (!token) fail('the page asks for a bearer token (the API answered 401); set DRIFTWATCH_TOKEN');
    await page.fill('[data-testid="auth-token"]', token);
    await page.click('[data-testid="auth-submit"]');
    await auth.waitFor({ state: 'hidden', timeout: 10000 });
    ok('signed in with the bearer token from DRIFTWATCH_TOKEN');
  }

  // The rollback of the regressing canary: in the targets table and in the decision log.
  const rolledBack = page.locator('[data-testid="target-row"][data-kind="app"][data-name="checkout"][data-version="2.4.0"][data-state="rolled_back"]');
  const rollback = page.locator('[data-testid="decision"][data-command="rollback"][data-kind="app"][data-name="checkout"][data-version="2.4.0"]');
  const deadline = started + waitMs;
  try {
    await rolledBack.waitFor({ state: 'visible', timeout: Math.max(1000, deadline - Date.now()) });
  } catch {
    fail(`within ${waitMs / 1000}s the targets table did not show app checkout 2.4.0 as rolled_back; rows seen: ${await describeRows(page)}`);
  }
  const badge = rolledBack.locator('[data-testid="state-badge"]');
  const badgeText = (await badge.innerText()).trim();
  const badgeClass = (await badge.getAttribute('class')) || '';
  if (!badgeClass.includes('state-rolled_back')) fail(`the state badge of checkout 2.4.0 has class "${badgeClass}"`);
  ok(`targets table: app checkout 2.4.0 is rolled back (badge "${badgeText}")`);
  try {
    await rollback.waitFor({ state: 'visible', timeout: Math.max(1000, deadline - Date.now()) });
  } catch {
    fail(`within ${waitMs / 1000}s the decision log showed no rollback of app/checkout 2.4.0; decisions seen: ${await describeDecisions(page)}`);
  }
  if ((await rollback.count()) !== 1) fail(`the decision log shows ${await rollback.count()} rollbacks of app/checkout 2.4.0, expected one`);
  ok('decision log: a rollback of app/checkout 2.4.0');

  // Its evidence: expand, then look for the error-rate test's numbers.
  await rollback.locator('[data-testid="decision-summary"]').click();
  await page.waitForFunction(
    () => !!document.querySelector('[data-testid="decision"][data-command="rollback"][data-name="checkout"][data-version="2.4.0"][open]'),
    null,
    { timeout: 5000 },
  ).catch(() => fail('clicking the rollback decision did not expand it'));
  const evidence = rollback.locator('[data-testid="decision-evidence"]');
  await evidence.waitFor({ state: 'visible', timeout: 5000 }).catch(() => fail('the expanded rollback shows no evidence'));
  const evidenceText = await evidence.innerText();
  for (const word of ['e_value', 'threshold']) {
    if (!evidenceText.includes(word)) fail(`the rollback's evidence does not mention "${word}": ${evidenceText.slice(0, 600)}`);
  }
  let ev;
  try {
    ev = JSON.parse(await rollback.locator('[data-testid="evidence-json"]').innerText());
  } catch (e) {
    fail(`the rollback's evidence is not shown as JSON: ${e.message}`);
  }
  if (ev.statistic !== 'e_value' || typeof ev.value !== 'number' || typeof ev.threshold !== 'number') {
    fail(`the rollback's evidence lacks statistic e_value with a numeric value and threshold: ${JSON.stringify(ev).slice(0, 400)}`);
  }
  const keys = await rollback.locator('[data-testid="decision-key-numbers"] dt').allInnerTexts();
  for (const k of ['statistic', 'value', 'threshold', 'window']) {
    if (!keys.includes(k)) fail(`the rollback's key numbers lack "${k}" (have: ${keys.join(', ')})`);
  }
  ok(`rollback evidence: ${ev.test || 'test'} ${ev.statistic} ${ev.value.toPrecision(4)} against threshold ${ev.threshold.toPrecision(4)}; key numbers ${keys.join(', ')}`);

  // Select checkout: its error-rate chart has a line per version.
  await page.locator('[data-testid="target-name"][data-kind="app"][data-name="checkout"]').click();
  await page.locator('[data-testid="detail"]').waitFor({ state: 'visible', timeout: 5000 }).catch(() => fail('clicking checkout did not show its charts'));
  const lines = await page
    .waitForFunction(
      () => {
        const chart = document.querySelector('[data-testid="chart-error-rate"]');
        if (!chart) return null;
        const got = {};
        for (const p of chart.querySelectorAll('svg [data-testid="series"]')) {
          got[p.getAttribute('data-version')] = { points: Number(p.getAttribute('data-points')), d: (p.getAttribute('d') || '').length };
        }
        const good = (v) => got[v] && got[v].points > 0 && got[v].d > 0;
        return good('2.3.0') && good('2.4.0') ? got : null;
      },
      null,
      { timeout: 15000, polling: 250 },
    )
    .then((h) => h.jsonValue())
    .catch(async () => {
      const have = await page.locator('[data-testid="chart-error-rate"]').innerText().catch(() => '?');
      fail(`the error-rate chart of checkout has no line for both 2.3.0 and 2.4.0 within 15s; chart shows: ${have.slice(0, 300)}`);
    });
  ok(`error-rate chart of checkout: lines for ${Object.entries(lines).map(([v, x]) => `${v} (${x.points} points)`).join(', ')}`);
  const driftVisible = await page.locator('[data-testid="chart-drift"]').isVisible();
  if (!driftVisible) fail('the drift chart panel is not shown for the selected target');
  ok('drift chart panel is shown beside it');

  // Header numbers.
  const watermark = (await page.locator('[data-testid="stat-watermark"]').innerText()).trim();
  const targets = (await page.locator('[data-testid="stat-targets"]').innerText()).trim();
  if (!watermark || watermark === '–') fail('the header shows no event-time watermark');
  ok(`header: watermark ${watermark}, ${targets} targets, ready=${await page.locator('[data-testid="ready"]').getAttribute('data-ready')}`);

  if (pageErrors.length) fail(`the page threw: ${pageErrors.join(' | ')}`);
  ok('no uncaught errors in the page');

  mkdirSync(dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  ok(`full-page screenshot at ${shot}`);
  console.log(`status page: ${checked.length} checks passed in ${secs()}`);
} catch (e) {
  code = 1;
  if (e instanceof CheckFailed) console.error(`FAIL: ${e.message}`);
  else console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join(' | ')}`);
  if (consoleErrors.length) console.error(`console errors (last 5): ${consoleErrors.slice(-5).join(' | ')}`);
  if (page) {
    const banner = await page.locator('[data-testid="error"]').innerText().catch(() => '');
    if (banner) console.error(`error banner: ${banner}`);
    try {
      mkdirSync(dirname(shot), { recursive: true });
      await page.screenshot({ path: shot, fullPage: true });
      console.error(`screenshot of the failure at ${shot}`);
    } catch {}
  }
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);

async function describeRows(page) {
  return page
    .$$eval('[data-testid="target-row"]', (rs) => rs.map((r) => `${r.dataset.kind}/${r.dataset.name} ${r.dataset.version}=${r.dataset.state}`).join(', ') || 'none')
    .catch(() => '?');
}
async function describeDecisions(page) {
  return page
    .$$eval('[data-testid="decision"]', (ds) => ds.map((d) => `${d.dataset.command} ${d.dataset.kind}/${d.dataset.name} ${d.dataset.version}`).join(', ') || 'none')
    .catch(() => '?');
}
