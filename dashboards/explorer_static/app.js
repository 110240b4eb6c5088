// netobs flow explorer: reads /explorer/api/* and draws with ECharts (vendored, Apache-2.0).
// State lives in the URL hash, so a link (from a finding, a violation, a colleague) opens the same view.
"use strict";

const $ = (id) => document.getElementById(id);
const charts = {};
let meta = null;
let timer = null;

const LABELS = {
  src_center: "source center", dst_center: "destination center", src_tenant: "source tenant",
  dst_tenant: "destination tenant", src_zone: "source zone", dst_zone: "destination zone",
  dst_port: "destination port", proto: "protocol", type: "export protocol", direction: "direction",
  initiator: "initiator",
};
const nice = (c) => LABELS[c] || c.replace(/_/g, " ");

function defaultState() {
  return { range: 3600, from: null, to: null, metric: "bps", by: "src_tenant", limit: 10, filters: [] };
}

function readState() {
  try {
    const h = decodeURIComponent(location.hash.slice(1));
    return h ? Object.assign(defaultState(), JSON.parse(h)) : defaultState();
  } catch (e) {
    return defaultState();
  }
}

let state = readState();
function writeState() { history.replaceState(null, "", "#" + encodeURIComponent(JSON.stringify(state))); }

function range() {
  if (state.range === "custom" && state.from && state.to) return [Date.parse(state.from), Date.parse(state.to)];
  const to = Date.now();
  return [to - Number(state.range) * 1000, to];
}

function params(extra) {
  const [from, to] = range();
  const p = new URLSearchParams({ from: String(Math.floor(from)), to: String(Math.floor(to)),
    metric: state.metric, by: state.by, limit: String(state.limit), filters: JSON.stringify(state.filters) });
  for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
  return p.toString();
}

// A remote browser is not the anonymous loopback viewer: on 401 the page asks for a netobs token,
// keeps it in sessionStorage (this tab only, gone when it closes) and sends it as a bearer header.
const TOKEN_KEY = "netobs-token";
async function get(url) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await fetch(url, { headers });
    if (r.status !== 401) return r;
    const entered = await login(token ? "That token was refused." : "");
    sessionStorage.setItem(TOKEN_KEY, entered);
  }
}

function login(message) {
  return new Promise((resolve) => {
    const box = $("login");
    $("login-msg").textContent = message;
    box.hidden = false;
    $("login-form").onsubmit = (ev) => {
      ev.preventDefault();
      const v = $("login-token").value.trim();
      if (!v) return;
      box.hidden = true;
      $("login-token").value = "";
      resolve(v);
    };
  });
}

async function api(name, extra) {
  const r = await get(`api/${name}?${params(extra)}`);
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

// ---- units -------------------------------------------------------------------------------------
function si(v, unit) {
  const a = Math.abs(v);
  const steps = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [n, p] of steps) if (a >= n) return `${(v / n).toFixed(a / n >= 100 ? 0 : 1)} ${p}${unit}`;
  return `${v.toFixed(a >= 100 || v === 0 ? 0 : 1)} ${unit}`;
}
const rate = (v, metric) => si(v, { bps: "b/s", pps: "p/s", fps: "flows/s" }[metric]);
const bytes = (v) => si(v, "B");

// ---- panels ------------------------------------------------------------------------------------
function chart(id) {
  if (!charts[id]) charts[id] = echarts.init($(id), null, { renderer: "canvas" });
  return charts[id];
}

function noData(panel, on, text, error = Boolean(text && text !== "no data")) {
  let el = $(panel).querySelector(".nodata");
  if (!el) {
    el = document.createElement("div");
    el.className = "nodata";
    $(panel).appendChild(el);
  }
  el.textContent = text || "no data";
  el.classList.toggle("error", error);
  el.hidden = !on;
}

async function drawSeries() {
  const d = await api("series");
  $("series-title").textContent = `Traffic (${d.unit}) by ${state.by ? nice(state.by) : "total"}` +
    ` · every ${d.interval_s} s · from ${d.source}`;
  const c = chart("series");
  c.clear();
  noData("p-series", d.series.length === 0);
  if (!d.series.length) return;
  c.setOption({
    animation: false,
    tooltip: { trigger: "axis", valueFormatter: (v) => rate(v, d.metric) },
    legend: { type: "scroll", top: 0 },
    grid: { left: 70, right: 20, top: 36, bottom: 30 },
    xAxis: { type: "time", min: d.from_ms, max: d.to_ms },
    yAxis: { type: "value", axisLabel: { formatter: (v) => rate(v, d.metric) } },
    series: d.series.map((s) => ({
      name: s.label, type: "line", stack: "total", areaStyle: {}, showSymbol: false, lineStyle: { width: 1 },
      data: s.values.map((v, i) => [d.times_ms[i], v]),
    })),
  });
}

async function drawSankey(id, panel, left, right) {
  const d = await api("sankey", { left, right, limit: "60" });
  const c = chart(id);
  c.clear();
  const links = d.links.filter((l) => l.bytes > 0);
  noData(panel, links.length === 0);
  if (!links.length) return;
  // Left and right are told apart by a marker, so dc1 → dc1 is not a cycle.
  const src = (l) => `${l.source_label} ▸`;
  const dst = (l) => `▸ ${l.target_label}`;
  const names = new Set();
  links.forEach((l) => { names.add(src(l)); names.add(dst(l)); });
  c.setOption({
    animation: false,
    tooltip: { trigger: "item", formatter: (p) => p.dataType === "edge"
      ? `${p.data.source} ${p.data.target}<br>${bytes(p.data.bytes)} · ${rate(p.data.bps, "bps")}`
      : `${p.name}` },
    series: [{
      type: "sankey", left: 10, right: 110, top: 10, bottom: 10, nodeGap: 6, emphasis: { focus: "adjacency" },
      lineStyle: { color: "gradient", opacity: 0.45 }, label: { fontSize: 11 },
      data: [...names].map((name) => ({ name })),
      links: links.map((l) => ({ source: src(l), target: dst(l), value: l.bytes, bytes: l.bytes, bps: l.bps })),
    }],
  });
  $(id).dataset.totalBytes = String(d.total_bytes);
}

async function drawTop() {
  const d = await api("top");
  $("top-title").textContent = `Top ${state.limit} ${state.by ? nice(state.by) : ""} (mean over the range)`;
  noData("p-top", d.rows.length === 0);
  if (!d.rows.length) { $("top").innerHTML = ""; return; }
  const rows = d.rows.map((r) => `<tr><td><a href="#" data-col="${esc(state.by)}" data-val="${esc(r.key)}">${esc(r.label)}</a></td>` +
    `<td class="num">${rate(r.bps, "bps")}</td><td class="num">${rate(r.pps, "pps")}</td>` +
    `<td class="num">${bytes(r.bytes)}</td><td class="num">${Math.round(r.flows)}</td></tr>`).join("");
  $("top").innerHTML = `<table><thead><tr><th>${esc(nice(state.by || "total"))}</th><th class="num">bits/s</th>` +
    `<th class="num">packets/s</th><th class="num">bytes</th><th class="num">flows</th></tr></thead><tbody>${rows}</tbody></table>`;
  $("top").querySelectorAll("a[data-col]").forEach((a) => a.addEventListener("click", (e) => {
    e.preventDefault();
    if (a.dataset.col) addFilter(a.dataset.col, a.dataset.val, false);
  }));
}

async function drawEvents() {
  const d = await api("events");
  if (d.unsupported) { $("events").innerHTML = ""; noData("p-events", true, d.unsupported, false); return; }
  // A violation is listed when its traffic happened (first..last flow seen), not when the policy run
  // that found it started; its "traffic" link opens that time (the API pads it).
  const items = [
    ...d.violations.map((v) => ({ when: v.last_seen || v.window_end, start: v.first_seen || v.window_start,
      type: "violation", kind: `violation · ${v.severity}`,
      text: `${v.policy} / ${v.rule}: ${v.src_tenant || "?"} → ${v.dst_tenant || "?"}`, filters: v.filters,
      from: v.from, to: v.to })),
    ...d.findings.map((f) => ({ when: f.window_end, start: f.window_start, type: "finding",
      kind: `${f.detector} · ${f.severity}`, text: f.summary, filters: f.filters, from: f.from, to: f.to })),
  ].sort((a, b) => (a.when < b.when ? 1 : -1));
  noData("p-events", items.length === 0);
  if (!items.length) { $("events").innerHTML = ""; return; }
  $("events").innerHTML = `<table><thead><tr><th>when</th><th>what</th><th></th><th></th></tr></thead><tbody>` +
    items.slice(0, 100).map((it, i) => `<tr><td class="when">${esc(span(it.start, it.when))}</td>` +
      `<td>${esc(it.kind)}</td><td style="white-space:normal">${esc(it.text)}</td>` +
      `<td><a href="#" data-ev="${i}" data-kind="${it.type}">traffic</a></td></tr>`).join("") + "</tbody></table>";
  $("events").querySelectorAll("a[data-ev]").forEach((a) => a.addEventListener("click", (e) => {
    e.preventDefault();
    const it = items[Number(a.dataset.ev)];
    state.range = "custom";
    state.from = new Date(Date.parse(it.from)).toISOString();
    state.to = new Date(Date.parse(it.to)).toISOString();
    state.filters = it.filters.map((f) => ({ column: f.column, values: f.values, negate: false }));
    sync();
    refresh();
  }));
}

// "12/07 05:14:02–05:14:40": a start and an end in local time, the date once.
function span(start, end) {
  const day = { month: "2-digit", day: "2-digit" };
  const clock = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
  const s = new Date(start || end), e = new Date(end || start);
  const first = `${s.toLocaleDateString([], day)} ${s.toLocaleTimeString([], clock)}`;
  if (e - s < 1000) return first;
  return `${first}–${s.toDateString() === e.toDateString() ? "" : e.toLocaleDateString([], day) + " "}${e.toLocaleTimeString([], clock)}`;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// ---- controls ----------------------------------------------------------------------------------
function chips() {
  $("chips").innerHTML = state.filters.map((f, i) =>
    `<span class="chip${f.negate ? " neg" : ""}">${esc(nice(f.column))} ${f.negate ? "≠" : "="} ${esc(f.values.join(" | "))}` +
    `<button data-i="${i}" title="remove">✕</button></span>`).join(" ");
  $("chips").querySelectorAll("button").forEach((b) => b.addEventListener("click", () => {
    state.filters.splice(Number(b.dataset.i), 1);
    sync();
    refresh();
  }));
}

function addFilter(column, value, negate) {
  const same = state.filters.find((f) => f.column === column && Boolean(f.negate) === negate);
  if (same) { if (!same.values.includes(value)) same.values.push(value); }
  else state.filters.push({ column, values: [value], negate });
  sync();
  refresh();
}

function localInput(iso) {
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function sync() {
  $("range").value = String(state.range);
  $("from").hidden = $("to").hidden = state.range !== "custom";
  if (state.range === "custom") {
    $("from").value = localInput(state.from);
    $("to").value = localInput(state.to);
  }
  $("metric").value = state.metric;
  $("by").value = state.by;
  $("limit").value = String(state.limit);
  chips();
  writeState();
}

let completing = null;
async function complete() {
  const column = $("fcol").value;
  const prefix = $("fval").value;
  const mine = (completing = `${column}|${prefix}`);
  try {
    const d = await api("values", { column, prefix, limit: "50" });
    if (mine !== completing) return;
    $("fvals").innerHTML = d.values.map((v) => `<option value="${esc(v.value)}">${esc(v.label)}</option>`).join("");
  } catch (e) {
    console.warn("completion:", e.message);
  }
}

async function refresh() {
  $("status").textContent = "loading…";
  const jobs = [
    ["p-series", drawSeries()],
    ["p-sankey-center", drawSankey("sankey-center", "p-sankey-center", "src_center", "dst_center")],
    ["p-sankey-tenant", drawSankey("sankey-tenant", "p-sankey-tenant", "src_tenant", "dst_tenant")],
    ["p-top", drawTop()],
    ["p-events", drawEvents()],
  ];
  const results = await Promise.allSettled(jobs.map((j) => j[1]));
  results.forEach((r, i) => { if (r.status === "rejected") noData(jobs[i][0], true, r.reason.message); });
  $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

async function init() {
  meta = await api("meta");
  if (meta.notes && meta.notes.length) { $("note").textContent = meta.notes.join(" · "); $("note").hidden = false; }
  $("metric").innerHTML = Object.entries(meta.metrics).map(([k, v]) => `<option value="${k}">${v}</option>`).join("");
  const dims = meta.dimensions.map((d) => `<option value="${d}">${esc(nice(d))}</option>`).join("");
  $("by").innerHTML = `<option value="">(total)</option>` + dims;
  $("fcol").innerHTML = dims;
  for (const id of ["range", "metric", "by", "limit"]) {
    $(id).addEventListener("change", () => {
      const v = $(id).value;
      if (id === "range" && v === "custom") {
        const [f, t] = range();
        state.from = new Date(f).toISOString();
        state.to = new Date(t).toISOString();
      }
      state[id] = id === "limit" ? Number(v) : (id === "range" && v !== "custom" ? Number(v) : v);
      sync();
      refresh();
    });
  }
  for (const id of ["from", "to"]) {
    $(id).addEventListener("change", () => { state[id] = new Date($(id).value).toISOString(); sync(); refresh(); });
  }
  $("fcol").addEventListener("change", complete);
  $("fval").addEventListener("input", complete);
  $("fval").addEventListener("focus", complete);
  $("fadd").addEventListener("click", () => {
    if ($("fval").value !== "") addFilter($("fcol").value, $("fval").value, $("fneg").value === "1");
    $("fval").value = "";
  });
  $("live").addEventListener("change", schedule);
  window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
  window.addEventListener("hashchange", () => { state = readState(); sync(); refresh(); });
  sync();
  await refresh();
  schedule();
}

function schedule() {
  clearInterval(timer);
  if (window.__noLive) $("live").checked = false;  // tests: no refresh between two readings
  if ($("live").checked) timer = setInterval(() => { if (state.range !== "custom") refresh(); }, 10000);
}

init().catch((e) => { $("status").textContent = `error: ${e.message}`; console.warn(e); });
