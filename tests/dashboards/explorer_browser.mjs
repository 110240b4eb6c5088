// Drives the flow explorer in headless Chromium (playwright-core, the system's Chromium) and prints
// one JSON object of what it saw: console errors, per-view states, Sankey totals, series totals
// before and after a filter typed into the page. Screenshots go to OUT_DIR.
//
// usage: node explorer_browser.mjs URL TOKEN OUT_DIR (NODE_PATH must reach playwright-core). The endpoint
// has no anonymous role: the page asks for the token (its login box) and keeps it for the tab.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");
const [url, token, outDir] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const result = { console: [], pageErrors: [], failed: [], steps: {} };
try {
  const context = await browser.newContext({
    viewport: { width: 1500, height: 1150 } });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") result.console.push(m.text()); });
  page.on("pageerror", (e) => result.pageErrors.push(String(e)));
  page.on("response", (r) => { if (r.status() >= 400) result.failed.push(`${r.status()} ${r.url()}`); });
  const series = [];
  page.on("response", async (r) => {
    if (r.url().includes("/api/series") && r.ok()) {
      // the body is gone when the page navigated on before it was read (not an error of the page)
      const d = await r.json().catch(() => null);
      if (d === null) return;
      series.push({ url: r.url(), total: d.series.reduce((a, s) => a + s.values.reduce((x, y) => x + y, 0), 0),
        names: d.series.map((s) => s.key) });
    }
  });
  const loaded = async (n) => page.waitForFunction((k) => Number(document.body.dataset.loaded || 0) >= k, n,
    { timeout: 60000 });
  const state = () => page.evaluate(() => ({
    nodata: [...document.querySelectorAll("section")].map((s) => {
      const n = s.querySelector(".nodata");
      return { id: s.id, nodata: Boolean(n && !n.hidden), text: n && !n.hidden ? n.textContent : "" };
    }),
    sankeyCenter: Number(document.getElementById("sankey-center").dataset.totalBytes || 0),
    sankeyTenant: Number(document.getElementById("sankey-tenant").dataset.totalBytes || 0),
    topRows: document.querySelectorAll("#top tbody tr").length,
    events: document.querySelectorAll("#events tbody tr").length,
    canvases: document.querySelectorAll("canvas").length,
  }));

  // 1. the last hour, split by source tenant
  const hash = (s) => "#" + encodeURIComponent(JSON.stringify(s));
  const base = { range: 3600, metric: "bps", by: "src_tenant", limit: 10, filters: [] };
  await page.addInitScript(() => { window.__noLive = true; });
  await page.goto(url + hash(base));
  // the first API call answers 401 (expected, not counted as a failure): log in with the token
  await page.waitForSelector("#login:not([hidden])", { timeout: 60000 });
  await page.screenshot({ path: path.join(outDir, "explorer-login.png") });
  await page.fill("#login-token", token);
  await page.click("#login-form button");
  await loaded(1);
  result.failed = result.failed.filter((f) => !f.startsWith("401 "));
  result.console = result.console.filter((m) => !m.includes("status of 401"));
  result.loginAsked = true;
  await page.waitForTimeout(500);
  result.steps.overview = { ...(await state()), series: series.at(-1) };
  await page.screenshot({ path: path.join(outDir, "explorer-overview.png"), fullPage: true });

  // 2. a filter typed into the page, with completion: source center = dc1
  await page.selectOption("#fcol", "src_center");
  await page.fill("#fval", "dc");
  await page.waitForFunction(() => document.querySelectorAll("#fvals option").length > 0, null, { timeout: 30000 });
  result.steps.completion = await page.$$eval("#fvals option", (os) => os.map((o) => o.value));
  await page.fill("#fval", "dc1");
  const filteredSeries = page.waitForResponse((r) => r.url().includes("/api/series") && r.url().includes("src_center"));
  await page.click("#fadd");
  await page.waitForFunction(() => document.querySelectorAll(".chip").length === 1);
  await filteredSeries;
  await loaded(2);
  await page.waitForTimeout(800);
  result.steps.filtered = { ...(await state()), series: series.at(-1), hash: await page.evaluate(() => location.hash) };
  await page.screenshot({ path: path.join(outDir, "explorer-filtered.png"), fullPage: true });

  // 3. packets/s split by a column that only raw flows have (source workload)
  await page.goto(url + hash({ ...base, metric: "pps", by: "src_workload" }));
  await page.reload();
  await loaded(1);
  await page.waitForTimeout(500);
  result.steps.raw = { ...(await state()), series: series.at(-1) };
  await page.screenshot({ path: path.join(outDir, "explorer-workload-pps.png"), fullPage: true });

  // 4. an empty range (a day two weeks ago): every view says "no data"
  const from = new Date(Date.now() - 15 * 86400e3).toISOString();
  const to = new Date(Date.now() - 14 * 86400e3).toISOString();
  await page.goto(url + hash({ ...base, range: "custom", from, to }));
  await page.reload();
  await loaded(1);
  await page.waitForTimeout(300);
  result.steps.empty = await state();
  await page.screenshot({ path: path.join(outDir, "explorer-empty.png"), fullPage: true });

  // 5. the newest violation's "traffic" link
  await page.goto(url + hash(base));
  await page.reload();
  await loaded(1);
  const link = await page.$("#events a[data-kind=violation]");
  if (link) {
    const when = await link.evaluate((a) => a.closest("tr").querySelector("td").textContent);
    await link.click();
    await loaded(2);
    await page.waitForTimeout(500);
    result.steps.eventLink = { ...(await state()), when,
      hash: decodeURIComponent(await page.evaluate(() => location.hash)) };
    await page.screenshot({ path: path.join(outDir, "explorer-violation-traffic.png"), fullPage: true });
  }
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
