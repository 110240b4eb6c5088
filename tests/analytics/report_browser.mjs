// Opens a compliance report (HTML file) in headless Chromium (playwright-core, the system's Chromium)
// and prints one JSON object of what a reader sees: console errors, headings, the rendered text of every
// table (as rows of cell texts, from the layout: hidden text does not count), elements wider than the
// page, charts drawn, and full-page screenshots at a screen and a print width.
//
// usage: node report_browser.mjs FILE.html OUT_DIR (NODE_PATH must reach playwright-core).
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");
const [file, outDir] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const result = { console: [], pageErrors: [], requests: [] };
try {
  for (const [name, width] of [["screen", 1280], ["narrow", 820]]) {
    const page = await browser.newPage({ viewport: { width, height: 900 } });
    page.on("console", (m) => { if (m.type() === "error") result.console.push(m.text()); });
    page.on("pageerror", (e) => result.pageErrors.push(String(e)));
    // a self-contained report loads nothing but itself
    page.on("request", (r) => { if (!r.url().startsWith("file:")) result.requests.push(r.url()); });
    await page.goto(pathToFileURL(path.resolve(file)).href, { waitUntil: "load" });
    await page.screenshot({ path: path.join(outDir, `report-${name}.png`), fullPage: true });
    const seen = await page.evaluate(() => {
      const visible = (el) => {
        const r = el.getBoundingClientRect();
        const s = getComputedStyle(el);
        return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none";
      };
      const pageWidth = document.documentElement.clientWidth;
      return {
        title: document.title,
        headings: [...document.querySelectorAll("h1, h2, h3")].filter(visible).map((h) => h.innerText.trim()),
        tables: [...document.querySelectorAll("table")].filter(visible).map((t) => ({
          // what precedes the table (or the box it scrolls in): its heading or introducing paragraph
          caption: (((t.closest(".wide") || t).previousElementSibling || {}).innerText || "").trim(),
          rows: [...t.querySelectorAll("tr")].map((tr) => [...tr.children].map((c) => c.innerText.trim())),
        })),
        // the page itself wider than the window (a wide table scrolls in its own box instead)
        pageOverflow: document.documentElement.scrollWidth - pageWidth,
        overflow: [...document.querySelectorAll("body *")].filter(visible)
          .filter((el) => !el.closest(".wide") && el.getBoundingClientRect().right > pageWidth + 1)
          .map((el) => `${el.tagName.toLowerCase()} ${Math.round(el.getBoundingClientRect().right)}px`)
          .slice(0, 20),
        // words of a table cell the layout cut over two lines (a timestamp, an address, a name)
        cutWords: [...document.querySelectorAll("td, th")].filter(visible).flatMap((cell) => {
          const cut = [];
          const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
          for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (const m of node.textContent.matchAll(/\S+/g)) {
              const range = document.createRange();
              range.setStart(node, m.index);
              range.setEnd(node, m.index + m[0].length);
              const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
              if (tops.size > 1) cut.push(m[0]);
            }
          }
          return cut;
        }).slice(0, 20),
        charts: [...document.querySelectorAll("svg")].filter(visible).map((s) => ({
          bars: s.querySelectorAll("rect").length,
          labels: [...s.querySelectorAll("text")].map((t) => t.textContent),
        })),
        text: document.body.innerText,
      };
    });
    result[name] = seen;
    await page.close();
  }
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
