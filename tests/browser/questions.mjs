// Walks one of the console's four questions in Debian's chromium, as an operator would.
// Usage: node questions.mjs <config.json> <question>; prints one JSON object with what the
// operator saw (the Python test asserts on it); exit 1 on a step that failed.
import { chromium } from "playwright-core";
import { readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const question = process.argv[3];
const seen = { question };
const shot = (page, name) => page.screenshot({ path: join(cfg.screenshots, `${name}.png`), fullPage: true });
const text = async (page, selector) => (await page.locator(selector).first().innerText()).replace(/\s+/g, " ").trim();
const texts = (page, selector) => page.$$eval(selector, (els) => els.map((e) => e.innerText.replace(/\s+/g, " ").trim()));

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
  return text(page, "#who");
}

async function search(page, q, urlPattern) {
  await page.fill("#q", q);
  await Promise.all([page.waitForURL(urlPattern), page.press("#q", "Enter")]);
}

const questions = {
  // "Why is ATS 7 for X on online?"
  async ats(page) {
    await search(page, cfg.sku.slice(0, -2).toLowerCase(), /\/console\/skus\//);  // prefix, other case
    seen.ats = await text(page, '#ats .ats-value[data-channel="online"]');
    seen.why_title = await text(page, "#explain-online h2");
    seen.why_terms = await texts(page, "#explain-online tbody tr");
    seen.timeline = await texts(page, "#timeline tr.event td.what");
    seen.causes = await texts(page, "#timeline tr.event td.because");
    await shot(page, "q1-ats-now");
    await page.fill("#as_of", cfg.before_order);
    await Promise.all([page.waitForURL(/as_of=/), page.click("#as-of button")]);
    seen.as_of_note = await text(page, "#as-of-note");
    seen.ats_then = await text(page, '#ats .ats-value[data-channel="online"]');
    await shot(page, "q1-ats-as-of");
  },

  // "What happened to order 1001?"
  async order(page) {
    await search(page, cfg.order_name, /\/console\/orders\//);  // the Shopify name finds it
    seen.order_id = await text(page, "#order-id");
    seen.stage = await text(page, "#stage");
    seen.open_work = await text(page, "#open-work");
    seen.events = await texts(page, "#order-events tr.event td.what");
    seen.causes = await texts(page, "#order-events tr.event td.because");
    await shot(page, "q2-order");
    const sku = page.locator("#order-events tr.event td.what a", { hasText: cfg.sku }).first();
    await Promise.all([page.waitForURL(/\/console\/skus\//), sku.click()]);
    seen.followed_to = await text(page, "#sku");
  },

  // "Which orders are stuck, and why?"
  async stuck(page) {
    await Promise.all([page.waitForURL(/operations#stuck/), page.click('#questions a[href="/console/operations#stuck"]')]);
    seen.stuck = await texts(page, "#stuck li.exception");
    seen.rebuild_disabled = await page.locator('button.rebuild[data-name="ats"]').isDisabled();
    seen.admin_reason = await text(page, "#projections .needs-admin");
    await shot(page, "q3-stuck-operations");
    const link = page.locator("#stuck li.exception a", { hasText: cfg.stuck_order }).first();
    await Promise.all([page.waitForURL(/\/console\/orders\//), link.click()]);
    seen.badge = await text(page, "#stuck-badge");
    seen.reason = await text(page, "#stuck-reason");
    await shot(page, "q3-stuck-order");
    await page.goto(`${cfg.base}/console/orders`);
    await page.selectOption("#f-open", "post");
    await Promise.all([page.waitForURL(/open=post/), page.click("#order-filters button")]);
    seen.listed = await page.$$eval("#orders tr.order", (rows) =>
      rows.map((r) => [r.dataset.order, !!r.querySelector(".stuck")]));
    await shot(page, "q3-orders-to-post");
  },

  // "What drifted, and why?"
  async drift(page) {
    await Promise.all([page.waitForURL(/operations#drift/), page.click('#questions a[href="/console/operations#drift"]')]);
    seen.drift = await texts(page, "#drift li.exception");
    await shot(page, "q4-drift");
    await Promise.all([
      page.waitForURL(/\/console\/reconciliations\//),
      page.locator("#drift li.exception a", { hasText: "see the reconciliation run" }).first().click(),
    ]);
    seen.summary = await text(page, "#run-summary");
    seen.mismatches = await texts(page, "#mismatches tr.mismatch");
    seen.evidence = await page.$$eval("#mismatches td.why a", (as) => as.map((a) => [a.textContent, a.getAttribute("href")]));
    await shot(page, "q4-reconciliation-run");
    const order = page.locator("#mismatches td.why a", { hasText: cfg.order }).first();
    await Promise.all([page.waitForURL(/\/console\/orders\//), order.click()]);
    seen.followed_to = await text(page, "#order-id");
  },
};

const page = context.pages()[0] || (await context.newPage());
try {
  seen.who = await signIn(page, cfg.auditor);
  await questions[question](page);
  seen.outside_requests = outside;
  console.log(JSON.stringify(seen));
  await context.close();
} catch (e) {
  await shot(page, "failed").catch(() => {});
  seen.failed_at = page.url();
  console.log(JSON.stringify({ ...seen, error: String((e && e.stack) || e) }));
  await context.close();
  process.exit(1);
}
