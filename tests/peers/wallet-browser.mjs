// The wallet in a real browser: Debian's chromium driven by playwright-core, against a real
// `tessera serve` whose wallet signs users in at the `oidc-provider` peer.
//
//   node tests/peers/wallet-browser.mjs '<config JSON>'
//
// Config: `origin` (the host), `login` (the user to sign in as at the peer's own pages),
// `screenshots` (a directory for PNGs of the main views, desktop and phone width), and
// `many` (optional: the number of grants the user has; then it only checks that a long list
// is shown a page at a time).
//
// What it does, as a person would: signs in through the identity provider's pages, sees the
// grants grouped by app, approves one held request and denies another after reading them,
// opens a grant's activity, removes an agent's access, revokes a grant (accepting the
// confirmation that names the app and provider), checks the page at 375 px, and signs out.
// It prints one JSON line with what it saw; any failed expectation exits non-zero with the
// reason (and a screenshot of the page at that moment).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

const config = JSON.parse(process.argv[2] ?? '{}');
const { origin, login, screenshots } = config;
mkdirSync(screenshots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
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
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
// Layout shifts (Cumulative Layout Shift, as browsers count it) while the page loads.
await context.addInitScript(() => {
  window.__cls = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (!e.hadRecentInput) {
        window.__cls += e.value;
      }
    }
  }).observe({ type: 'layout-shift', buffered: true });
});
const page = await context.newPage();
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
const seen = {};

async function shot(name) {
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
}

function expect(cond, what) {
  if (!cond) {
    throw new Error(`expected ${what}`);
  }
}

try {
  // Signed out: one way in.
  await page.goto(`${origin}/wallet/`);
  const signIn = page.getByRole('link', { name: 'Sign in' });
  await signIn.waitFor();
  await shot('wallet-signed-out-desktop');
  await signIn.click();

  // The identity provider's own login and consent pages.
  await page.waitForURL((u) => !u.href.startsWith(origin));
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('any password');
  await page.locator('button[type="submit"]').click();
  await page.locator('button[type="submit"]').click();
  await page.waitForURL((u) => u.href.startsWith(`${origin}/wallet/`));

  // The grants, by app.
  await page.getByRole('heading', { name: 'Your connected accounts' }).waitFor();
  const grants = page.locator('article.grant');
  await grants.first().waitFor();
  if (config.many) {
    seen.first = await grants.count();
    await page.getByRole('button', { name: `Show 50 more of ${config.many - 50}` }).click();
    await grants.nth(99).waitFor();
    seen.second = await grants.count();
    console.log(JSON.stringify({ ok: errors.length === 0, errors, ...seen }));
    process.exitCode = errors.length === 0 ? 0 : 1;
    await browser.close();
    process.exit();
  }
  seen.grants = await grants.count();
  seen.apps = await page.locator('section.app h3').allTextContents();
  const acme = page.getByRole('article', { name: 'Stripe · Acme Inc' });
  const globex = page.getByRole('article', { name: 'Stripe · Globex' });
  await acme.waitFor();
  await globex.waitFor();
  expect((await globex.innerText()).includes('mail-bot'), 'the agent mail-bot on the Globex grant');

  // Approvals: read the exact request, then decide.
  await page.getByRole('heading', { name: 'Waiting for your approval' }).waitFor();
  const approvals = page.locator('article.approval');
  await approvals.first().locator('pre.request').waitFor();
  seen.pending = await approvals.count();
  seen.cls = await page.evaluate(() => window.__cls);
  expect(seen.cls < 0.1, `a page that does not jump while it loads (layout shift ${seen.cls})`);
  await shot('wallet-grants-desktop');
  const ada = approvals.filter({ hasText: 'name=Ada' });
  await ada.locator('pre.request').waitFor();
  await ada.getByRole('button', { name: 'Approve' }).click();
  await page.getByText('Approved: the request was sent').waitFor();
  const mallory = page.locator('article.approval').filter({ hasText: 'name=Mallory' });
  await mallory.locator('pre.request').waitFor();
  await mallory.getByRole('button', { name: 'Deny' }).click();
  await page.getByText('Denied: nothing was sent.').waitFor();
  await page.locator('article.approval').first().waitFor({ state: 'detached' });
  const history = page.locator('details.history');
  await history.locator('summary').click();
  seen.history = await history.locator('li').count();

  // Activity of a grant.
  await acme.getByRole('button', { name: 'Activity' }).click();
  await acme.locator('table tbody tr').first().waitFor();
  seen.activity = await acme.locator('table tbody tr').count();
  expect((await acme.innerText()).includes('nightly sync'), "the developer's reason in the activity");
  await shot('wallet-activity-desktop');
  // A date range that ends before today shows nothing, and says so.
  await acme.locator('input[type="date"]').nth(1).fill('2000-01-01');
  await acme.getByRole('button', { name: 'Filter' }).click();
  await acme.getByText('Nothing was done with this account in this period.').waitFor();

  // One agent's calls only: mail-bot made none with the Globex grant.
  await globex.getByRole('button', { name: 'Activity' }).click();
  await globex.locator('table tbody tr').first().waitFor();
  await globex.locator('select').selectOption({ label: 'mail-bot' });
  await globex.getByRole('button', { name: 'Filter' }).click();
  await globex.getByText('Nothing was done with this account in this period.').waitFor();
  await globex.getByRole('button', { name: 'Activity' }).click();

  // Let the agent use a grant longer.
  await globex.getByRole('button', { name: 'Let mail-bot use it 7 more days' }).click();
  await page.getByText('The agent can use it for 7 more days.').waitFor();

  // Remove the agent's access; the grant stays.
  await globex.getByRole('button', { name: "Remove mail-bot's access" }).click();
  await page.getByText("The agent's access was removed.").waitFor();
  await globex.getByText('mail-bot').waitFor({ state: 'detached' });

  // Revoke a grant: the confirmation names the app and the provider.
  page.once('dialog', async (d) => {
    seen.confirm = d.message();
    await d.accept();
  });
  await acme.getByRole('button', { name: 'Revoke' }).click();
  await page.getByText('Access revoked.').waitFor();
  await page.getByRole('article', { name: 'Stripe · Acme Inc' }).waitFor({ state: 'detached' });
  expect(
    seen.confirm?.includes('billing') && seen.confirm?.includes('Stripe'),
    `a confirmation naming the app and provider, got ${seen.confirm}`,
  );

  // A phone.
  await page.setViewportSize({ width: 375, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  expect(!overflow, 'no horizontal scrolling at 375 px');
  await shot('wallet-grants-phone');

  // Keyboard: the first control is reached with Tab, and its focus is visible.
  await page.locator('header h1').click();
  await page.keyboard.press('Tab');
  const focus = await page.evaluate(() => {
    const el = document.activeElement;
    const style = el ? getComputedStyle(el) : null;
    return { tag: el?.tagName, text: el?.textContent?.trim(), outline: style?.outlineStyle };
  });
  seen.focused = focus.text;
  expect(focus.tag === 'BUTTON' && focus.outline !== 'none', `a visibly focused button, got ${JSON.stringify(focus)}`);

  // Sign out.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('link', { name: 'Sign in' }).waitFor();
  expect(errors.length === 0, `no script errors, got ${errors.join('; ')}`);
  console.log(JSON.stringify({ ok: true, ...seen }));
} catch (e) {
  await shot('failure').catch(() => {});
  console.log(JSON.stringify({ ok: false, error: String(e), errors, ...seen }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
