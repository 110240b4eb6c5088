// Opens the flow explorer served by `netobs ui` in headless Chromium (playwright-core, the system's
// Chromium), logs in with a token, waits until every panel has loaded and prints one JSON object:
// console errors, per-panel "no data"/message state, the note banner, the top table's row count.
// A screenshot goes to OUT_DIR/NAME.png.
//
// usage: node explorer_snap.mjs URL TOKEN OUT_DIR NAME (NODE_PATH must reach playwright-core)
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");
const [url, token, outDir, name] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const result = { console: [], pageErrors: [], failed: [] };
try {
  const page = await (await browser.newContext({ viewport: { width: 1500, height: 1150 } })).newPage();
  page.on("console", (m) => { if (m.type() === "error") result.console.push(m.text()); });
  page.on("pageerror", (e) => result.pageErrors.push(String(e)));
  page.on("response", (r) => { if (r.status() >= 400) result.failed.push(`${r.status()} ${r.url()}`); });
  await page.addInitScript(() => { window.__noLive = true; });
  const state = { range: 3600, metric: "bps", by: "src_tenant", limit: 10, filters: [] };
  await page.goto(url + "#" + encodeURIComponent(JSON.stringify(state)));
  await page.waitForSelector("#login:not([hidden])", { timeout: 60000 });
  await page.fill("#login-token", token);
  await page.click("#login-form button");
  await page.waitForFunction(() => Number(document.body.dataset.loaded || 0) >= 1, null, { timeout: 60000 });
  await page.waitForTimeout(500);
  result.failed = result.failed.filter((f) => !f.startsWith("401 "));
  result.console = result.console.filter((m) => !m.includes("status of 401"));
  Object.assign(result, await page.evaluate(() => ({
    panels: [...document.querySelectorAll("section")].map((s) => {
      const n = s.querySelector(".nodata");
      return { id: s.id, shown: Boolean(n && !n.hidden), text: n && !n.hidden ? n.textContent : "",
        error: Boolean(n && !n.hidden && n.classList.contains("error")) };
    }),
    note: document.getElementById("note").hidden ? "" : document.getElementById("note").textContent,
    topRows: document.querySelectorAll("#top tbody tr").length,
    canvases: document.querySelectorAll("canvas").length,
  })));
  await page.screenshot({ path: path.join(outDir, `${name}.png`), fullPage: true });
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
