// Drives Debian's chromium through the console (playwright-core, no browser download).
// Usage: node drive.mjs <config.json>; prints one JSON object with what it saw; exit 1 on a failed step.
import { chromium } from "playwright-core";
import { readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const seen = {};
const shot = (page, name) => page.screenshot({ path: join(cfg.screenshots, `${name}.png`), fullPage: true });

const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "chromium-")), {
  executablePath: cfg.chromium,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 900 },
});
const outside = [];
context.on("request", (r) => { if (!r.url().startsWith(cfg.base)) outside.push(r.url()); });

async function signIn(page, token) {
  await page.goto(`${cfg.base}/console/login`);
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${cfg.base}/console`), page.click("#login button")]);
  return (await page.textContent("#who")).trim();
}

try {
  const page = context.pages()[0] || (await context.newPage());
  seen.who = await signIn(page, cfg.admin);
  await shot(page, "01-home");

  await page.fill("#q", cfg.sku);
  await Promise.all([page.waitForURL(/\/console\/skus\//), page.press("#q", "Enter")]);
  await page.waitForSelector("svg#chart[data-ready]");
  seen.chart_lines = await page.$$eval("svg#chart path.ats-line", (ps) => ps.map((p) => p.getAttribute("d")));
  seen.chart_width = await page.$eval("svg#chart", (s) => s.getBoundingClientRect().width);
  seen.ats = await page.$$eval("#ats .ats-value", (cs) => cs.map((c) => [c.dataset.channel, c.textContent.trim()]));
  await page.click("svg#chart circle.mark >> nth=-1", { force: true });
  seen.tip = (await page.textContent("#chart-tip")).trim();
  await shot(page, "02-sku");

  const link = page.locator("#timeline a.order-link").first();
  seen.event_order = (await link.textContent()).trim();
  await Promise.all([page.waitForURL(/\/console\/orders\//), link.click()]);
  seen.order_id = (await page.textContent("#order-id")).trim();
  seen.stage = (await page.textContent("#stage")).trim();
  await shot(page, "03-order");

  await page.goto(`${cfg.base}/console/operations`);
  const row = page.locator(`tr.parked[data-id="${cfg.parked_id}"]`);
  await row.locator("input[name=canonical]").fill(cfg.store_location);
  await Promise.all([page.waitForURL(/notice=/), row.locator("button[type=submit]").click()]);
  seen.notice = (await page.textContent("#notice")).trim();
  seen.parked_status = (await page.textContent(`tr.message[data-id="${cfg.parked_id}"] .status`)).trim();
  await shot(page, "04-mapped");
  await page.goto(`${cfg.base}/console/skus/${encodeURIComponent(cfg.sku)}`);
  seen.posted = await page.$$eval("#timeline tr.event", (rows) => rows.map((r) => r.textContent))
    .then((texts) => texts.some((t) => t.includes("StockSold") && t.includes(cfg.store_location)));

  await context.clearCookies();
  const page2 = await context.newPage();
  seen.auditor = await signIn(page2, cfg.auditor);
  await page2.goto(`${cfg.base}/console/operations`);
  seen.rebuild_disabled = await page2.locator('button.rebuild[data-name="ats"]').isDisabled();
  // the button is disabled for this key; the service refuses the form all the same
  const [response] = await Promise.all([
    page2.waitForResponse((r) => r.url().endsWith("/console/actions/rebuild")),
    page2.$eval('button.rebuild[data-name="ats"]', (b) => b.form.submit()),
  ]);
  await page2.waitForSelector("#refused");
  seen.refused_status = response.status();
  seen.refused_text = (await page2.textContent("main")).replace(/\s+/g, " ").trim();
  await shot(page2, "05-refused");
  seen.outside_requests = outside;
  console.log(JSON.stringify(seen));
  await context.close();
} catch (e) {
  console.log(JSON.stringify({ ...seen, error: String(e && e.stack || e) }));
  await context.close();
  process.exit(1);
}
