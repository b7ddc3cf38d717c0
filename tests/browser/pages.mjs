// Drives the hub's pages in Debian's Chromium through playwright-core (installed by
// scripts/test-deps.sh in target/browser): signs in, opens the repository and an asset,
// waits for the poster to load and the proxy to play, force-unlocks a lock, opens the
// tree at main, and saves a screenshot of each page. Prints one JSON line of what it saw; tests/e2e/web.rs checks it.
//
// node pages.mjs MODULES_DIR BASE_URL TOKEN REPO RECIPE SCREENSHOT_DIR
import { createRequire } from 'node:module';

const [modules, base, token, repo, recipe, shots] = process.argv.slice(2);
const { chromium } = createRequire(`${modules}/`)('playwright-core');

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = {};
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  await page.goto(`${base}/ui/login`);
  await page.fill('#token', token);
  await Promise.all([page.waitForURL('**/ui/repos'), page.click('button[type=submit]')]);
  await page.screenshot({ path: `${shots}/repos.png`, fullPage: true });
  await Promise.all([page.waitForURL(`**/ui/r/${repo}`), page.click(`a[href="/ui/r/${repo}"]`)]);
  seen.history = await page.textContent('main');
  await page.screenshot({ path: `${shots}/history.png`, fullPage: true });

  await Promise.all([page.waitForURL(`**/asset/${recipe}`), page.click(`a[href$="/asset/${recipe}"]`)]);
  await page.waitForFunction(() => document.querySelector('#poster')?.naturalWidth > 0, null, { timeout: 30000 });
  seen.posterWidth = await page.$eval('#poster', (img) => img.naturalWidth);
  await page.waitForFunction(() => document.querySelector('#proxy')?.readyState >= 2, null, { timeout: 30000 });
  seen.readyState = await page.$eval('#proxy', (v) => v.readyState);
  seen.duration = await page.$eval('#proxy', (v) => v.duration);
  await page.screenshot({ path: `${shots}/asset.png`, fullPage: true });

  await page.goto(`${base}/ui/r/${repo}/locks`);
  await page.screenshot({ path: `${shots}/locks.png`, fullPage: true });
  await Promise.all([page.waitForLoadState('load'), page.click('text=Force unlock')]);
  await page.waitForSelector('[role=status]');
  seen.unlocked = await page.textContent('[role=status]');

  await page.goto(`${base}/ui/r/${repo}/tree/main`);
  seen.tree = await page.textContent('main');
  await page.screenshot({ path: `${shots}/tree.png`, fullPage: true });

  // A phone-width view of the history stays readable (no sideways scrolling).
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/ui/r/${repo}`);
  seen.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.screenshot({ path: `${shots}/history-phone.png`, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
